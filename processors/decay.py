"""Engagement-decay, hollow-growth, onboarding-collapse and silence detectors over engine snapshots.

Pure and incremental: `DecayMonitor.observe(T, streams)` is called at every evaluation tick with the engine's
`StreamSnapshot`s at T (or anything with the same attributes); rates come from the differences of the cumulative
counters between ticks. It returns the `AlertEvent`s of the transitions that happened at T; `state(T)` gives the
values for the gauges. No clock is read: T drives everything.

Per stream:

* **Decay** (`EngagementDecay`, one state per window rule): a one-sided Poisson CUSUM on the stream's follower
  engaging events against their seasonal expected rate (`SeasonalBaseline`, hour of day × day of week, robust,
  frozen while the stream is alarmed). For a design drop δ an interval with n events where μ0 were expected adds
  n·ln(1−δ) + δ·μ0 nats; a bank of designs runs in parallel and the largest statistic counts. ok → warning when it
  reaches the rule's threshold, back to ok when it falls below the exit threshold (hysteresis); critical while the
  drop estimated over the CUSUM's run is ≥ `critical_drop` (left below `critical_exit_drop`). A transition must
  hold for `min_duration_ms` (`resolve_after_ms` to de-escalate) and a stream that resolved cannot page again
  within `cooldown_ms`. Streams with fewer than `min_audience` followers or under `min_rate_per_hour` expected
  follower engagements are never in decay (they page nobody). During a tagged campaign the expected rate is the
  baseline × the campaign's own lift, fitted over its first `campaign_fit_h` (the CUSUMs hold meanwhile); campaign
  time reaches the test `campaign_lag_ms` late, so the hour after a campaign, still flagged, is tested as organic.
* **Silence** (`EngagementStreamSilent`): an interval with no event at all is held back; once the stream's
  seasonal rate of all events says at least `silence_expected_events` should have arrived (P(0) ≈ e^−10), the
  stream is silent and the held-back time is discarded — it is not evidence of decay — until events resume.
* **Hollow growth** (`HollowFollowerGrowth`): over the last `hollow_span_ms` the audience grew by at least
  `hollow_surge_factor` × the follows the stream's seasonal follow rate explains and by `hollow_min_growth_ratio`
  of the audience, while the active followers (window `hollow_window`) rose by no more than noise plus
  `hollow_engaged_share` × (baseline ratio × excess followers): followers that do not engage.
* **Onboarding collapse** (`OnboardingCollapse`): the cohort's activation (activated / new followers) falls to
  (1 − `onboarding_drop`) × its learned level with a binomial z ≥ `onboarding_z`; inhibited, and not learning, for
  one cohort window after hollow growth, whose bought followers never activate.
"""

from __future__ import annotations

import math
import pickle
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple

from processors.alert_event import FIRING, RESOLVED, AlertEvent
from processors.seasonal_baseline import HOUR_MS, BaselineConfig, SeasonalBaseline

OK, WARNING, CRITICAL = 0, 1, 2
SEVERITY = {WARNING: "warning", CRITICAL: "critical"}

DECAY = "EngagementDecay"
SILENT = "EngagementStreamSilent"
HOLLOW = "HollowFollowerGrowth"
ONBOARDING = "OnboardingCollapse"


@dataclass(frozen=True, slots=True)
class WindowRule:
    """The decay test attached to one window label."""

    window: str
    """A window label of the engine (`1h`, `24h`); the ratio quoted in the alert is this window's."""
    drops: tuple[float, ...]
    """Design drops δ of the CUSUM bank (0 < δ < 1)."""
    threshold: float
    """Nats of evidence that enter warning."""
    exit_threshold: float
    """Below this the state returns to ok."""
    critical_drop: float = 0.4
    """Estimated drop that makes a decay critical."""
    critical_exit_drop: float = 0.3
    """Estimated drop below which a critical decay returns to warning."""
    tolerance: float = 0.0
    """The test's null hypothesis is the baseline lowered by up to this share: a baseline a few per cent off
    (day-to-day over-dispersion, a young weekday factor) is not evidence, which on large streams would add up fast."""
    tolerance_rate: float = 20.0
    """…scaled by rate / (rate + this), rate the expected follower engagements per hour: on small streams Poisson
    noise dwarfs such a misfit, and a tolerance would only slow detection."""


DEFAULT_RULES = (
    WindowRule("1h", drops=(0.3, 0.6), threshold=7.0, exit_threshold=2.5, tolerance=0.06),
    # The 24 h test needs the tolerance too: without it, a day 12 % below its baseline (day-to-day over-dispersion)
    # adds 13 nats on a stream of 80 follower engagements an hour.
    WindowRule("24h", drops=(0.15,), threshold=10.0, exit_threshold=3.5, tolerance=0.06),
)


@dataclass(frozen=True, slots=True)
class DecayConfig:
    """Every knob of the detectors; durations in milliseconds."""

    windows: tuple[str, ...] = ("1h", "24h", "7d")
    """The engine's window labels, aligned with the per-window tuples of a snapshot."""
    rules: tuple[WindowRule, ...] = DEFAULT_RULES
    """Decay tests; rules for windows the engine does not have are ignored."""
    warmup_h: float = 7 * 24.0
    """Hours of observed history before a stream can be in decay (a week: weekly seasonality)."""
    min_learned_h: float = 48.0
    """Hours learned by the baseline (campaign hours excluded) before a stream can be in decay."""
    campaign_normal_share: float = 0.6
    """Campaign hours are set aside (not learned, no decay evidence) unless the stream runs campaigns more than this
    share of the time (EWMA over `campaign_half_life_h`): then campaigns are its normal and are learned."""
    campaign_half_life_h: float = 7 * 24.0
    campaign_lag_ms: int = 3_600_000
    """How long the campaign flag outlives a campaign: the engine's shortest window (1 h). Campaign time is fed to
    the decay test this late, so that the last `campaign_lag_ms` before the flag drops is tested as organic time."""
    campaign_fit_h: float = 2.0
    """Campaign hours spent estimating the campaign's lift (its follower engagements ÷ the organic baseline)
    before campaign time is tested against baseline × lift; the CUSUMs hold their value meanwhile."""
    campaign_fit_expected: float = 25.0
    """…and at least this many organic follower engagements expected over those hours."""
    campaign_fit_z: float = 1.0
    """The lift used is the estimate lowered by this many standard errors (and never below 1): an overestimated
    lift would read as a decay."""
    min_duration_ms: int = 15 * 60_000
    """A worse state must hold this long before it is entered."""
    resolve_after_ms: int = 30 * 60_000
    """A better state must hold this long before it is entered."""
    cooldown_ms: int = 2 * 3_600_000
    """After a resolution, the same alert cannot fire again for this long."""
    suspect_share: float = 0.5
    """An hour during which a decay statistic reached this share of its threshold is not learned either: a decay
    on its way to the threshold must not be absorbed by the baseline first (on small streams that takes a day)."""
    relearn_after_ms: int = 7 * 86_400_000
    """A decay alarmed this long is the new normal: the baseline resumes learning."""
    min_audience: int = 100
    """Minimum-volume guard: fewer followers page nobody."""
    min_rate_per_hour: float = 1.0
    """Minimum-volume guard: fewer expected follower engagements per hour (weekly mean) page nobody."""
    cusum_headroom: float = 4.0
    """The CUSUM is capped this far above its threshold, so that it recovers in bounded time."""
    silence_min_ms: int = 15 * 60_000
    """A stream is never silent after less than this without events."""
    silence_expected_events: float = 15.0
    """Silent once this many events were expected during the gap (at the recent rate, if lower than usual)."""
    recent_half_life_h: float = 3.0
    """Memory of the recent all-events rate relative to its baseline, used by the silence test."""
    max_pending_ms: int = 6 * 3_600_000
    """A gap that is still not silence after this long is taken as genuine zeros."""
    hollow_window: str = "24h"
    """Window whose active followers the hollow-growth test reads; the engine's longest window if it has no such one,
    so that the alert and gauge name the window actually read."""
    hollow_span_ms: int = 6 * 3_600_000
    hollow_surge_factor: float = 3.0
    hollow_exit_factor: float = 1.5
    hollow_min_growth_ratio: float = 0.02
    hollow_engaged_share: float = 0.25
    cohort_label: str = "7d"
    cohort_ms: int = 7 * 86_400_000
    onboarding_min_new: int = 30
    onboarding_drop: float = 0.35
    onboarding_exit_drop: float = 0.2
    onboarding_z: float = 3.0
    onboarding_half_life_h: float = 48.0
    rate_baseline: BaselineConfig = BaselineConfig()
    """Seasonal baseline of the event rates (follower engagements, all events)."""
    slow_baseline: BaselineConfig = field(default=BaselineConfig(refit_every_h=24.0))
    """Seasonal baseline of follows (refitted daily)."""
    ratio_baseline: BaselineConfig = field(default=BaselineConfig(counts=False, refit_every_h=24.0, overdispersion=0.2))
    """Seasonal baseline of the active-follower ratio per window (the exported baseline gauge)."""

    def __post_init__(self) -> None:
        if self.windows and self.hollow_window not in self.windows:
            object.__setattr__(self, "hollow_window", self.windows[-1])

    @classmethod
    def from_engine(cls, engine_config: Any, **overrides: Any) -> "DecayConfig":
        """Windows and cohort taken from a `processors.config.EngineConfig`."""
        from processors.config import format_duration

        return cls(
            windows=tuple(engine_config.window_labels),
            cohort_label=format_duration(engine_config.cohort_ms),
            cohort_ms=engine_config.cohort_ms,
            **overrides,
        )


class WindowHealth(NamedTuple):
    window: str
    state: int | None
    """0 ok, 1 warning, 2 critical; None for a window without a decay rule."""
    ratio: float | None
    """Current active-follower ratio (None while the audience is 0)."""
    ratio_baseline: float | None
    """Seasonal baseline of the ratio at T (None until learned)."""
    evidence: float
    """CUSUM statistic, nats."""
    drop: float | None
    """Drop of the follower engagement rate estimated over the CUSUM run."""


class StreamHealth(NamedTuple):
    account: str
    platform: str
    silent: bool
    monitored: bool
    """Passes the warm-up and minimum-volume guards (can be in decay)."""
    windows: tuple[WindowHealth, ...]
    hollow_growth: bool
    onboarding_collapse: bool
    expected_rate: float
    """Expected follower engagements per hour at T."""


class MonitorState(NamedTuple):
    at_ms: int
    streams: tuple[StreamHealth, ...]
    alerts_total: tuple[tuple[str, str, int], ...]
    """(alertname, severity, count) of alerts fired since start."""
    hollow_window: str = "24h"
    """Window label of the active followers the hollow-growth test reads (its alert's and gauge's `window`)."""
    cohort_window: str = "7d"
    """Cohort window label of the onboarding test (its alert's and gauge's `window`)."""


class _Transition:
    """State machine with a minimum duration per direction and a cooldown; shared by all detectors."""

    __slots__ = ("state", "since", "candidate", "candidate_since", "last_resolved")

    def __init__(self) -> None:
        self.state = OK
        self.since = 0
        self.candidate: int | None = None
        self.candidate_since = 0
        self.last_resolved: int | None = None

    def step(
        self, T: int, desired: int, cfg: DecayConfig, immediate: bool = False, cooldown: bool = True
    ) -> tuple[int, int, int] | None:
        """Move towards `desired`; returns (old, new, old since) when the state changed at T."""
        if desired == self.state:
            self.candidate = None
            return None
        if self.candidate != desired:
            self.candidate, self.candidate_since = desired, T
        hold = cfg.min_duration_ms if desired > self.state else cfg.resolve_after_ms
        if not immediate and T - self.candidate_since < hold:
            return None
        if cooldown and self.state == OK and self.last_resolved is not None and T - self.last_resolved < cfg.cooldown_ms:
            return None
        old, old_since = self.state, self.since
        self.state, self.candidate = desired, None
        if desired == OK:
            self.last_resolved = T
        else:
            self.since = T
        return old, desired, old_since


class _Cusum:
    """A bank of one-sided Poisson CUSUMs for rate drops, with the run sums that estimate the drop."""

    __slots__ = ("logs", "drops", "s", "n", "m", "cap", "tol", "tol_rate")

    def __init__(self, drops: tuple[float, ...], cap: float, tolerance: float = 0.0, tolerance_rate: float = 20.0
                 ) -> None:
        self.drops = drops
        self.tol, self.tol_rate = tolerance, tolerance_rate
        self.logs = tuple(math.log(1.0 - d) for d in drops)
        self.s = [0.0] * len(drops)
        self.n = [0.0] * len(drops)
        self.m = [0.0] * len(drops)
        self.cap = cap

    def reset(self) -> None:
        for i in range(len(self.s)):
            self.s[i] = self.n[i] = self.m[i] = 0.0

    def update(self, n: float, mu0: float, hours: float) -> None:
        tol = getattr(self, "tol", 0.0)  # checkpoints from before tolerances
        keep = 1.0
        if tol > 0.0 and hours > 0.0:
            rate = mu0 / hours
            keep = 1.0 - tol * rate / (rate + self.tol_rate)
        for i, d in enumerate(self.drops):
            s = self.s[i] + n * self.logs[i] + d * mu0 * keep
            if s <= 0.0:
                self.s[i] = self.n[i] = self.m[i] = 0.0
            else:
                self.s[i] = min(s, self.cap)
                self.n[i] += n
                self.m[i] += mu0

    def statistic(self) -> tuple[float, float | None]:
        i = max(range(len(self.s)), key=self.s.__getitem__)
        if self.s[i] <= 0.0 or self.m[i] <= 0.0:
            return 0.0, None
        return self.s[i], 1.0 - self.n[i] / self.m[i]


class _Window:
    __slots__ = ("rule", "index", "cusum", "machine")

    def __init__(self, rule: WindowRule, index: int, cfg: DecayConfig) -> None:
        self.rule, self.index = rule, index
        self.cusum = _Cusum(rule.drops, rule.threshold + cfg.cusum_headroom, rule.tolerance, rule.tolerance_rate)
        self.machine = _Transition()


def _windows(cfg: DecayConfig) -> list[_Window]:
    """A fresh test per rule whose window the engine has."""
    return [_Window(rule, cfg.windows.index(rule.window), cfg) for rule in cfg.rules if rule.window in cfg.windows]


class _Stream:
    """Everything the monitor remembers about one (account, platform)."""

    def __init__(self, cfg: DecayConfig, snap: Any, T: int) -> None:
        self.cfg = cfg
        self.account, self.platform = snap.account, snap.platform
        self.t = T
        self.fe, self.all, self.fol = _counters(snap)
        self.fe_base = SeasonalBaseline(cfg.rate_baseline)
        self.all_base = SeasonalBaseline(cfg.rate_baseline)
        self.fol_base = SeasonalBaseline(cfg.slow_baseline)
        self.ratio_bases = [SeasonalBaseline(cfg.ratio_baseline) for _ in cfg.windows]
        self.ratios: tuple[float | None, ...] = _ratios(snap)
        self.windows = _windows(cfg)
        self.pending: list[tuple[int, int, int, int, int]] = []
        self.recent = [0.0, 0.0]  # decayed all events observed / expected
        self.silent = False
        self.silence = _Transition()
        # hour accumulator of consumed intervals
        self.hour: int | None = None
        self.acc = [0.0, 0.0, 0.0, 0.0, 0.0]  # follower engaging, all, follows, exposure (h), campaign exposure (h)
        self.observed_h = 0.0  # exposure consumed, campaign hours included
        self.campaign_share = 0.0  # EWMA of the share of hours with a campaign running
        self._reset_campaign()
        self.dirty = False  # a decay alarm was on during this hour: do not learn it
        self.hollow_dirty = False
        # hollow growth
        self.checkpoints: deque[tuple[int, int, int]] = deque()  # (T, audience, active followers)
        self.hollow = _Transition()
        self.hollow_ended: int | None = None
        self.hollow_excess = 0.0
        # onboarding
        self.onboarding = _Transition()
        self.activation: float | None = None
        self.activation_hours = 0.0
        self.cohort = (0, 0)
        self.audience = snap.audience_followers

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "camp_buf" not in state:  # a checkpoint from before campaign lifts
            self._reset_campaign()

    def adopt(self, cfg: DecayConfig) -> None:
        """Take the settings of the monitor restoring this stream: a release or setting that changes a decay rule
        applies to restored streams too. Each window keeps its state and, while its design drops are unchanged,
        its evidence. The baselines keep the settings they were built with."""
        old = {w.rule.window: w for w in self.windows}
        self.cfg = cfg
        self.windows = _windows(cfg)
        for w in self.windows:
            kept = old.get(w.rule.window)
            if kept is not None:
                w.machine = kept.machine
                if kept.rule.drops == w.rule.drops:
                    c = kept.cusum
                    w.cusum.s, w.cusum.n, w.cusum.m = [min(x, w.cusum.cap) for x in c.s], c.n, c.m

    # -- per tick ---------------------------------------------------------------------------------------

    def observe(self, cfg: DecayConfig, T: int, snap: Any) -> list[AlertEvent]:
        if T <= self.t:
            return []
        fe, al, fol = _counters(snap)
        iv = (self.t, T, fe - self.fe, al - self.all, fol - self.fol, _campaign_running(snap))
        self.t, self.fe, self.all, self.fol = T, fe, al, fol
        self.ratios = _ratios(snap)
        self.audience = snap.audience_followers
        self.cohort = (snap.new_followers, snap.new_followers_activated)
        out: list[AlertEvent] = []
        if iv[3] <= 0:
            if not self.silent:
                self.pending.append(iv)
                start = self.pending[0][0]
                expected = self.all_base.expected(start, T) * self._recent_factor() if self.all_base.hours >= 24 else 0.0
                if T - start >= cfg.silence_min_ms and expected >= cfg.silence_expected_events:
                    self.silent = True
                    self.pending.clear()
                    out += self._emit(T, self.silence, self.silence.step(T, WARNING, cfg, True, False), SILENT, None, cfg)
                elif T - start >= cfg.max_pending_ms:
                    self._flush()
        else:
            if self.silent:
                self.silent = False
                out += self._emit(T, self.silence, self.silence.step(T, OK, cfg, True, False), SILENT, None, cfg)
            self._flush()
            self._consume(iv)
        out += self._evaluate_decay(cfg, T)
        out += self._evaluate_hollow(cfg, T, snap)
        out += self._evaluate_onboarding(cfg, T)
        return out

    def _flush(self) -> None:
        for p in self.pending:
            self._consume(p)
        self.pending.clear()

    def _consume(self, iv: tuple[int, int, int, int, int, bool]) -> None:
        """Feed an interval of genuine observation to the hour accumulator and the CUSUMs."""
        t0, t1, n_fe, n_all, n_fol, campaign = iv
        span = t1 - t0
        t = t0
        while t < t1:
            h = t // HOUR_MS
            nxt = min(t1, (h + 1) * HOUR_MS)
            if self.hour != h:
                self._close_hour()
                self.hour = h
            share = (nxt - t) / span
            acc = self.acc
            acc[0] += n_fe * share
            acc[1] += n_all * share
            acc[2] += n_fol * share
            acc[3] += (nxt - t) / HOUR_MS
            if campaign:
                acc[4] += (nxt - t) / HOUR_MS
            t = nxt
        self.observed_h += span / HOUR_MS
        if self.all_base.hours >= 24:
            g = 0.5 ** (span / HOUR_MS / self.cfg.recent_half_life_h)
            self.recent[0] = self.recent[0] * g + n_all
            self.recent[1] = self.recent[1] * g + self.all_base.expected(t0, t1)
        if self._campaigns_set_aside():
            buf = self.camp_buf
            if campaign:
                # A campaign lifts engagement by a factor of its own. Its time is fed to the test `campaign_lag_ms`
                # late: the flag outlives the campaign by the engine's shortest window, and when it drops, the
                # time still held back was organic.
                buf.append((t0, t1, n_fe))
                while buf and buf[0][1] <= t1 - self.cfg.campaign_lag_ms:
                    self._test_campaign(*buf.popleft())
                return
            if buf:
                while buf:
                    a, b, n = buf.popleft()
                    self._test(a, b, n, 1.0)
                self._reset_campaign()
        elif self.camp_buf:
            while self.camp_buf:
                self._test(*self.camp_buf.popleft(), 1.0)
            self._reset_campaign()
        self._test(t0, t1, n_fe, 1.0)

    def _reset_campaign(self) -> None:
        self.camp_buf: deque[tuple[int, int, float]] = deque()
        self.camp_fit = [0.0, 0.0, 0.0]  # follower engagements, organic expected, hours: the lift estimate
        self.lift: float | None = None

    def _test_campaign(self, t0: int, t1: int, n_fe: float) -> None:
        """Campaign time: estimate the campaign's lift first (CUSUMs held), then test against baseline × lift."""
        if self.lift is None:
            fit = self.camp_fit
            fit[0] += n_fe
            fit[1] += self.fe_base.expected(t0, t1)
            fit[2] += (t1 - t0) / HOUR_MS
            cfg = self.cfg
            if fit[2] >= cfg.campaign_fit_h and fit[1] >= cfg.campaign_fit_expected:
                n, m = fit[0], fit[1]
                self.lift = max(1.0, (n - cfg.campaign_fit_z * math.sqrt(n + 1.0)) / m)
            elif not self.monitored(cfg):
                for w in self.windows:
                    w.cusum.reset()
            return
        self._test(t0, t1, n_fe, self.lift)

    def _test(self, t0: int, t1: int, n_fe: float, lift: float) -> None:
        if self.monitored(self.cfg):
            mu0 = self.fe_base.expected(t0, t1) * lift
            for w in self.windows:
                w.cusum.update(n_fe, mu0, (t1 - t0) / HOUR_MS)
        else:  # no evidence is banked before the stream is monitored (young baseline, small audience)
            for w in self.windows:
                w.cusum.reset()

    def _campaigns_set_aside(self) -> bool:
        return self.campaign_share < self.cfg.campaign_normal_share

    def _recent_factor(self) -> float:
        """Recent all-events rate over its baseline, capped at 1 (a decaying stream is expected to be quieter)."""
        n, m = self.recent
        return 1.0 if m < 5.0 else min(1.0, (n + 1.0) / m)

    def _close_hour(self) -> None:
        if self.hour is None:
            return
        fe, al, fol, exposure, in_campaign = self.acc
        if exposure > 0:
            set_aside = in_campaign > 0 and self._campaigns_set_aside()
            g = 0.5 ** (exposure / self.cfg.campaign_half_life_h)
            self.campaign_share = self.campaign_share * g + (1.0 - g) * (in_campaign > 0)
            if not self.dirty and not set_aside:
                self.fe_base.observe_hour(self.hour, fe, exposure)
                self.all_base.observe_hour(self.hour, al, exposure)
                for base, ratio in zip(self.ratio_bases, self.ratios):
                    if ratio is not None:
                        base.observe_hour(self.hour, ratio, exposure)
            if not self.hollow_dirty:
                self.fol_base.observe_hour(self.hour, fol, exposure)
            # Bought followers never activate: a cohort diluted by them must not lower the learned level.
            inhibited = self.hollow_dirty or self._onboarding_inhibited((self.hour + 1) * HOUR_MS)
            if self.onboarding.state == OK and not inhibited and self.cohort[0] > 0:
                p = self.cohort[1] / self.cohort[0]
                if self.activation is None:
                    self.activation = p
                else:
                    alpha = 1.0 - 0.5 ** (exposure / self.cfg.onboarding_half_life_h)
                    self.activation += alpha * (p - self.activation)
                self.activation_hours += exposure
        self.acc = [0.0, 0.0, 0.0, 0.0, 0.0]
        self.dirty = False
        self.hollow_dirty = False

    # -- detectors --------------------------------------------------------------------------------------

    def monitored(self, cfg: DecayConfig) -> bool:
        return (
            self.observed_h >= cfg.warmup_h
            and self.fe_base.hours >= cfg.min_learned_h
            and self.audience >= cfg.min_audience
            and self.fe_base.level() >= cfg.min_rate_per_hour
        )

    def _evaluate_decay(self, cfg: DecayConfig, T: int) -> list[AlertEvent]:
        out: list[AlertEvent] = []
        guard = self.monitored(cfg)
        for w in self.windows:
            m = w.machine
            if self.silent:
                continue
            if not guard:
                desired = OK
            else:
                stat, drop = w.cusum.statistic()
                if m.state == OK:
                    desired = WARNING if stat >= w.rule.threshold else OK
                else:
                    desired = OK if stat <= w.rule.exit_threshold else WARNING
                if desired != OK and drop is not None:
                    limit = w.rule.critical_exit_drop if m.state == CRITICAL else w.rule.critical_drop
                    if drop >= limit:
                        desired = CRITICAL
            change = m.step(T, desired, cfg, immediate=not guard)
            out += self._emit(T, m, change, DECAY, w, cfg)
            if m.state != OK and T - m.since < cfg.relearn_after_ms:
                self.dirty = True
            elif guard and m.state == OK and w.cusum.statistic()[0] >= cfg.suspect_share * w.rule.threshold:
                self.dirty = True
        return out

    def _evaluate_hollow(self, cfg: DecayConfig, T: int, snap: Any) -> list[AlertEvent]:
        idx = cfg.windows.index(cfg.hollow_window)
        active = snap.active_followers[idx]
        cps = self.checkpoints
        if not cps or T - cps[-1][0] >= 5 * 60_000:
            cps.append((T, snap.audience_followers, active))
        while len(cps) > 1 and cps[1][0] <= T - cfg.hollow_span_ms:
            cps.popleft()
        t0, audience0, active0 = cps[0]
        desired = OK
        if (
            T - t0 >= HOUR_MS
            and self.fol_base.hours >= cfg.warmup_h
            and audience0 >= cfg.min_audience
            and not self.silent
        ):
            expected = self.fol_base.expected(t0, T)
            growth = snap.audience_followers - audience0
            excess = growth - expected
            noise = 3.0 * math.sqrt(expected + 1.0)
            if self.hollow.state == OK:
                surge = growth >= cfg.hollow_surge_factor * expected + noise
                big = excess >= cfg.hollow_min_growth_ratio * audience0
            else:
                surge = growth >= cfg.hollow_exit_factor * expected + noise
                big = excess >= 0.5 * cfg.hollow_min_growth_ratio * audience0
            ratio_base = self._ratio_baseline(idx, T)
            if ratio_base is None:
                ratio_base = active0 / audience0
            flat = active - active0 <= 3.0 * math.sqrt(active0 + 1.0) + cfg.hollow_engaged_share * ratio_base * max(
                excess, 0.0
            )
            if surge and big and flat:
                desired = WARNING
                self.hollow_excess = excess
        if desired != OK or self.hollow.state != OK:
            self.hollow_dirty = True
        change = self.hollow.step(T, desired, cfg)
        if change and change[1] == OK:
            self.hollow_ended = T
        return self._emit(T, self.hollow, change, HOLLOW, None, cfg)

    def _evaluate_onboarding(self, cfg: DecayConfig, T: int) -> list[AlertEvent]:
        n, a = self.cohort
        p0 = self.activation
        inhibited = self._onboarding_inhibited(T)
        desired = OK
        if not inhibited and p0 is not None and 0 < p0 < 1 and self.activation_hours >= cfg.warmup_h and n > 0:
            p = a / n
            z = (p0 - p) * math.sqrt(n / (p0 * (1 - p0)))
            if self.onboarding.state == OK:
                if n >= cfg.onboarding_min_new and p <= (1 - cfg.onboarding_drop) * p0 and z >= cfg.onboarding_z:
                    desired = WARNING
            elif n >= cfg.onboarding_min_new // 2 and p < (1 - cfg.onboarding_exit_drop) * p0:
                desired = WARNING
        change = self.onboarding.step(T, desired, cfg, immediate=inhibited)
        return self._emit(T, self.onboarding, change, ONBOARDING, None, cfg)

    def _onboarding_inhibited(self, T: int) -> bool:
        """During hollow growth and for a cohort window after it, the cohort holds followers that never activate."""
        return self.hollow.state != OK or (self.hollow_ended is not None and T - self.hollow_ended < self.cfg.cohort_ms)

    # -- alerts -----------------------------------------------------------------------------------------

    def _ratio_baseline(self, idx: int, T: int) -> float | None:
        base = self.ratio_bases[idx]
        return base.rate(T // HOUR_MS) if base.hours >= 24 else None

    def _emit(
        self,
        T: int,
        machine: _Transition,
        change: tuple[int, int, int] | None,
        alertname: str,
        window: _Window | None,
        cfg: DecayConfig,
    ) -> list[AlertEvent]:
        if change is None:
            return []
        old, new, old_since = change
        out = []
        if old != OK:
            out.append(self._alert(RESOLVED, alertname, SEVERITY[old], window, cfg, T, start=old_since, end=T))
        if new != OK:
            out.append(self._alert(FIRING, alertname, SEVERITY[new], window, cfg, T, start=T, end=None))
        return out

    def _alert(
        self, status: str, alertname: str, severity: str, window: _Window | None, cfg: DecayConfig, T: int,
        start: int, end: int | None,
    ) -> AlertEvent:
        where = f"{self.account} on {self.platform}"
        labels: list[tuple[str, str]] = [("alertname", alertname), ("account", self.account), ("platform", self.platform)]
        if alertname == DECAY:
            assert window is not None
            label = window.rule.window
            ratio, base = self.ratios[window.index], self._ratio_baseline(window.index, T)
            stat, drop = window.cusum.statistic()
            expected = self.fe_base.rate(T // HOUR_MS)
            summary = f"Follower engagement decay for {where} ({label})"
            description = (
                f"Active-follower ratio ({label}) {_fmt(ratio)} against a seasonal baseline of {_fmt(base)}; "
                f"follower engagements {_pct(drop)} below their expected rate ({expected:.1f}/h now), "
                f"evidence {stat:.1f} nats (threshold {window.rule.threshold:g})."
            )
        elif alertname == SILENT:
            label = None
            summary = f"No events from {where}"
            idx = len(self.ratios) - 1
            state = "has sent no event for longer than its usual rate allows" if status == FIRING else "is sending again"
            description = (
                f"The stream {state}; silence is not reported as decay. Active-follower ratio "
                f"({cfg.windows[idx]}) {_fmt(self.ratios[idx])} against a baseline of "
                f"{_fmt(self._ratio_baseline(idx, T))}."
            )
        elif alertname == HOLLOW:
            label = cfg.hollow_window
            idx = cfg.windows.index(label)
            summary = f"Hollow follower growth for {where}"
            description = (
                f"Audience grew by about {self.hollow_excess:.0f} followers more than usual within "
                f"{cfg.hollow_span_ms // HOUR_MS}h while active followers ({label}) stayed flat; active-follower "
                f"ratio {_fmt(self.ratios[idx])} against a baseline of {_fmt(self._ratio_baseline(idx, T))}."
            )
        else:
            label = cfg.cohort_label
            n, a = self.cohort
            summary = f"New-follower activation collapsed for {where}"
            description = (
                f"{a} of {n} new followers ({_fmt(a / n if n else None)}) engaged against a learned activation of "
                f"{_fmt(self.activation)}."
            )
        if label is not None:
            labels.append(("window", label))
        labels.append(("severity", severity))
        return AlertEvent(
            status=status,
            labels=tuple(labels),
            annotations=(("summary", summary), ("description", description)),
            starts_at_ms=start,
            ends_at_ms=end,
        )

    def health(self, cfg: DecayConfig, T: int) -> StreamHealth:
        by_index = {w.index: w for w in self.windows}
        windows = []
        for i, label in enumerate(cfg.windows):
            w = by_index.get(i)
            stat, drop = w.cusum.statistic() if w else (0.0, None)
            windows.append(
                WindowHealth(label, w.machine.state if w else None, self.ratios[i], self._ratio_baseline(i, T), stat, drop)
            )
        return StreamHealth(
            account=self.account,
            platform=self.platform,
            silent=self.silent,
            monitored=self.monitored(cfg),
            windows=tuple(windows),
            hollow_growth=self.hollow.state != OK,
            onboarding_collapse=self.onboarding.state != OK,
            expected_rate=self.fe_base.rate(T // HOUR_MS),
        )


def _counters(snap: Any) -> tuple[int, int, int]:
    return (
        snap.follower_engaging_events,
        snap.engaging_events + snap.follows + snap.unfollows,
        snap.follows,
    )


def _campaign_running(snap: Any) -> bool:
    """A tagged campaign had engaged actors within the shortest window (a campaign lifts engagement)."""
    campaigns = getattr(snap, "campaign_engaged_actors", None)
    if not campaigns:
        return False
    return any((v[0] if isinstance(v, tuple) else v) > 0 for v in campaigns.values())


def _ratios(snap: Any) -> tuple[float | None, ...]:
    audience = snap.audience_followers
    return tuple(None if audience <= 0 else n / audience for n in snap.active_followers)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _pct(drop: float | None) -> str:
    return "n/a" if drop is None else f"{drop:.0%}"


class DecayMonitor:
    """All detectors for all streams; call `observe` at every evaluation tick."""

    def __init__(self, config: DecayConfig = DecayConfig()) -> None:
        self.config = config
        self._streams: dict[tuple[str, str], _Stream] = {}
        self._fired: dict[tuple[str, str], int] = {}
        self._t: int | None = None

    def observe(self, T_ms: int, streams: Iterable[Any]) -> list[AlertEvent]:
        """Advance to evaluation time T with the streams' snapshots at T; returns the alert transitions at T."""
        cfg, out = self.config, []
        for snap in streams:
            key = (snap.account, snap.platform)
            st = self._streams.get(key)
            if st is None:
                self._streams[key] = _Stream(cfg, snap, T_ms)
                continue
            out += st.observe(cfg, T_ms, snap)
        for a in out:
            if a.status == FIRING:
                k = (a.alertname, a.severity)
                self._fired[k] = self._fired.get(k, 0) + 1
        self._t = T_ms if self._t is None else max(self._t, T_ms)
        return out

    def state(self, T_ms: int | None = None) -> MonitorState:
        """Frozen view for the gauges: per stream health and the alert counters."""
        T = self._t if T_ms is None else T_ms
        T = 0 if T is None else T
        return MonitorState(
            at_ms=T,
            streams=tuple(st.health(self.config, T) for st in self._streams.values()),
            alerts_total=tuple((name, sev, n) for (name, sev), n in sorted(self._fired.items())),
            hollow_window=self.config.hollow_window,
            cohort_window=self.config.cohort_label,
        )

    def to_bytes(self) -> bytes:
        """Full state for a checkpoint (pickle: load only checkpoints you wrote)."""
        return pickle.dumps((self._streams, self._fired, self._t))

    @classmethod
    def from_bytes(cls, config: DecayConfig, data: bytes) -> "DecayMonitor":
        m = cls(config)
        m._streams, m._fired, m._t = pickle.loads(data)
        for st in m._streams.values():
            st.adopt(config)
        return m
