"""Specifications of the decay detector against the engine's real behaviour: campaigns and warm-up."""

from __future__ import annotations

import random

from decay_streams import TICK, Snap
from processors.decay import DECAY, DecayConfig, DecayMonitor
from streams.backtest_scenarios import DAY_MS, EPOCH_MS, HOUR_MS, poisson


def run(rate_at, campaign_at, days: int, seed: int = 3) -> list:
    rng = random.Random(seed)
    m, s, alerts = DecayMonitor(DecayConfig()), Snap(), []
    T = EPOCH_MS
    while T < EPOCH_MS + days * DAY_MS:
        T += TICK
        n = poisson(rng, rate_at(T) * TICK / HOUR_MS)
        s.follower_engaging_events += n
        s.engaging_events += n + poisson(rng, 0.3 * n)
        s.campaign_engaged_actors = {"acme-launch-1": (12, 40, 40)} if campaign_at(T) else {}
        alerts += [(T, a) for a in m.observe(T, (s,))]
    return alerts


def campaigns(T: int) -> bool:
    """Campaigns of 20 h every 50 h: 40 % of the time."""
    return (T - EPOCH_MS) % (50 * HOUR_MS) < 20 * HOUR_MS


class TestCampaigns:
    def test_campaign_lift_is_not_learned_as_normal(self):
        """A stream lifted 1.5× during campaigns 40 % of the time raises no decay between campaigns."""
        alerts = run(lambda T: 60.0 * (1.5 if campaigns(T) else 1.0), campaigns, days=14)
        assert [a for _, a in alerts if a.alertname == DECAY] == []

    def test_decay_between_campaigns_is_seen(self):
        """A 40 % drop from day 9 is detected on the same stream, within hours of the first campaign-free time."""
        onset = EPOCH_MS + 9 * DAY_MS
        alerts = run(lambda T: 60.0 * (1.5 if campaigns(T) else 1.0) * (0.6 if T >= onset else 1.0), campaigns, 12)
        fired = [T for T, a in alerts if a.alertname == DECAY and a.status == "firing"]
        assert fired and all(T > onset for T in fired)
        free = next(T for T in range(onset, onset + 3 * DAY_MS, TICK) if not campaigns(T) and not campaigns(T - HOUR_MS))
        assert fired[0] < free + 6 * HOUR_MS


class TestWarmup:
    def test_no_evidence_is_banked_before_monitoring(self):
        """Evidence from the young baseline is not banked: a stream 25 % quieter since day 5 does not page the moment
        its week of warm-up ends (it may page hours later, on evidence gathered once monitored)."""
        alerts = run(lambda T: 60.0 * (0.75 if T >= EPOCH_MS + 5 * DAY_MS else 1.0), lambda T: False, days=8)
        warm = EPOCH_MS + 7 * DAY_MS
        assert not [T for T, a in alerts if a.alertname == DECAY and T < warm + 3 * HOUR_MS]


class TestCampaignLift:
    def test_decay_during_a_campaign_is_seen_before_it_ends(self):
        """A 50 % drop 4 h into a 30 h campaign (lift 1.4) is detected against baseline × the campaign's own lift,
        well before the campaign ends."""
        start = EPOCH_MS + 9 * DAY_MS
        onset = start + 4 * HOUR_MS

        def on(T):
            return start <= T < start + 30 * HOUR_MS

        alerts = run(lambda T: 60.0 * (1.4 if on(T) else 1.0) * (0.5 if T >= onset else 1.0), on, days=11)
        fired = [T for T, a in alerts if a.alertname == DECAY and a.status == "firing"]
        assert fired and fired[0] > onset
        assert fired[0] < start + 16 * HOUR_MS

    def test_campaign_end_is_not_a_decay(self):
        """The hour after a campaign (the flag still up, the rate organic again) is not read as a drop from the lift:
        many short strong campaigns raise no decay."""

        def on(T):
            return (T - EPOCH_MS) % (20 * HOUR_MS) < 8 * HOUR_MS

        for seed in (1, 2):
            alerts = run(lambda T: 30.0 * (1.6 if on(T) else 1.0), lambda T: on(T) or on(T - HOUR_MS), 14, seed)
            assert [a for _, a in alerts if a.alertname == DECAY] == []
