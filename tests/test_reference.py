"""The brute-force reference itself, on cases computed by hand, so that it can be trusted as the oracle."""

from __future__ import annotations

import json

import pytest

from reference import Config, Invalid, decide, evaluate, key, parse_rfc3339_ms, validate
from test_property import BLANK, INVALID, VALID

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN, HOUR = 60_000, 3_600_000
S = {"account": "acme", "platform": "x"}


def ev(id_: str, ts: int, type_: str = "like", actor: str | None = "bob", **extra) -> bytes:
    fields = {"id": id_, "ts": ts, "platform": "x", "account": "acme", "type": type_, "actor": actor, **extra}
    return json.dumps({k: v for k, v in fields.items() if v is not None}).encode()


def outcomes(lines: list[bytes], config: Config = Config()) -> list[str]:
    return [d.outcome for d in decide(lines, config)]


class TestValidation:
    """`validate` accepts exactly the records the wire format allows."""

    @pytest.mark.parametrize(("name", "raw"), INVALID, ids=[n for n, _ in INVALID])
    def test_rejects(self, name, raw):
        """Every record of the invalid table is rejected."""
        with pytest.raises(Invalid):
            validate(raw)

    @pytest.mark.parametrize(("name", "raw"), VALID, ids=[n for n, _ in VALID])
    def test_accepts(self, name, raw):
        """Every record of the valid table is accepted."""
        validate(raw)

    @pytest.mark.parametrize(
        ("text", "ms"),
        [
            ("2026-01-01T00:00:00Z", T0),
            ("2026-01-01T05:30:00+05:30", T0),
            ("2025-12-31T16:00:00-08:00", T0),
            ("2026-01-01T00:00:00.250Z", T0 + 250),
            ("2026-01-01T00:00:00.5Z", T0 + 500),
            ("2026-01-01T00:00:00.9999Z", T0 + 999),
        ],
    )
    def test_rfc3339(self, text, ms):
        """Offsets are applied and fractions give milliseconds (finer digits are floored)."""
        assert parse_rfc3339_ms(text) == ms


class TestOutcomes:
    """Late, duplicate and applied, decided in arrival order."""

    @pytest.mark.parametrize(
        ("back", "outcome"), [(5 * MIN, "applied"), (5 * MIN + 1, "late")]
    )
    def test_grace_edge(self, back, outcome):
        """A record exactly `grace` behind the watermark is on time; a millisecond more is late."""
        assert outcomes([ev("a", T0 + HOUR), ev("b", T0 + HOUR - back)])[-1] == outcome

    @pytest.mark.parametrize(("name", "raw"), BLANK, ids=[n for n, _ in BLANK])
    def test_blank_lines_hold_no_record(self, name, raw):
        """A blank line gets no outcome: the records around it are decided as if it were not there."""
        assert [(d.index, d.outcome) for d in decide([ev("a", T0), raw, ev("a", T0)], Config())] == [
            (0, "applied"), (2, "duplicate")]

    def test_watermark_is_per_account(self):
        """Another account's watermark does not make a record late."""
        other = json.dumps({"id": "b", "ts": T0, "platform": "x", "account": "zed", "type": "like", "actor": "bob"}).encode()
        assert outcomes([ev("a", T0 + HOUR), other]) == ["applied", "applied"]

    def test_late_records_are_not_remembered(self):
        """An id first seen on a late record is applied when it comes back on time."""
        lines = [ev("a", T0 + 10 * MIN), ev("x", T0 + 4 * MIN), ev("x", T0 + 6 * MIN)]
        assert outcomes(lines) == ["applied", "late", "applied"]

    @pytest.mark.parametrize(("watermark", "outcome"), [(T0 + HOUR, "duplicate"), (T0 + HOUR + 1, "applied")])
    def test_dedup_horizon_edge(self, watermark, outcome):
        """An id is remembered while its ts is at least the watermark minus the horizon."""
        lines = [ev("a", T0), ev("b", watermark), ev("a", watermark)]
        assert outcomes(lines)[-1] == outcome

    def test_dedup_is_per_account_across_platforms(self):
        """The same id on another platform of the account is a duplicate, on another account it is not."""
        other_platform = json.dumps({"id": "a", "ts": T0, "platform": "tt", "account": "acme", "type": "like", "actor": "bob"}).encode()
        other_account = json.dumps({"id": "a", "ts": T0, "platform": "x", "account": "zed", "type": "like", "actor": "bob"}).encode()
        assert outcomes([ev("a", T0), other_platform, other_account]) == ["applied", "duplicate", "applied"]


class TestSeries:
    """Per-stream gauges at T, by hand."""

    def test_audience_ties_and_floor(self):
        """The later of two tied snapshots wins; follows at the snapshot's ts do not count; never below 0."""
        lines = [
            ev("s1", T0, "audience", None, followers=50),
            ev("s2", T0, "audience", None, followers=1),
            ev("f1", T0, "follow", "bob"),
            ev("u1", T0 + 1, "unfollow", "carol"),
            ev("u2", T0 + 2, "unfollow", "dave"),
        ]
        assert evaluate(lines)[key("engagewatch_audience_followers", **S)] == 0
        series = evaluate(lines)
        assert all(name != "engagewatch_active_follower_ratio" for name, _ in series)

    def test_follower_status_in_arrival_order(self):
        """The latest follow/unfollow by arrival decides, not by ts; an explicit field overrides it."""
        lines = [
            ev("f", T0 + 2 * MIN, "follow", "bob"),
            ev("u", T0 + 1 * MIN, "unfollow", "bob"),
            ev("l1", T0 + 3 * MIN, "like", "bob"),
            ev("l2", T0 + 3 * MIN, "like", "carol", follower=False),
            ev("l3", T0 + 3 * MIN, "like", "dave"),
        ]
        series = evaluate(lines, Config(unknown_actor="not_follower"))
        assert series[key("engagewatch_active_followers", window="1h", **S)] == 0
        series = evaluate(lines, Config(unknown_actor="follower"))
        assert series[key("engagewatch_active_followers", window="1h", **S)] == 1  # dave, by the policy

    @pytest.mark.parametrize(("ts", "counted"), [(T0 + 9 * MIN, 1), (T0 + 9 * MIN - 1, 0)])
    def test_window_edge(self, ts, counted):
        """With 60 s buckets a 2m window at 10:30 holds the buckets of minutes 9 and 10."""
        config = Config(windows="2m,10m", grace="1h", dedup_horizon="1h")
        lines = [ev("a", ts, "like", "carol"), ev("z", T0 + 10 * MIN + 30_000, "view", "bob")]
        series = evaluate(lines, config)
        assert series[key("engagewatch_engaged_actors", window="2m", **S)] == counted
        assert series[key("engagewatch_engaged_actors", window="10m", **S)] == 1

    def test_influencer_needs_reach_on_a_follower_event(self):
        """Reach on an event where the actor was not a follower does not make an influencer."""
        lines = [
            ev("a", T0, "like", "bob", follower=False, actor_followers=99_999),
            ev("b", T0, "like", "bob", follower=True, actor_followers=9_999),
            ev("c", T0, "like", "carol", follower=True, actor_followers=10_000),
        ]
        series = evaluate(lines)
        assert series[key("engagewatch_active_followers", window="1h", **S)] == 2
        assert series[key("engagewatch_influencer_active_followers", window="1h", **S)] == 1

    def test_cohort_and_activation(self):
        """Only actors whose latest relation is a recent follow are in the cohort; engaging at or after it activates."""
        lines = [
            ev("f1", T0 + MIN, "follow", "bob"),
            ev("l1", T0 + MIN, "like", "bob"),  # same ts as the follow: activated
            ev("f2", T0 + MIN, "follow", "carol"),
            ev("l2", T0, "like", "carol"),  # before the follow: not activated
            ev("v2", T0 + 2 * MIN, "view", "carol"),  # a view never activates
            ev("f3", T0, "follow", "dave"),
            ev("u3", T0, "unfollow", "dave"),  # latest relation is an unfollow: out
        ]
        series = evaluate(lines)
        assert series[key("engagewatch_new_followers", **S)] == 2
        assert series[key("engagewatch_new_followers_activated", **S)] == 1

    @pytest.mark.parametrize(("follow_ts", "members"), [(T0, 1), (T0 - 1, 0)])
    def test_cohort_edge(self, follow_ts, members):
        """A 7d cohort at T holds follows whose bucket is among the last 7 days' buckets."""
        lines = [ev("f", follow_ts, "follow", "bob"), ev("z", T0 + 7 * 24 * HOUR - 1, "view", "carol")]
        assert evaluate(lines, Config(grace="8d", dedup_horizon="8d"))[key("engagewatch_new_followers", **S)] == members
