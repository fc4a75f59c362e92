"""Specifications of `engagewatch backtest` on a small grid (the full grid runs in the command)."""

from __future__ import annotations

import argparse

from streams.backtest_scenarios import scenario_grid, simulate
from streams.commands import backtest


class TestScenarios:
    def test_grid_is_seeded(self):
        """The same seed gives the same scenarios and the same observations."""
        a, b = scenario_grid(per_cell=1, seed=9, days=9), scenario_grid(per_cell=1, seed=9, days=9)
        assert a == b
        assert list(simulate(a[0]))[-1] == list(simulate(b[0]))[-1]

    def test_counters_are_cumulative(self):
        """Engine-style counters never decrease from one tick to the next."""
        obs = [o for _, o in simulate(scenario_grid(per_cell=1, seed=2, days=2)[0])]
        assert all(x.follower_engaging_events <= y.follower_engaging_events for x, y in zip(obs, obs[1:]))


class TestBacktestCommand:
    def test_small_grid_reports_every_detector(self, capsys):
        """A one-per-cell run prints a table with recall, false alerts and delays for each detector."""
        parser = argparse.ArgumentParser()
        backtest.add_arguments(parser)
        assert backtest.main(parser.parse_args(["--per-cell", "1", "--days", "10", "--jobs", "1"])) == 0
        out = capsys.readouterr().out
        for row in ("decay ≥30 % lasting ≥12 h (target)", "silence", "hollow growth", "decay false alerts on stable"):
            assert row in out


class TestCampaignScenarios:
    def test_campaigns_lift_and_are_flagged_until_an_hour_after(self):
        """`campaigns=True` gives seeded 6–30 h campaigns, flagged in the snapshot from their start to 1 h after."""
        from streams.backtest_scenarios import HOUR_MS, campaign_schedule

        s = scenario_grid(per_cell=1, seed=4, days=10, campaigns=True)[0]
        sched = campaign_schedule(s)
        assert sched and sched == campaign_schedule(s)
        assert all(6 * HOUR_MS <= b - a <= 30 * HOUR_MS and 1.2 <= k <= 1.6 for a, b, k in sched)
        a, b, _ = sched[0]
        flags = {T: bool(o.campaign_engaged_actors) for T, o in simulate(s)}
        assert flags[a + 300_000] and flags[b + HOUR_MS] and not flags.get(b + HOUR_MS + 300_000, False)
        plain = scenario_grid(per_cell=1, seed=4, days=10)[0]
        assert not any(o.campaign_engaged_actors for _, o in simulate(plain))
