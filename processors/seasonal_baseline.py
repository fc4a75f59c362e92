"""A seasonal baseline (hour of day × day of week) learned one hour at a time, robust to outliers.

Pure and incremental: the caller closes hours with `observe_hour(hour_index, total, exposure)` and asks
`rate(hour_index)` for the expected amount per hour of exposure. An hour index is `epoch_ms // 3_600_000`
(UTC hours; 1970-01-01 was a Thursday).

Model: rate(h) = profile[hour of day] × weekday[day of week].

* `profile` is a decayed mean per hour of day (memory `hour_half_life_h`), smoothed over the neighbouring hours
  and shrunk towards the overall level with `profile_prior_h` pseudo-hours, so that a stream with a few events
  an hour still gets a stable profile.
* `weekday` is a decayed ratio observed / expected-without-weekday for each day of the week (memory
  `weekday_half_life_h`), shrunk towards 1 with `weekday_prior` pseudo-units (events for counts).
* Outliers: once warm, an hour's total is clipped to expected ± `clip_sigmas` standard deviations (Poisson plus
  `overdispersion` relative noise for counts, `overdispersion` relative noise for values) before it is learned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

HOUR_MS = 3_600_000
_DOW_OFFSET = 3  # hour index 0 (1970-01-01T00Z) is a Thursday; Monday = 0


def hour_of_day(hour_index: int) -> int:
    return hour_index % 24


def day_of_week(hour_index: int) -> int:
    """Monday = 0 … Sunday = 6 (UTC)."""
    return (hour_index // 24 + _DOW_OFFSET) % 7


@dataclass(frozen=True, slots=True)
class BaselineConfig:
    """Knobs of one seasonal baseline."""

    hour_half_life_h: float = 7 * 24.0
    """Memory of the hour-of-day profile and of the level."""
    weekday_half_life_h: float = 21 * 24.0
    """Memory of the day-of-week factors."""
    profile_prior_h: float = 2.0
    """Pseudo-hours at the overall level added to every hour-of-day slot (shrinkage)."""
    weekday_prior: float = 30.0
    """Pseudo-events (counts) or pseudo-hours (values) at factor 1 added to every day-of-week factor."""
    clip_sigmas: float = 3.0
    """Once warm, an hour is clipped to expected ± this many standard deviations before it is learned."""
    overdispersion: float = 0.15
    """Relative noise on top of Poisson noise (counts), or the relative noise of values."""
    counts: bool = True
    """True for event counts (Poisson noise); False for a real-valued series such as a ratio."""
    warm_hours: float = 24.0
    """Hours of exposure before outlier clipping starts."""


class SeasonalBaseline:
    """Expected amount per hour for any hour, learned from closed hours; see the module docstring."""

    __slots__ = ("config", "_c", "_e", "_dc", "_de", "hours", "_cache", "_g_h", "_g_d")

    def __init__(self, config: BaselineConfig = BaselineConfig()) -> None:
        self.config = config
        self._c = [0.0] * 24  # decayed totals per hour of day (weekday-adjusted exposure in _e)
        self._e = [0.0] * 24
        self._dc = [0.0] * 7  # decayed totals per day of week ...
        self._de = [0.0] * 7  # ... and what the profile alone expected for them
        self.hours = 0.0
        """Exposure learned so far, in hours (not decayed)."""
        self._cache: dict[int, float] = {}
        self._g_h = 0.5 ** (1.0 / config.hour_half_life_h)
        self._g_d = 0.5 ** (1.0 / config.weekday_half_life_h)

    # -- reading --------------------------------------------------------------------------------------

    def level(self) -> float:
        """The mean rate per hour over all hours of the day (0 before anything is learned)."""
        e = sum(self._e)
        return sum(self._c) / e if e > 0 else 0.0

    def _profile(self, hod: int) -> float:
        c, e = self._c, self._e
        cs = 0.25 * c[hod - 1] + 0.5 * c[hod] + 0.25 * c[(hod + 1) % 24]
        es = 0.25 * e[hod - 1] + 0.5 * e[hod] + 0.25 * e[(hod + 1) % 24]
        prior = self.config.profile_prior_h
        return (cs + prior * self.level()) / (es + prior)

    def _weekday(self, dow: int) -> float:
        prior = self.config.weekday_prior
        if not self.config.counts:  # values: the prior is that many hours at the overall level
            prior = prior * max(self.level(), 1e-12)
        return (self._dc[dow] + prior) / (self._de[dow] + prior)

    def rate(self, hour_index: int) -> float:
        """Expected amount per hour of exposure during that hour."""
        r = self._cache.get(hour_index)
        if r is None:
            r = self._profile(hour_of_day(hour_index)) * self._weekday(day_of_week(hour_index))
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[hour_index] = r
        return r

    def expected(self, start_ms: int, end_ms: int) -> float:
        """Expected total over [start_ms, end_ms)."""
        total = 0.0
        t = start_ms
        while t < end_ms:
            h = t // HOUR_MS
            nxt = min(end_ms, (h + 1) * HOUR_MS)
            total += self.rate(h) * (nxt - t) / HOUR_MS
            t = nxt
        return total

    def sigma(self, mean: float) -> float:
        """Standard deviation of an hour's total around `mean`."""
        od = self.config.overdispersion * mean
        return math.sqrt(mean + od * od) if self.config.counts else od

    @property
    def warm(self) -> bool:
        return self.hours >= self.config.warm_hours

    # -- learning -------------------------------------------------------------------------------------

    def observe_hour(self, hour_index: int, total: float, exposure: float = 1.0) -> float:
        """Learn one hour (or the `exposure` fraction of it that was observed); returns the amount learned."""
        if exposure <= 0:
            return 0.0
        cfg = self.config
        hod, dow = hour_of_day(hour_index), day_of_week(hour_index)
        profile = self._profile(hod)
        weekday = self._weekday(dow)
        if self.warm:
            mean = profile * weekday * exposure
            spread = cfg.clip_sigmas * self.sigma(mean)
            total = min(max(total, mean - spread), mean + spread)
        g = self._g_h**exposure
        for i in range(24):
            self._c[i] *= g
            self._e[i] *= g
        gd = self._g_d**exposure
        for i in range(7):
            self._dc[i] *= gd
            self._de[i] *= gd
        self._c[hod] += total
        self._e[hod] += exposure * weekday
        if self.hours > 0:  # the first hour has no profile to compare the weekday with
            self._dc[dow] += total
            self._de[dow] += profile * exposure
        self.hours += exposure
        self._cache.clear()
        return total
