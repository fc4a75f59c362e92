"""Seeded, labelled scenarios for the detector backtest, simulated at the level of the engine's snapshots.

A scenario is one stream over `days` days, observed every `tick_ms`: at each tick it yields an `ObservedStream`
with the attributes of `processors.snapshot.StreamSnapshot` that the detectors read (cumulative counters, audience,
active followers per window, new-follower cohort). Counts are Poisson with a seasonal rate:

    rate(t) = base × daily profile(hour) × weekday factor × day-to-day noise × scenario effect(t)

* daily profile: 1 + a·cos(2π(hour − peak)/24), a ∈ [0.3, 0.7]; weekend factor ∈ [0.6, 1.0];
  day-to-day log-normal noise (σ 0.07) and, on some streams, a viral burst (×2–4 for 1–3 h): real streams are
  over-dispersed, and the detectors must live with it;
* follower engaging events at `base` per hour (log-uniform over the grid's range), non-follower engaging events
  at 30 % of that, follows and unfollows from the audience size;
* active followers per window: the expected number of distinct actors among the window's follower events drawn
  from a pool of engaged followers (K·(1 − e^(−m/K)));
* new-follower cohort: every follow activates with probability `activation` after an exponential delay
  (mean 12 h); bought followers never do.

Scenario kinds: `stable`, `outage` (two 3 h outages: nothing at all arrives), `sudden` and `gradual` (6 h linear
onset) decays of a given size lasting `decay_hours` (None: to the end), `bought` (a spike of followers that never
engage), `onboarding` (activation falls to a fifth).
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass
from typing import Iterator, NamedTuple

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
EPOCH_MS = 1_767_571_200_000  # 2026-01-05T00:00Z, a Monday
WINDOWS = (("1h", HOUR_MS), ("24h", DAY_MS), ("7d", 7 * DAY_MS))


class ObservedStream(NamedTuple):
    """What the engine's snapshot says about one stream at T (the fields the detectors read)."""

    account: str
    platform: str
    audience_followers: int
    active_followers: tuple[int, ...]
    engaged_actors: tuple[int, ...]
    new_followers: int
    new_followers_activated: int
    engaging_events: int
    follower_engaging_events: int
    follows: int
    unfollows: int
    last_ts: int | None
    campaign_engaged_actors: dict = {}
    """Tagged campaigns with engaged actors in the shortest window: {tag: (actors,)} (read-only, never mutated)."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """One labelled stream: what was injected, and when (epoch ms)."""

    name: str
    kind: str
    seed: int
    base_rate: float
    """Weekly mean follower engaging events per hour before any effect."""
    days: int = 14
    decay_size: float = 0.0
    decay_onset_ms: int | None = None
    decay_ramp_ms: int = 0
    """0 for a sudden decay; the length of a linear onset otherwise."""
    decay_end_ms: int | None = None
    outages: tuple[tuple[int, int], ...] = ()
    bought_at_ms: int | None = None
    bought_fraction: float = 0.0
    bought_ms: int = HOUR_MS
    onboarding_onset_ms: int | None = None
    start_ms: int = EPOCH_MS
    campaigns: bool = False
    """Tagged campaigns like the simulator's: each hour without one starts one with probability 1/36, lasting
    6–30 h and lifting every engagement 1.2–1.6×; the snapshot flags it until 1 h after its end."""

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.days * DAY_MS


@dataclass(frozen=True, slots=True)
class _Shape:
    amplitude: float
    peak_hour: float
    weekend: float
    day_noise: tuple[float, ...]
    bursts: tuple[tuple[int, int, float], ...]
    pool: int
    audience: int
    follow_per_h: float
    activation: float


def _shape(s: Scenario, rng: random.Random) -> _Shape:
    pool = max(15, int(s.base_rate * rng.uniform(6, 14)))
    audience = max(120, int(pool * rng.uniform(5, 30)))
    bursts = []
    if rng.random() < 0.5:
        t = s.start_ms + int(rng.uniform(1, s.days - 1) * DAY_MS)
        bursts.append((t, t + int(rng.uniform(1, 3) * HOUR_MS), rng.uniform(2, 4)))
    return _Shape(
        amplitude=rng.uniform(0.3, 0.7),
        peak_hour=rng.uniform(0, 24),
        weekend=rng.uniform(0.6, 1.0),
        day_noise=tuple(math.exp(rng.gauss(0, 0.07)) for _ in range(s.days + 1)),
        bursts=tuple(bursts),
        pool=pool,
        audience=audience,
        follow_per_h=max(0.3, audience * rng.uniform(0.001, 0.004) / 24),
        activation=rng.uniform(0.2, 0.4),
    )


def campaign_schedule(s: Scenario) -> tuple[tuple[int, int, float], ...]:
    """(start, end, lift) of the scenario's campaigns, deterministic for its seed; none unless `s.campaigns`."""
    if not s.campaigns:
        return ()
    rng = random.Random(f"campaigns:{s.seed}")
    out, t = [], s.start_ms
    while t < s.end_ms:
        if rng.random() < 1 / 36:
            length = rng.randrange(6, 31) * HOUR_MS
            out.append((t, t + length, rng.uniform(1.2, 1.6)))
            t += length
        else:
            t += HOUR_MS
    return tuple(out)


def true_rate(s: Scenario, shape: _Shape, t: int, effects: bool = True) -> float:
    """Follower engaging events per hour at t (the truth the detectors try to learn)."""
    hour = (t % DAY_MS) / HOUR_MS
    day = (t - s.start_ms) // DAY_MS
    dow = (t // DAY_MS + 3) % 7
    r = s.base_rate * (1 + shape.amplitude * math.cos(2 * math.pi * (hour - shape.peak_hour) / 24))
    r *= shape.weekend if dow >= 5 else 1.0
    r *= shape.day_noise[min(day, len(shape.day_noise) - 1)]
    if not effects:
        return r
    for t0, t1, k in shape.bursts:
        if t0 <= t < t1:
            r *= k
    return r * decay_factor(s, t)


def decay_factor(s: Scenario, t: int) -> float:
    if s.decay_onset_ms is None or t < s.decay_onset_ms:
        return 1.0
    if s.decay_end_ms is not None and t >= s.decay_end_ms:
        return 1.0
    if s.decay_ramp_ms and t < s.decay_onset_ms + s.decay_ramp_ms:
        return 1.0 - s.decay_size * (t - s.decay_onset_ms) / s.decay_ramp_ms
    return 1.0 - s.decay_size


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (inversion below 30, normal approximation above)."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, int(rng.gauss(lam, math.sqrt(lam)) + 0.5))
    u = rng.random()
    k, p = 0, math.exp(-lam)
    c = p
    while u > c and k < 200:
        k += 1
        p *= lam / k
        c += p
    return k


def scenario_shape(s: Scenario) -> _Shape:
    return _shape(s, random.Random(s.seed * 7919 + 1))


def simulate(s: Scenario, tick_ms: int = 300_000) -> Iterator[tuple[int, ObservedStream]]:
    """Yield (T, observation) at every tick of the scenario, deterministic for its seed."""
    shape = scenario_shape(s)
    rng = random.Random(s.seed)
    win_ticks = [max(1, length // tick_ms) for _, length in WINDOWS]
    cum_fe: list[int] = [0]  # cumulative follower engaging events per tick, for the windows
    fe = eng = fol = unf = 0
    audience = shape.audience
    last_ts: int | None = None
    cohort: list[tuple[int, bool]] = []  # (follow time, activated) in follow order
    activated_flags: list[bool] = []
    lo = 0
    activated = 0
    pending: list[tuple[int, int]] = []  # heap of (activation time, cohort index)
    bought_left = int(s.bought_fraction * shape.audience) if s.bought_at_ms is not None else 0
    bought_per_tick = bought_left * tick_ms / s.bought_ms if bought_left else 0.0
    dt_h = tick_ms / HOUR_MS
    campaigns = campaign_schedule(s)
    T = s.start_ms
    while T < s.end_ms:
        T += tick_ms
        mid = T - tick_ms // 2
        out = any(a <= mid < b for a, b in s.outages)
        if out:
            n_fe = n_other = n_fol = n_unf = 0
            n_bought = 0
        else:
            lam = true_rate(s, shape, mid) * dt_h
            for c0, c1, lift in campaigns:
                if c0 <= mid < c1:
                    lam *= lift
            n_fe = poisson(rng, lam)
            n_other = poisson(rng, 0.3 * lam)
            n_fol = poisson(rng, shape.follow_per_h * dt_h)
            n_unf = poisson(rng, 0.6 * shape.follow_per_h * dt_h)
            n_bought = 0
            if bought_left and s.bought_at_ms is not None and T > s.bought_at_ms:
                n_bought = min(bought_left, poisson(rng, bought_per_tick))
                bought_left -= n_bought
        activation = shape.activation
        if s.onboarding_onset_ms is not None and T >= s.onboarding_onset_ms:
            activation /= 5
        for _ in range(n_fol):
            idx = len(activated_flags)
            activated_flags.append(False)
            cohort.append((T, False))
            if rng.random() < activation:
                heapq.heappush(pending, (T + int(rng.expovariate(1 / 12) * HOUR_MS), idx))
        for _ in range(n_bought):
            activated_flags.append(False)
            cohort.append((T, False))
        while pending and pending[0][0] <= T:
            _, idx = heapq.heappop(pending)
            if idx >= lo:
                activated_flags[idx] = True
                activated += 1
        while lo < len(cohort) and cohort[lo][0] <= T - 7 * DAY_MS:
            if activated_flags[lo]:
                activated -= 1
            lo += 1
        fe += n_fe
        eng += n_fe + n_other
        fol += n_fol + n_bought
        unf += n_unf
        audience = max(0, audience + n_fol + n_bought - n_unf)
        if n_fe + n_other + n_fol + n_bought + n_unf:
            last_ts = T - rng.randrange(tick_ms)
        cum_fe.append(fe)
        i = len(cum_fe) - 1
        active = []
        engaged = []
        for w in win_ticks:
            m = cum_fe[i] - cum_fe[max(0, i - w)]
            k = shape.pool
            a = int(round(k * (1 - math.exp(-m / k))))
            active.append(a)
            engaged.append(int(a * 1.3))
        yield T, ObservedStream(
            account=s.name,
            platform="sim",
            audience_followers=audience,
            active_followers=tuple(active),
            engaged_actors=tuple(engaged),
            new_followers=len(cohort) - lo,
            new_followers_activated=activated,
            engaging_events=eng,
            follower_engaging_events=fe,
            follows=fol,
            unfollows=unf,
            last_ts=last_ts,
            campaign_engaged_actors={f"c{c0}": (1,) for c0, c1, _ in campaigns if c0 < T <= c1 + HOUR_MS},
        )


def scenario_grid(
    per_cell: int = 10,
    seed: int = 1,
    rate_range: tuple[float, float] = (4.0, 100.0),
    sizes: tuple[float, ...] = (0.15, 0.3, 0.45, 0.6),
    days: int = 14,
    campaigns: bool = False,
) -> list[Scenario]:
    """The labelled grid: `per_cell` streams per (kind, size) cell, rates log-uniform over `rate_range`."""
    rng = random.Random(seed)
    out: list[Scenario] = []
    lo, hi = math.log(rate_range[0]), math.log(rate_range[1])

    def base(kind: str, i: int, **kw) -> Scenario:
        sd = rng.randrange(1 << 30)
        start = EPOCH_MS + rng.randrange(24) * HOUR_MS
        return Scenario(
            name=f"{kind}-{i:03d}", kind=kind, seed=sd, base_rate=math.exp(rng.uniform(lo, hi)), days=days,
            start_ms=start, campaigns=campaigns, **kw,
        )

    def later(start: int, d0: float, d1: float) -> int:
        return start + int(rng.uniform(d0, d1) * DAY_MS)

    n = 0
    for _ in range(per_cell * 2):
        out.append(base("stable", n)); n += 1
    for _ in range(per_cell * 2):
        s = base("outage", n); n += 1
        o1 = later(s.start_ms, 2, days / 2 - 0.5)
        o2 = later(s.start_ms, days / 2 + 1, days - 0.5)
        out.append(_replace(s, outages=((o1, o1 + 3 * HOUR_MS), (o2, o2 + 3 * HOUR_MS))))
    for kind, ramp in (("sudden", 0), ("gradual", 6 * HOUR_MS)):
        for size in sizes:
            for _ in range(per_cell * (3 if kind == "sudden" else 2)):
                s = base(kind, n); n += 1
                onset = later(s.start_ms, days / 2 + 1, days - 2.5)
                hours = None if rng.random() < 0.5 else rng.uniform(12, 72)
                end = None if hours is None else min(s.end_ms, onset + ramp + int(hours * HOUR_MS))
                out.append(_replace(s, decay_size=size, decay_onset_ms=onset, decay_ramp_ms=ramp, decay_end_ms=end))
    for _ in range(per_cell * 2):
        s = base("bought", n); n += 1
        out.append(
            _replace(
                s, bought_at_ms=later(s.start_ms, days / 2 + 1, days - 2), bought_fraction=rng.uniform(0.05, 0.3),
                bought_ms=int(rng.uniform(0.5, 3) * HOUR_MS),
            )
        )
    for _ in range(per_cell):
        s = base("onboarding", n); n += 1
        out.append(_replace(s, onboarding_onset_ms=later(s.start_ms, days / 2 + 1, days / 2 + 2)))
    return out


def _replace(s: Scenario, **kw) -> Scenario:
    from dataclasses import replace

    return replace(s, **kw)
