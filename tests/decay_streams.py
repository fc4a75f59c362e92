"""Deterministic streams for the detectors' specifications: exact hourly rates, no noise.

The backtest scenarios (`streams.backtest_scenarios`) judge the detectors on realistic, noisy streams; these are
for rules whose exact edges a test must pin down, where noise would blur them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from processors.alert_event import AlertEvent
from processors.decay import DecayConfig, DecayMonitor, StreamHealth
from streams.backtest_scenarios import EPOCH_MS, HOUR_MS

TICK = 300_000
TICKS_PER_HOUR = HOUR_MS // TICK


@dataclass
class Snap:
    """The snapshot fields the detectors read."""

    account: str = "acme"
    platform: str = "x"
    audience_followers: int = 5_000
    active_followers: tuple = (50, 300, 900)
    new_followers: int = 0
    new_followers_activated: int = 0
    engaging_events: int = 0
    follower_engaging_events: int = 0
    follows: int = 0
    unfollows: int = 0
    campaign_engaged_actors: dict = field(default_factory=dict)


class ExactStream:
    """One stream observed every 5 minutes, its counters advanced by exact hourly rates (fractions carried over)."""

    def __init__(self, config: DecayConfig = DecayConfig(), snap: Snap | None = None, start_ms: int = EPOCH_MS):
        self.monitor = DecayMonitor(config)
        self.snap = snap or Snap()
        self.T = start_ms
        self._carry = [0.0, 0.0, 0.0]
        self.monitor.observe(self.T, (self.snap,))

    def run(self, hours: float, engagements: float = 60.0, others: float = 20.0, follows: float = 0.0,
            audience: int | None = None, active: tuple | None = None, cohort: tuple[int, int] | None = None,
            campaigns: dict | None = None) -> list[tuple[int, AlertEvent]]:
        """Advance `hours` at these hourly rates (follower engagements, other events, follows), the snapshot's
        audience, active followers, cohort (new, activated) and campaigns set as given; returns (T, alert)s."""
        s = self.snap
        if audience is not None:
            s.audience_followers = audience
        if active is not None:
            s.active_followers = active
        if cohort is not None:
            s.new_followers, s.new_followers_activated = cohort
        if campaigns is not None:
            s.campaign_engaged_actors = campaigns
        alerts = []
        for _ in range(round(hours * TICKS_PER_HOUR)):
            fe, other, fol = (self._take(i, rate / TICKS_PER_HOUR)
                              for i, rate in enumerate((engagements, others, follows)))
            s.follower_engaging_events += fe
            s.engaging_events += fe + other
            s.follows += fol
            alerts += self.tick()
        return alerts

    def silence(self, hours: float) -> list[tuple[int, AlertEvent]]:
        """`hours` without a single event."""
        return [a for _ in range(round(hours * TICKS_PER_HOUR)) for a in self.tick()]

    def tick(self) -> list[tuple[int, AlertEvent]]:
        self.T += TICK
        return [(self.T, a) for a in self.monitor.observe(self.T, (self.snap,))]

    def _take(self, i: int, amount: float) -> int:
        self._carry[i] += amount
        whole = int(self._carry[i])
        self._carry[i] -= whole
        return whole

    @property
    def health(self) -> StreamHealth:
        (health,) = self.monitor.state().streams
        return health

    def window(self, label: str):
        return next(w for w in self.health.windows if w.window == label)
