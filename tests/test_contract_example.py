"""The worked example of the metric semantics (v1), figure by figure, for the reference and for the engine.

Ten records on one stream (account `acme`, platform `x`), event clock, default settings; T = 01:32:
an audience snapshot of 100, bob follows then likes with 50 000 followers of his own in campaign `bf` (the like is
sent twice), carol comments saying she is not a follower, a like from dave at 00:05 arrives after the watermark
reached 00:21 (late), erin only views, frank unfollows then likes, and a last record has an unreadable time.
"""

from __future__ import annotations

import pytest

from reference import Config, evaluate, key, run_engine, split_lines

EXAMPLE = b"""\
{"id":"a1","ts":"2026-01-01T00:00:00Z","platform":"x","account":"acme","type":"audience","followers":100}
{"id":"a2","ts":"2026-01-01T00:10:00Z","platform":"x","account":"acme","type":"follow","actor":"bob"}
{"id":"a3","ts":"2026-01-01T00:20:00Z","platform":"x","account":"acme","type":"like","actor":"bob","actor_followers":50000,"campaign":"bf"}
{"id":"a3","ts":"2026-01-01T00:20:00Z","platform":"x","account":"acme","type":"like","actor":"bob","actor_followers":50000,"campaign":"bf"}
{"id":"a4","ts":"2026-01-01T00:21:00Z","platform":"x","account":"acme","type":"comment","actor":"carol","follower":false}
{"id":"a5","ts":"2026-01-01T00:05:00Z","platform":"x","account":"acme","type":"like","actor":"dave"}
{"id":"a6","ts":"2026-01-01T01:30:00Z","platform":"x","account":"acme","type":"view","actor":"erin"}
{"id":"a7","ts":"2026-01-01T01:31:00Z","platform":"x","account":"acme","type":"unfollow","actor":"frank"}
{"id":"a8","ts":"2026-01-01T01:32:00Z","platform":"x","account":"acme","type":"like","actor":"frank"}
{"id":"a9","ts":"not a time","platform":"x","account":"acme","type":"like","actor":"frank"}
"""

STREAM = {"account": "acme", "platform": "x"}


@pytest.fixture(scope="module", params=["reference", "engine"])
def exported(request, tmp_path_factory) -> dict:
    """Every exposed series of the worked example, from the reference or from the engine's `.prom` output."""
    if request.param == "reference":
        return evaluate(split_lines(EXAMPLE), Config())
    run = run_engine(EXAMPLE, Config(), tmp_path_factory.mktemp("example"), dead_letter=True)
    assert run.exit_code == 0
    return run.series


class TestWorkedExample:
    """metrics.md, "Worked example": every figure it states."""

    @pytest.mark.parametrize(
        ("outcome", "count"), [("applied", 7), ("duplicate", 1), ("late", 1), ("invalid", 1)]
    )
    def test_outcomes(self, exported, outcome, count):
        """Each record gets one outcome: the second a3 is a duplicate, a5 is late, a9 is invalid."""
        assert exported[key("engagewatch_events_total", outcome=outcome)] == count

    def test_dead_letters(self, exported):
        """The late and the invalid record are dead-lettered, the late one under reason `late`."""
        dead = {dict(labels)["reason"]: v for (name, labels), v in exported.items() if name == "engagewatch_dead_letters_total"}
        assert dead["late"] == 1
        assert sum(dead.values()) == 2

    def test_audience(self, exported):
        """100 from the snapshot, plus bob's follow, minus frank's unfollow (both after the snapshot)."""
        assert exported[key("engagewatch_audience_followers", **STREAM)] == 100

    @pytest.mark.parametrize(
        ("metric", "window", "value"),
        [
            ("engagewatch_active_followers", "24h", 1),
            ("engagewatch_active_followers", "7d", 1),
            ("engagewatch_active_followers", "1h", 0),
            ("engagewatch_engaged_actors", "24h", 3),
            ("engagewatch_engaged_actors", "7d", 3),
            ("engagewatch_engaged_actors", "1h", 1),
            ("engagewatch_influencer_active_followers", "24h", 1),
            ("engagewatch_influencer_active_followers", "7d", 1),
            ("engagewatch_influencer_active_followers", "1h", 0),
        ],
    )
    def test_window_counts(self, exported, metric, window, value):
        """Bob is the only active follower (an influencer); frank alone engaged within the last hour."""
        assert exported[key(metric, window=window, **STREAM)] == value

    @pytest.mark.parametrize(("window", "ratio"), [("24h", 0.01), ("7d", 0.01), ("1h", 0.0)])
    def test_ratio(self, exported, window, ratio):
        """Active followers over an audience of 100."""
        assert exported[key("engagewatch_active_follower_ratio", window=window, **STREAM)] == pytest.approx(
            ratio, abs=1e-12
        )

    @pytest.mark.parametrize(("window", "actors"), [("24h", 1), ("7d", 1), ("1h", 0)])
    def test_campaign(self, exported, window, actors):
        """Bob's like is the only engagement tagged `bf`; it is older than an hour (a zero may be left out)."""
        assert exported.get(key("engagewatch_campaign_engaged_actors", campaign="bf", window=window, **STREAM), 0) == actors

    def test_no_other_campaign(self, exported):
        """No campaign but `bf` is exposed."""
        campaigns = {
            dict(labels)["campaign"] for (name, labels), _ in exported.items() if name == "engagewatch_campaign_engaged_actors"
        }
        assert campaigns == {"bf"}

    @pytest.mark.parametrize(("metric", "value"), [("engagewatch_new_followers", 1), ("engagewatch_new_followers_activated", 1)])
    def test_cohort(self, exported, metric, value):
        """Bob followed at 00:10 and liked at 00:20, so the cohort of one is activated."""
        assert exported[key(metric, **STREAM)] == value

    @pytest.mark.parametrize(
        ("type_", "count"), [("like", 2), ("comment", 1), ("view", 1), ("follow", 1), ("unfollow", 1)]
    )
    def test_engagements(self, exported, type_, count):
        """Applied events per type, audience snapshots excluded."""
        assert exported[key("engagewatch_engagements_total", type=type_, **STREAM)] == count

    def test_no_other_engagement_types(self, exported):
        """No other type has a non-zero count, and audience snapshots are never counted."""
        types = {
            dict(labels)["type"]
            for (name, labels), v in exported.items()
            if name == "engagewatch_engagements_total" and v
        }
        assert types == {"like", "comment", "view", "follow", "unfollow"}

    def test_single_stream(self, exported):
        """Only the stream (acme, x) has per-stream series."""
        streams = {
            (dict(labels).get("account"), dict(labels).get("platform"))
            for (name, labels), _ in exported.items()
            if name not in ("engagewatch_events_total", "engagewatch_dead_letters_total")
        }
        assert streams == {("acme", "x")}
