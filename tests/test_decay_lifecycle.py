"""Specifications of the detectors' life cycles on exact streams: when each alert enters, escalates, resolves and
stays quiet, and what the baselines learn meanwhile."""

from __future__ import annotations

from collections import Counter

import pytest

from decay_streams import TICK, TICKS_PER_HOUR, ExactStream, Snap
from processors.decay import (
    CRITICAL, DECAY, HOLLOW, OK, ONBOARDING, SILENT, WARNING, DecayConfig, DecayMonitor, _Transition,
)

MIN = 60_000
HOUR = 60 * MIN
WEEK_AND_A_DAY = 8 * 24
CFG = DecayConfig()


def fired(alerts, name: str = DECAY) -> list[tuple[int, str, str | None]]:
    return [(T, a.severity, a.label("window")) for T, a in alerts if a.alertname == name and a.status == "firing"]


def resolved(alerts, name: str = DECAY) -> list[tuple[int, int, int]]:
    return [(T, a.starts_at_ms, a.ends_at_ms) for T, a in alerts if a.alertname == name and a.status == "resolved"]


def warmed(snap: Snap | None = None, **rates) -> ExactStream:
    """A stream past its week of warm-up at steady rates (60 follower engagements an hour by default)."""
    s = ExactStream(snap=snap)
    s.run(WEEK_AND_A_DAY, **rates)
    return s


def run_watching(s: ExactStream, hours: float, window: str, **rates) -> tuple[list, list[tuple[int, float, int]]]:
    """Alerts, and (T, evidence, state) of one window at every tick."""
    alerts, seen = [], []
    for _ in range(round(hours * TICKS_PER_HOUR)):
        alerts += s.run(1 / TICKS_PER_HOUR, **rates)
        w = s.window(window)
        seen.append((s.T, w.evidence, w.state))
    return alerts, seen


class TestTransition:
    """The state machine every detector shares."""

    def test_a_worse_state_must_hold_its_minimum_duration(self):
        m = _Transition()
        assert m.step(0, WARNING, CFG) is None
        assert m.step(15 * MIN - 1, WARNING, CFG) is None
        assert m.step(15 * MIN, WARNING, CFG) == (OK, WARNING, 0)
        assert (m.state, m.since) == (WARNING, 15 * MIN)

    def test_a_changed_wish_restarts_the_hold(self):
        m = _Transition()
        m.step(0, WARNING, CFG)
        m.step(5 * MIN, CRITICAL, CFG)
        assert m.step(15 * MIN, CRITICAL, CFG) is None
        assert m.step(20 * MIN, CRITICAL, CFG) == (OK, CRITICAL, 0)

    def test_a_wish_withdrawn_even_once_starts_over(self):
        m = _Transition()
        m.step(0, WARNING, CFG)
        m.step(10 * MIN, OK, CFG)
        assert m.step(15 * MIN, WARNING, CFG) is None
        assert m.step(30 * MIN, WARNING, CFG) == (OK, WARNING, 0)

    def test_escalation_holds_like_entry(self):
        m = _Transition()
        m.step(0, WARNING, CFG, immediate=True)
        assert m.step(HOUR, CRITICAL, CFG) is None
        assert m.step(HOUR + 15 * MIN, CRITICAL, CFG) == (WARNING, CRITICAL, 0)

    def test_a_better_state_must_hold_longer(self):
        m = _Transition()
        m.step(0, WARNING, CFG, immediate=True)
        assert m.step(HOUR, OK, CFG) is None
        assert m.step(HOUR + 29 * MIN, OK, CFG) is None
        assert m.step(HOUR + 30 * MIN, OK, CFG) == (WARNING, OK, 0)
        assert m.last_resolved == HOUR + 30 * MIN

    def test_de_escalation_holds_like_resolution(self):
        m = _Transition()
        m.step(0, CRITICAL, CFG, immediate=True)
        assert m.step(HOUR, WARNING, CFG) is None
        assert m.step(HOUR + 30 * MIN, WARNING, CFG) == (CRITICAL, WARNING, 0)

    def test_after_a_resolution_the_same_alert_waits_out_the_cooldown(self):
        m = _Transition()
        m.step(0, WARNING, CFG, immediate=True)
        m.step(HOUR, OK, CFG, immediate=True)
        m.step(HOUR + 5 * MIN, WARNING, CFG)
        assert m.step(HOUR + 20 * MIN, WARNING, CFG) is None
        assert m.step(3 * HOUR - 1, WARNING, CFG) is None
        assert m.step(3 * HOUR, WARNING, CFG) == (OK, WARNING, 0)

    @pytest.mark.parametrize("immediate, cooldown, at", [
        (True, True, 3 * HOUR),  # no hold, but the cooldown
        (False, False, HOUR + 15 * MIN),  # the hold, no cooldown
        (True, False, HOUR),  # neither
    ])
    def test_immediate_skips_the_hold_and_cooldown_can_be_waived(self, immediate, cooldown, at):
        m = _Transition()
        m.step(0, WARNING, CFG, immediate=True)
        m.step(HOUR, OK, CFG, immediate=True)
        steps = [m.step(t, WARNING, CFG, immediate, cooldown) for t in range(HOUR, 4 * HOUR, 5 * MIN)]
        first = next(HOUR + i * 5 * MIN for i, change in enumerate(steps) if change)
        assert first == at


class TestDecayLifecycle:
    def test_warning_enters_once_the_evidence_held_the_threshold_for_15_minutes(self):
        s = warmed()
        alerts, seen = run_watching(s, 4, "1h", engagements=40)
        crossed = next(T for T, ev, _ in seen if ev >= 7.0)
        assert fired(alerts) == [(crossed + 15 * MIN, "warning", "1h")]

    def test_a_drop_beyond_the_critical_drop_enters_critical_directly(self):
        """60 % below: the 60 % design crosses 7 nats in 35 minutes (the 30 % one would take 50)."""
        s = warmed()
        onset = s.T
        alerts, seen = run_watching(s, 1.5, "1h", engagements=24)
        crossed = next(T for T, ev, _ in seen if ev >= 7.0)
        assert crossed == onset + 35 * MIN
        assert fired(alerts) == [(crossed + 15 * MIN, "critical", "1h")]
        assert s.window("1h").drop == pytest.approx(0.6)

    @pytest.mark.parametrize("rate, severity", [(38, "warning"), (35, "critical")])
    def test_severity_follows_the_estimated_drop(self, rate, severity):
        """Critical from a 40 % drop: 38/h of 60 is 37 % below, 35/h is 42 % below."""
        s = warmed()
        assert {sev for _, sev, w in fired(s.run(4, engagements=rate)) if w == "1h"} == {severity}

    def test_recovery_resolves_once_below_the_exit_threshold_for_30_minutes(self):
        s = warmed()
        (start, _, _), = fired(s.run(1.5, engagements=24))
        alerts, seen = run_watching(s, 6, "1h")
        below = next(T for T, ev, _ in seen if ev <= 2.5)
        assert resolved(alerts) == [(below + 30 * MIN, start, below + 30 * MIN)]

    def test_the_evidence_is_capped_so_that_recovery_takes_bounded_time(self):
        s = warmed()
        s.run(24, engagements=24)
        assert s.window("1h").evidence == pytest.approx(7.0 + CFG.cusum_headroom)

    def test_a_stream_that_falls_below_the_guards_resolves_at_once(self):
        s = warmed()
        s.run(1.5, engagements=24)
        alerts = s.run(1 / 12, engagements=24, audience=99)
        assert [(T, a.severity) for T, a in alerts if a.status == "resolved" and a.label("window") == "1h"] == [
            (s.T, "critical")]
        assert s.window("1h").state == OK

    def test_one_severity_at_a_time(self):
        """Escalation resolves the warning and fires the critical in the same evaluation."""
        s = warmed()
        alerts = s.run(4, engagements=40) + s.run(3, engagements=12)
        one_hour = [(T, a.status, a.severity) for T, a in alerts if a.alertname == DECAY and a.label("window") == "1h"]
        (t_warn, *warning), (t_esc, *resolution), (t_crit, *critical) = one_hour
        assert warning == ["firing", "warning"]
        assert resolution == ["resolved", "warning"] and critical == ["firing", "critical"]
        assert t_warn < t_esc == t_crit
        escalated = next(a for T, a in alerts if T == t_crit and a.status == "firing" and a.label("window") == "1h")
        assert escalated.starts_at_ms == t_crit  # the critical alert starts now, not when the warning did

    def test_a_monitor_restored_mid_alert_carries_on_as_if_uninterrupted(self):
        s, twin = warmed(), warmed()
        s.run(2, engagements=24)
        twin.run(2, engagements=24)
        twin.monitor = DecayMonitor.from_bytes(CFG, twin.monitor.to_bytes())
        assert twin.run(12) == s.run(12)
        assert twin.monitor.state() == s.monitor.state()

    def test_alerts_total_counts_firings_by_name_and_severity(self):
        """Every firing counts, an escalation's and a de-escalation's too; resolutions do not."""
        s = warmed()
        alerts = s.run(4, engagements=40) + s.run(3, engagements=12) + s.run(12)
        firings = Counter((a.alertname, a.severity) for _, a in alerts if a.status == "firing")
        assert firings[(DECAY, "warning")] >= 3 and firings[(DECAY, "critical")] >= 2  # both windows escalated
        assert {(n, sev): c for n, sev, c in s.monitor.state().alerts_total} == firings


class TestGuards:
    @pytest.mark.parametrize("snap, rates, hours, monitored", [
        (Snap(), {}, WEEK_AND_A_DAY, True),
        (Snap(audience_followers=99), {}, WEEK_AND_A_DAY, False),
        (Snap(audience_followers=100), {}, WEEK_AND_A_DAY, True),
        (Snap(), {"engagements": 0.9}, WEEK_AND_A_DAY, False),
        (Snap(), {"engagements": 1.1}, WEEK_AND_A_DAY, True),
        (Snap(), {}, 7 * 24 - 1, False),  # a week of warm-up
    ])
    def test_who_is_monitored(self, snap, rates, hours, monitored):
        s = ExactStream(snap=snap)
        s.run(hours, **rates)
        assert s.health.monitored is monitored

    def test_evidence_is_dropped_when_a_stream_falls_below_the_guards(self):
        s = warmed()
        s.run(1, engagements=40)
        assert 0 < s.window("1h").evidence < 7
        s.run(1 / 12, engagements=40, audience=99)
        assert [w.evidence for w in s.health.windows] == [0.0, 0.0, 0.0]

    def test_campaign_hours_are_not_learned_hours(self):
        """A stream in campaigns 19 h a day has observed its week of warm-up after 8 days, but learned under 48
        organic hours: not monitored until it has."""
        s = ExactStream()
        for _ in range(8):
            s.run(19, campaigns={"launch": (5, 20, 20)})
            s.run(5, campaigns={})
        assert not s.health.monitored
        s.run(12, campaigns={})
        assert s.health.monitored

    def test_an_unmonitored_stream_banks_no_evidence(self):
        s = warmed(Snap(audience_followers=99))
        s.run(6, engagements=12)
        assert [w.evidence for w in s.health.windows] == [0.0, 0.0, 0.0]


class TestSilence:
    @pytest.mark.parametrize("engagements, others, silent_after", [
        (150, 50, 15 * MIN),  # 15 events expected after 4.5 min: the 15-minute minimum decides
        (15, 5, 45 * MIN),  # 20 events an hour: 15 expected after 45 min
    ])
    def test_silence_needs_15_expected_events_and_15_minutes(self, engagements, others, silent_after):
        s = warmed(engagements=engagements, others=others)
        start = s.T
        alerts = s.silence(2)
        assert fired(alerts, SILENT) == [(start + silent_after, "warning", None)]

    def test_a_quieter_recent_rate_lengthens_the_wait(self):
        """After half a day at a third of its usual rate, the stream is expected to send fewer events."""
        s = warmed(engagements=15, others=5)
        s.run(12, engagements=5, others=5 / 3)
        start = s.T
        (T, _, _), = fired(s.silence(6), SILENT)
        assert T - start > 45 * MIN + TICK

    def test_silence_resolves_at_once_and_is_no_evidence_of_decay(self):
        s = warmed()
        alerts = s.silence(3)
        assert [w.evidence for w in s.health.windows] == [0.0, 0.0, 0.0]
        assert s.health.silent
        alerts += s.run(1 / 12)
        (start, _, _), = fired(alerts, SILENT)
        assert resolved(alerts, SILENT) == [(s.T, start, s.T)]
        assert [w.evidence for w in s.health.windows] == [0.0, 0.0, 0.0]  # the 15 min held back were discarded
        assert fired(alerts) == [] and not s.health.silent

    def test_a_gap_too_short_for_silence_counts_as_zeros(self):
        s = warmed(engagements=3, others=0.5)  # 3.5 events an hour: 15 would take 4.3 h
        s.silence(1)
        assert s.window("1h").evidence == 0.0  # held back
        s.run(1 / 12, engagements=3, others=0.5)
        assert s.window("1h").evidence > 0.0

    def test_a_gap_still_pending_after_6_hours_is_taken_as_zeros(self):
        s = warmed(engagements=1.5, others=0.5)  # 15 events would take 7.5 h
        s.silence(6 - 1 / 12)
        assert s.window("24h").evidence == 0.0
        s.silence(1 / 12)
        assert s.window("24h").evidence > 0.0 and not s.health.silent


def hollow_stream(follows: float = 10.0) -> ExactStream:
    """10 follows an hour, 30 % of the audience active over 24 h, new followers activating at 50 %."""
    return warmed(Snap(audience_followers=5_000, active_followers=(50, 1_500, 2_500), new_followers=200,
                       new_followers_activated=100), follows=follows)


class TestHollowGrowth:
    @pytest.mark.parametrize("audience, active, alerts", [
        (5_600, (50, 1_500, 2_500), 1),  # 600 more than 10 follows an hour explain, none engaging
        (5_600, (50, 1_560, 2_500), 1),  # a few engage (within 3 sqrt noise + 25 % of the baseline share)
        (5_600, (50, 1_640, 2_500), 1),  # 140 more: within noise (116) + 25 % x 0.3 x 540 excess
        (5_600, (50, 1_700, 2_500), 0),  # they engage like the audience does
        (5_170, (50, 1_500, 2_500), 0),  # below 3 x the 60 expected + noise (203), though 2 % of the audience
    ])
    def test_growth_that_does_not_engage_is_hollow(self, audience, active, alerts):
        s = hollow_stream()
        assert len(fired(s.run(1, follows=10, audience=audience, active=active), HOLLOW)) == alerts

    @pytest.mark.parametrize("audience, alerts", [(5_095, 0), (5_110, 1)])
    def test_growth_must_reach_2_percent_of_the_audience(self, audience, alerts):
        s = hollow_stream(follows=0.5)
        assert len(fired(s.run(1, follows=0.5, audience=audience), HOLLOW)) == alerts

    def test_fires_after_the_hold_and_resolves_once_the_surge_leaves_the_span(self):
        s = hollow_stream()
        start = s.T
        alerts = s.run(8, follows=10, audience=5_600)
        (t_fire, _, window), = fired(alerts, HOLLOW)
        assert window == "24h"
        assert t_fire == start + TICK + 15 * MIN
        t_end = start + TICK + 6 * HOUR + 30 * MIN  # the surge leaves the 6 h span, then the 30 min hold
        assert resolved(alerts, HOLLOW) == [(t_end, t_fire, t_end)]

    def test_it_holds_until_growth_falls_below_the_exit_thresholds(self):
        """Firing, 150 over the 60 expected is still hollow (exit: 1.5 x expected + noise, 1 % of the audience);
        it would not have fired on it."""
        s = hollow_stream()
        s.run(1, follows=10, audience=5_600)
        assert s.health.hollow_growth
        s.run(2, follows=10, audience=5_150)
        assert s.health.hollow_growth
        s.run(1, follows=10, audience=5_050)
        assert not s.health.hollow_growth

    def test_a_silent_stream_is_not_judged(self):
        s = hollow_stream()
        s.silence(1)
        s.snap.audience_followers = 5_600
        assert fired(s.silence(2), HOLLOW) == []


def onboarding_stream() -> ExactStream:
    """New followers activate at 50 %."""
    return warmed(Snap(new_followers=200, new_followers_activated=100))


class TestOnboardingCollapse:
    @pytest.mark.parametrize("cohort, alerts", [
        ((200, 60), 1),  # 30 %: below 65 % of 50 %, z = 5.7
        ((200, 70), 0),  # 35 %: above 32.5 %
        ((20, 0), 0),  # fewer than 30 new followers
        ((30, 3), 1),  # 10 % of 30: z = 4.4
        ((30, 9), 0),  # 30 % of 30: z = 2.2
    ])
    def test_collapse_needs_a_large_significant_drop(self, cohort, alerts):
        s = onboarding_stream()
        assert len(fired(s.run(1, cohort=cohort), ONBOARDING)) == alerts

    def test_a_lasting_collapse_is_not_learned_as_normal(self):
        s = onboarding_stream()
        s.run(1, cohort=(200, 60))
        alerts = s.run(5 * 24, cohort=(200, 60))
        assert resolved(alerts, ONBOARDING) == [] and s.health.onboarding_collapse

    @pytest.mark.parametrize("activated, still_firing", [(78, True), (82, False)])
    def test_it_resolves_above_80_percent_of_the_learned_level(self, activated, still_firing):
        s = onboarding_stream()
        s.run(1, cohort=(200, 60))
        s.run(1, cohort=(200, activated))
        assert s.health.onboarding_collapse is still_firing

    def test_hollow_growth_inhibits_it(self):
        """Bought followers never activate: their collapse is hollow growth's, not onboarding's."""
        s = hollow_stream()
        alerts = s.run(1, follows=10, audience=5_600) + s.run(6, follows=10, cohort=(800, 100))
        assert fired(alerts, HOLLOW) and not fired(alerts, ONBOARDING)

    def test_a_young_stream_has_no_learned_level_to_fall_from(self):
        s = ExactStream(snap=Snap(new_followers=200, new_followers_activated=100))
        s.run(3 * 24)
        assert fired(s.run(2, cohort=(200, 20)), ONBOARDING) == []

    def test_hollow_growth_resolves_a_collapse_at_once(self):
        s = hollow_stream()
        s.run(1, follows=10, cohort=(200, 60))
        assert s.health.onboarding_collapse
        alerts = s.run(1, follows=10, audience=5_600)
        (t_hollow, _, _), = fired(alerts, HOLLOW)
        assert [T for T, _, _ in resolved(alerts, ONBOARDING)] == [t_hollow]

    def test_the_inhibition_lasts_a_cohort_window_from_the_end_of_hollow_growth(self):
        s = hollow_stream()
        alerts = s.run(8, follows=10, audience=5_600)
        (t_end, _, _), = resolved(alerts, HOLLOW)
        s.run((t_end + 7 * 24 * HOUR - s.T) / HOUR - 1, follows=10)
        assert fired(s.run(1, follows=10, cohort=(200, 60)), ONBOARDING) == []
        assert fired(s.run(1, follows=10), ONBOARDING)

    def test_bought_followers_do_not_lower_the_learned_activation(self):
        """A week of a cohort diluted by bought followers is not learned: once they have left it, a genuine
        collapse to 30 % is still a collapse against the 50 % learned before."""
        s = hollow_stream()
        s.run(1, follows=10, audience=5_600, cohort=(800, 100))
        s.run(7 * 24, follows=10)
        s.run(24, follows=10, cohort=(200, 100))
        assert fired(s.run(1, follows=10, cohort=(200, 60)), ONBOARDING)


class TestCampaignLift:
    CAMPAIGN = {"launch": (5, 20, 20)}

    def test_a_lifted_campaign_is_no_decay_and_its_end_neither(self):
        s = warmed()
        assert fired(s.run(12, engagements=90, campaigns=self.CAMPAIGN) + s.run(12, campaigns={})) == []

    def test_a_campaign_is_tested_against_its_own_lift(self):
        """Lifted 1.5x, then back to the organic rate while the campaign runs: a third below what it promised."""
        s = warmed()
        alerts = s.run(4, engagements=90, campaigns=self.CAMPAIGN) + s.run(8, engagements=60, campaigns=self.CAMPAIGN)
        assert {(sev, w) for _, sev, w in fired(alerts)} == {("warning", "1h"), ("warning", "24h")}

    def test_a_campaign_never_lowers_the_expected_rate(self):
        """Half the organic rate during a campaign is a decay: the lift is floored at 1."""
        s = warmed()
        assert fired(s.run(12, engagements=30, campaigns=self.CAMPAIGN))


class TestLearningDuringDecay:
    def test_a_slow_decay_on_a_small_stream_is_not_absorbed_by_the_baseline(self):
        """Hours on the way to the threshold are not learned: 5 engagements an hour dropping by 30 % page in
        about two days, not never."""
        s = warmed(engagements=5, others=1)
        start = s.T
        alerts = s.run(72, engagements=3.5, others=1)
        assert fired(alerts) and fired(alerts)[0][0] - start < 55 * HOUR

    def test_alarmed_hours_are_learned_only_after_a_week(self):
        s = warmed()
        usual = s.health.expected_rate
        s.run(7 * 24 - 1, engagements=35)
        assert s.health.expected_rate == pytest.approx(usual, rel=1e-12)
        s.run(24, engagements=35)
        assert s.health.expected_rate < 0.99 * usual

    def test_a_decay_alarmed_for_a_week_becomes_the_new_normal(self):
        s = warmed()
        alerts = s.run(7 * 24, engagements=35)
        assert fired(alerts) and not resolved(alerts)
        alerts = s.run(14 * 24, engagements=35)
        assert "1h" in {a.label("window") for _, a in alerts if a.status == "resolved"}
