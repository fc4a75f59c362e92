"""Specifications of the detectors in `processors.decay` and the seasonal baseline they stand on."""

from __future__ import annotations

import dataclasses
import math
import random
from datetime import datetime, timedelta, timezone

import pytest

from processors.alert_event import AlertEvent
from processors.decay import CRITICAL, DECAY, DEFAULT_RULES, HOLLOW, SILENT, DecayConfig, DecayMonitor, _Cusum
from processors.seasonal_baseline import HOUR_MS, BaselineConfig, SeasonalBaseline, day_of_week
from streams.backtest_scenarios import DAY_MS, EPOCH_MS, Scenario, simulate

TICK = 300_000


def run(s: Scenario, config: DecayConfig = DecayConfig()) -> list[tuple[int, AlertEvent]]:
    monitor = DecayMonitor(config)
    return [(T, a) for T, obs in simulate(s, TICK) for a in monitor.observe(T, (obs,))]


def named(alerts, name: str, status: str = "firing") -> list[tuple[int, AlertEvent]]:
    return [(T, a) for T, a in alerts if a.alertname == name and a.status == status]


def scenario(**kw) -> Scenario:
    base = dict(name="acme", kind="stable", seed=11, base_rate=40.0, days=10, start_ms=EPOCH_MS)
    base.update(kw)
    return Scenario(**base)


class TestSeasonalBaseline:
    def test_learns_daily_and_weekly_shape(self):
        """After two weeks of Poisson hours the expected rate is within 4 % of the truth on average in week 3."""
        rng = random.Random(4)
        b = SeasonalBaseline()

        def truth(h: int) -> float:
            return 60 * (1 + 0.5 * math.sin(2 * math.pi * (h % 24) / 24)) * (0.7 if day_of_week(h) >= 5 else 1.0)

        h0 = EPOCH_MS // HOUR_MS
        for h in range(h0, h0 + 14 * 24):
            b.observe_hour(h, round(rng.gauss(truth(h), math.sqrt(truth(h)))))
        errors = [abs(b.rate(h) / truth(h) - 1) for h in range(h0 + 14 * 24, h0 + 21 * 24)]
        assert sum(errors) / len(errors) < 0.04 and max(errors) < 0.15

    def test_outlier_hour_is_clipped(self):
        """A tenfold hour moves its hour of the baseline by less than 10 %."""
        b = SeasonalBaseline()
        h0 = EPOCH_MS // HOUR_MS
        for h in range(h0, h0 + 7 * 24):
            b.observe_hour(h, 50)
        before = b.rate(h0 + 7 * 24)
        b.observe_hour(h0 + 7 * 24, 500)
        assert b.rate(h0 + 7 * 24) < before * 1.10

    def test_an_hour_far_below_is_clipped_too(self):
        """Once warm, an hour is learned within ± 3 sigma of what was expected: a dead hour as much as a viral one."""
        b = SeasonalBaseline()
        h0 = EPOCH_MS // HOUR_MS
        for h in range(h0, h0 + 7 * 24):
            b.observe_hour(h, 50)
        for h, total, side in ((h0 + 7 * 24, 0, -1), (h0 + 7 * 24 + 1, 500, 1)):
            mean = b.rate(h)
            assert b.observe_hour(h, total) == pytest.approx(mean + side * 3 * b.sigma(mean))

    def test_a_young_baseline_refits_every_hour_whatever_its_refit_period(self):
        b = SeasonalBaseline(BaselineConfig(refit_every_h=24.0))
        b.observe_hour(EPOCH_MS // HOUR_MS, 12)
        assert b.level() > 0

    def test_days_of_the_week_start_on_monday_utc(self):
        monday = datetime(2026, 11, 23, tzinfo=timezone.utc)
        hours = [int((monday + timedelta(hours=h)).timestamp()) // 3600 for h in (0, 23, 24, 6 * 24 + 23, 7 * 24)]
        assert [day_of_week(h) for h in hours] == [0, 0, 1, 6, 0]

    def test_expected_integrates_partial_hours(self):
        """Expected over 90 minutes of a flat 10/h baseline is 15."""
        b = SeasonalBaseline()
        h0 = EPOCH_MS // HOUR_MS
        for h in range(h0, h0 + 48):
            b.observe_hour(h, 10)
        assert b.expected(EPOCH_MS + 30 * 60_000, EPOCH_MS + 120 * 60_000) == pytest.approx(15, rel=0.01)


def default_rule(window: str):
    return next(r for r in DEFAULT_RULES if r.window == window)


def evidence(window: str, rate: float, shortfall: float, hours: int, tolerant: bool = True) -> float:
    """Nats the default rule of `window` banks from `hours` of exact counts `shortfall` below a flat baseline."""
    rule = default_rule(window)
    cusum = _Cusum(rule.drops, math.inf, rule.tolerance if tolerant else 0.0, rule.tolerance_rate)
    for _ in range(hours):
        cusum.update(rate * (1 - shortfall), rate, 1.0)
    return cusum.statistic()[0]


class TestDefaultRules:
    @pytest.mark.parametrize("window", ["1h", "24h"])
    def test_a_day_slightly_below_baseline_is_no_evidence_on_a_large_stream(self, window):
        """A whole day 12 % under the baseline of an 80/h stream (day-to-day over-dispersion) banks under a nat."""
        assert evidence(window, 80, 0.12, 24) < 1.0

    @pytest.mark.parametrize("window", ["1h", "24h"])
    def test_a_real_drop_on_a_large_stream_crosses_the_threshold_within_hours(self, window):
        """A 30 % drop on an 80/h stream reaches each rule's threshold within 6 hours."""
        assert evidence(window, 80, 0.30, 6) >= default_rule(window).threshold

    @pytest.mark.parametrize("window", ["1h", "24h"])
    def test_the_tolerance_fades_on_small_streams(self, window):
        """On a 3/h stream, where Poisson noise dwarfs a misfit, the tolerance costs under 5 % of the evidence."""
        assert evidence(window, 3, 0.30, 48) >= 0.95 * evidence(window, 3, 0.30, 48, tolerant=False) > 0


class TestCusum:
    def test_a_reset_starts_a_new_run(self):
        """The drop is estimated over the run since the last reset only."""
        c = _Cusum((0.3,), cap=11.0)
        c.update(0, 10.0, 1.0)
        c.reset()
        assert c.statistic() == (0.0, None)
        c.update(5, 10.0, 1.0)
        assert c.statistic()[1] == pytest.approx(0.5)

    def test_the_leading_design_estimates_the_drop(self):
        """The 60 % design restarted its run when the 30 % one did not; it leads, so its run gives the drop."""
        c = _Cusum((0.3, 0.6), cap=11.0)
        c.update(5, 10.0, 1.0)
        c.update(9, 10.0, 1.0)  # the 0.6 design falls below zero and restarts; the 0.3 design carries on
        c.update(0, 10.0, 1.0)
        assert c.s[1] > c.s[0]
        assert c.statistic() == (pytest.approx(6.0), pytest.approx(1.0))

    def test_evidence_is_capped(self):
        c = _Cusum((0.3,), cap=11.0)
        for _ in range(10):
            c.update(0, 10.0, 1.0)
        assert c.statistic()[0] == 11.0


class TestDecayMonitor:
    def test_stable_stream_raises_nothing(self):
        """A stable seasonal stream over ten days raises no alert at all."""
        assert run(scenario()) == []

    def test_sudden_decay_fires_then_resolves(self):
        """A 50 % drop on day 8 fires a decay alert within hours and resolves after the recovery."""
        onset = EPOCH_MS + 8 * DAY_MS
        alerts = run(scenario(kind="sudden", decay_size=0.5, decay_onset_ms=onset, decay_end_ms=onset + DAY_MS))
        firing = named(alerts, DECAY)
        assert firing and onset < firing[0][0] < onset + 6 * HOUR_MS
        resolved = named(alerts, DECAY, "resolved")
        assert resolved and resolved[-1][0] > onset + DAY_MS

    def test_decay_alert_has_alertmanager_shape(self):
        """A decay alert carries the five labels, quotes ratio and baseline, and is critical for a 60 % drop."""
        onset = EPOCH_MS + 8 * DAY_MS
        alerts = run(scenario(kind="sudden", decay_size=0.6, decay_onset_ms=onset))
        a = named(alerts, DECAY)[0][1]
        labels = dict(a.labels)
        assert set(labels) == {"alertname", "account", "platform", "window", "severity"}
        assert "Decay" in labels["alertname"] and labels["window"] in ("1h", "24h")
        assert "baseline" in dict(a.annotations)["description"]
        body = a.to_alertmanager()
        assert body["startsAt"].endswith("Z") and "endsAt" not in body
        assert any(x.severity == "critical" for _, x in named(alerts, DECAY))

    def test_tiny_audience_pages_nobody(self):
        """A stream under the minimum rate never enters decay, however much it drops."""
        onset = EPOCH_MS + 8 * DAY_MS
        s = scenario(kind="sudden", base_rate=0.5, decay_size=0.9, decay_onset_ms=onset)
        assert named(run(s), DECAY) == []

    def test_outage_is_silence_not_decay(self):
        """Three hours without any event are reported as silence and raise no decay alert."""
        t = EPOCH_MS + 8 * DAY_MS + 10 * HOUR_MS
        alerts = run(scenario(kind="outage", outages=((t, t + 3 * HOUR_MS),)))
        assert [a.alertname for _, a in alerts if a.status == "firing"] == [SILENT]
        (T, _), = named(alerts, SILENT)
        assert t < T < t + HOUR_MS

    def test_bought_followers_are_hollow_growth(self):
        """A 20 % follower spike that never engages is hollow growth, not decay."""
        t = EPOCH_MS + 8 * DAY_MS
        alerts = run(scenario(kind="bought", bought_at_ms=t, bought_fraction=0.2, bought_ms=HOUR_MS))
        assert [a.alertname for _, a in alerts if a.status == "firing"] == [HOLLOW]

    def test_hollow_growth_names_the_window_it_reads(self):
        """Without the configured hollow window the test reads the engine's longest one, and says so."""
        assert DecayConfig(windows=("1h", "6h")).hollow_window == "6h"
        t = EPOCH_MS + 8 * DAY_MS
        config = DecayConfig(hollow_window="30d")
        alerts = run(scenario(kind="bought", bought_at_ms=t, bought_fraction=0.2, bought_ms=HOUR_MS), config)
        assert [a.label("window") for _, a in named(alerts, HOLLOW)] == ["7d"]
        assert "active followers (7d)" in dict(named(alerts, HOLLOW)[0][1].annotations)["description"]

    def test_state_reports_windows_and_counters(self):
        """The state holds the per-window decay state, the ratio baseline and the alert counter."""
        onset = EPOCH_MS + 8 * DAY_MS
        monitor = DecayMonitor()
        s = scenario(kind="sudden", decay_size=0.6, decay_onset_ms=onset)
        for T, obs in simulate(s, TICK):
            monitor.observe(T, (obs,))
        (health,) = monitor.state().streams
        states = {w.window: w.state for w in health.windows}
        assert states["1h"] == CRITICAL and states["7d"] is None
        assert all(w.ratio_baseline is not None for w in health.windows)
        assert ("EngagementDecay", "critical", 1) in [(n, sev, min(c, 1)) for n, sev, c in monitor.state().alerts_total]

    def test_checkpoint_round_trip(self):
        """A monitor restored from its bytes emits the same alerts as the original."""
        onset = EPOCH_MS + 8 * DAY_MS
        s = scenario(kind="sudden", decay_size=0.5, decay_onset_ms=onset)
        obs = list(simulate(s, TICK))
        a, cut = DecayMonitor(), 8 * DAY_MS // TICK - 10
        for T, o in obs[:cut]:
            a.observe(T, (o,))
        b = DecayMonitor.from_bytes(DecayConfig(), a.to_bytes())
        tail_a = [x for T, o in obs[cut:] for x in a.observe(T, (o,))]
        tail_b = [x for T, o in obs[cut:] for x in b.observe(T, (o,))]
        assert tail_a == tail_b and tail_a

    def test_restored_streams_take_the_restoring_rules(self):
        """After an upgrade that changes a rule, restored streams test with the new rule and keep their evidence."""
        onset = EPOCH_MS + 8 * DAY_MS
        obs = list(simulate(scenario(kind="sudden", decay_size=0.5, decay_onset_ms=onset), TICK))
        before = DecayMonitor()
        for T, o in obs:
            if T > onset + HOUR_MS:  # an hour into the decay
                break
            before.observe(T, (o,))
        stricter = tuple(dataclasses.replace(r, threshold=r.threshold + 1) for r in DEFAULT_RULES)
        after = DecayMonitor.from_bytes(DecayConfig(rules=stricter), before.to_bytes())
        (was,), (now,) = before._streams.values(), after._streams.values()
        assert [w.rule for w in now.windows] == list(stricter)
        assert [w.cusum.statistic() for w in now.windows] == [w.cusum.statistic() for w in was.windows]
        assert any(w.cusum.statistic()[0] > 0 for w in now.windows)
