"""A seasonal baseline (hour of day × day of week) learned one hour at a time, robust to outliers.

Pure and incremental: the caller closes hours with `observe_hour(hour_index, total, exposure)` and asks
`rate(hour_index)` for the expected amount per hour of exposure. An hour index is `epoch_ms // 3_600_000`
(UTC hours; 1970-01-01 was a Thursday).

Model: rate = profile[hour of day] × weekday[day of week], fitted to exponentially decayed totals and
exposures kept per hour of the week (168 slots, memory `half_life_h`):

* `profile[h]` pools the seven days of hour h and its two neighbouring hours (weights ¼ ½ ¼) and is shrunk
  with `profile_prior` pseudo-events towards the mean of the surrounding seven hours (itself shrunk towards
  the overall level), so that a stream with a few events an hour still gets a stable profile;
* `weekday[d]` is observed / expected-by-profile over day d, shrunk towards 1 with `weekday_prior` pseudo-events
  (counts) or pseudo-hours (values);
* the two factors are refitted by alternating (backfitting) one step every `refit_every_h` learned hours;
* once warm, an hour is clipped to expected ± `clip_sigmas` standard deviations (Poisson plus `overdispersion`
  relative noise for counts; `overdispersion` relative noise for values) before it is learned, so a viral hour
  or a glitch does not drag the baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import repeat
from operator import add, mul

HOUR_MS = 3_600_000
_DOW_OFFSET = 3  # day 0 (1970-01-01) was a Thursday; Monday = 0


def hour_of_day(hour_index: int) -> int:
    return hour_index % 24


def day_of_week(hour_index: int) -> int:
    """Monday = 0 … Sunday = 6 (UTC)."""
    return (hour_index // 24 + _DOW_OFFSET) % 7


@dataclass(frozen=True, slots=True)
class BaselineConfig:
    """Knobs of one seasonal baseline."""

    half_life_h: float = 14 * 24.0
    """Memory: an hour learned this long ago weighs half as much as the latest one."""
    profile_prior: float = 10.0
    """Pseudo-events (counts) or pseudo-hours (values) at the overall level added to every hour-of-day slot."""
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
    refit_every_h: float = 1.0
    """Learned hours between two refits of the profile and weekday factors."""


class SeasonalBaseline:
    """Expected amount per hour for any hour, learned from closed hours; see the module docstring."""

    __slots__ = ("config", "_c", "_e", "_scale", "_g", "hours", "_since_fit", "_profile", "_weekday", "_level")

    def __init__(self, config: BaselineConfig = BaselineConfig()) -> None:
        self.config = config
        self._c = [0.0] * 168  # decayed totals per hour of week (dow * 24 + hod), times _scale
        self._e = [0.0] * 168  # decayed exposure hours, times _scale
        self._scale = 1.0  # lazy decay: new hours are added with a growing weight instead of decaying all
        self._g = 0.5 ** (-1.0 / config.half_life_h)
        self.hours = 0.0
        """Exposure learned so far, in hours (not decayed)."""
        self._since_fit = 0.0
        self._profile = [0.0] * 24
        self._weekday = [1.0] * 7
        self._level = 0.0

    # -- reading --------------------------------------------------------------------------------------

    def level(self) -> float:
        """The mean amount per hour over the week (0 before anything is learned)."""
        return self._level

    def rate(self, hour_index: int) -> float:
        """Expected amount per hour of exposure during that hour."""
        return self._profile[hour_index % 24] * self._weekday[(hour_index // 24 + _DOW_OFFSET) % 7]

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
        if self.warm:
            mean = self.rate(hour_index) * exposure
            spread = cfg.clip_sigmas * self.sigma(mean)
            total = min(max(total, mean - spread), mean + spread)
        self._scale *= self._g**exposure
        if self._scale > 1e150:
            k = 1.0 / self._scale
            self._c = [v * k for v in self._c]
            self._e = [v * k for v in self._e]
            self._scale = 1.0
        slot = day_of_week(hour_index) * 24 + hour_of_day(hour_index)
        self._c[slot] += total * self._scale
        self._e[slot] += exposure * self._scale
        self.hours += exposure
        self._since_fit += exposure
        if self._since_fit >= cfg.refit_every_h or self.hours <= cfg.warm_hours:
            self._refit()
        return total

    def _refit(self) -> None:
        """One backfitting step: profile given the weekday factors, then weekday factors given the profile."""
        self._since_fit = 0.0
        cfg, c, e, s = self.config, self._c, self._e, self._scale
        total_c, total_e = sum(c), sum(e)
        if total_e <= 0:
            return
        level = total_c / total_e
        if level <= 0.0:
            self._profile, self._weekday, self._level = [0.0] * 24, [1.0] * 7, 0.0
            return
        # Refitted every learned hour of every stream: whole-list operations (in the same order of additions, so
        # to the same bits) keep a replay of history with detectors affordable.
        hc = [0.0] * 24
        he = [0.0] * 24
        for d, wd in enumerate(self._weekday):
            day = slice(d * 24, d * 24 + 24)
            hc = list(map(add, hc, c[day]))
            he = list(map(add, he, map(mul, e[day], repeat(wd))))
        around_c, around_e = hc[-3:] + hc + hc[:3], he[-3:] + he + he[:3]  # hour h's seven: [h, h + 7)
        prior_e = cfg.profile_prior * s / (max(level, 1e-9) if cfg.counts else 1.0)
        profile = []
        for h in range(24):
            # shrink towards the mean of the surrounding seven hours (keeps the daily shape), itself towards level
            wc = sum(around_c[h : h + 7])
            we = sum(around_e[h : h + 7])
            wide = (wc + prior_e * level) / (we + prior_e)
            num = 0.25 * hc[h - 1] + 0.5 * hc[h] + 0.25 * hc[(h + 1) % 24]
            den = 0.25 * he[h - 1] + 0.5 * he[h] + 0.25 * he[(h + 1) % 24]
            prior_h = prior_e * level / max(wide, 1e-9) if cfg.counts else prior_e
            profile.append((num + prior_h * wide) / (den + prior_h))
        prior_w = cfg.weekday_prior * s * (1.0 if cfg.counts else level)
        weekday = []
        for d in range(7):
            base = d * 24
            dc = sum(c[base : base + 24])
            de = sum(map(mul, e[base : base + 24], profile))
            weekday.append((dc + prior_w) / (de + prior_w) if de + prior_w > 0 else 1.0)
        self._profile, self._weekday = profile, weekday
        self._level = sum([p * wd for wd in weekday for p in profile]) / 168
