"""The engine's metrics (contract/metrics.md), each driven by a short list of events and an explicit evaluation time.

Unless a test says otherwise: default settings (bucket 60 s, windows 1h/24h/7d, grace 5 min, influencer threshold
10 000, cohort 7d, unknown actors are followers), one stream `acme`/`x`, and per-window tuples in the order
(1h, 24h, 7d).
"""

from __future__ import annotations

import dataclasses
import itertools
import random

import orjson
import pytest

from processors.config import EngineConfig
from processors.engine import Engine
from processors.snapshot import Snapshot, StreamSnapshot
from processors.stream import ACTIVE, ENGAGED, FOLLOWING, INFLUENCER, Stream

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
S, M, H, D = 1_000, 60_000, 3_600_000, 86_400_000

_ids = itertools.count()


def ev(type_: str, actor: str | None, ts: int, **fields) -> dict:
    """One event of `acme`/`x` (fields override), with a fresh id."""
    rec = {"id": f"e{next(_ids)}", "ts": ts, "platform": "x", "account": "acme", "type": type_}
    if actor is not None:
        rec["actor"] = actor
    rec.update(fields)
    return rec


def like(actor: str, ts: int, **fields) -> dict:
    return ev("like", actor, ts, **fields)


def follow(actor: str, ts: int, **fields) -> dict:
    return ev("follow", actor, ts, **fields)


def unfollow(actor: str, ts: int, **fields) -> dict:
    return ev("unfollow", actor, ts, **fields)


def audience(followers: int, ts: int, **fields) -> dict:
    return ev("audience", None, ts, followers=followers, **fields)


def feed(events: list[dict], config: EngineConfig | None = None) -> Engine:
    engine = Engine(config or EngineConfig())
    engine.feed([orjson.dumps(e) for e in events])
    return engine


def evaluate(events: list[dict], at: int | None = None, config: EngineConfig | None = None) -> Snapshot:
    """Feed `events` to a fresh engine and evaluate at `at` (default: the largest applied ts)."""
    engine = feed(events, config)
    return engine.snapshot(engine.event_time() if at is None else at)


def stream(snap: Snapshot, account: str = "acme", platform: str = "x") -> StreamSnapshot:
    (found,) = [s for s in snap.streams if (s.account, s.platform) == (account, platform)]
    return found


def active(events: list[dict], **config) -> tuple[int, ...]:
    return stream(evaluate(events, config=EngineConfig(**config))).active_followers


class TestFollowerStatus:
    """At an engaging event: the event's `follower` field, else the latest follow/unfollow, else the policy."""

    @pytest.mark.parametrize(
        ("history", "field", "policy", "counted"),
        [
            # the event's own field wins over everything
            ([], True, "not_follower", True),
            ([], False, "follower", False),
            (["unfollow"], True, "follower", True),
            (["follow"], False, "follower", False),
            (["follow"], False, "not_follower", False),
            # else the latest follow/unfollow of the actor on the stream
            (["follow"], None, "not_follower", True),
            (["unfollow"], None, "follower", False),
            (["follow", "unfollow"], None, "follower", False),
            (["unfollow", "follow"], None, "not_follower", True),
            (["follow", "unfollow", "follow"], None, "not_follower", True),
            # else the unknown-actor policy
            ([], None, "follower", True),
            ([], None, "not_follower", False),
        ],
    )
    def test_precedence(self, history, field, policy, counted):
        """The event's field beats the relation, which beats the unknown-actor policy."""
        events = [ev(kind, "bob", T0 + i * S) for i, kind in enumerate(history)]
        events.append(like("bob", T0 + M, **({} if field is None else {"follower": field})))
        expected = (1, 1, 1) if counted else (0, 0, 0)
        assert active(events, unknown_actor=policy) == expected

    @pytest.mark.parametrize("policy", ["follower", "not_follower"])
    def test_relation_in_arrival_order_not_time_order(self, policy):
        """The latest follow/unfollow to arrive decides, even when its ts is older than the other's."""
        followed_last = [unfollow("bob", T0 + 2 * M), follow("bob", T0 + M), like("bob", T0 + 3 * M)]
        unfollowed_last = [follow("bob", T0 + 2 * M), unfollow("bob", T0 + M), like("bob", T0 + 3 * M)]
        assert active(followed_last, unknown_actor=policy) == (1, 1, 1)
        assert active(unfollowed_last, unknown_actor=policy) == (0, 0, 0)

    def test_a_follow_arriving_later_does_not_change_an_earlier_event(self):
        """Status is fixed when the event is applied: a follow that arrives afterwards does not make it a follower's."""
        events = [like("bob", T0 + 2 * M), follow("bob", T0 + M)]
        assert active(events, unknown_actor="not_follower") == (0, 0, 0)

    def test_relation_is_per_stream(self):
        """A follow on another platform of the account says nothing about this stream."""
        events = [follow("bob", T0, platform="instagram"), like("bob", T0 + M)]
        assert active(events, unknown_actor="not_follower") == (0, 0, 0)

    def test_a_follower_event_anywhere_in_the_window_counts(self):
        """An actor counts as active if any of its events in the window was a follower's."""
        events = [like("bob", T0, follower=True), unfollow("bob", T0 + M), like("bob", T0 + 2 * M)]
        assert active(events) == (1, 1, 1)

    def test_active_window_follows_the_last_follower_event(self):
        """An actor is active in a window only if a follower event of it lies there, not just any event."""
        events = [like("bob", T0, follower=True), like("bob", T0 + 2 * H, follower=False)]
        snap = stream(evaluate(events))
        assert snap.active_followers == (0, 1, 1)
        assert snap.engaged_actors == (1, 1, 1)

    def test_engaged_actors_count_followers_or_not(self):
        """Engaged actors are every distinct actor with an engaging event, whatever its status."""
        events = [like("bob", T0, follower=True), like("carol", T0, follower=False), like("bob", T0 + S)]
        snap = stream(evaluate(events))
        assert (snap.engaged_actors, snap.active_followers) == ((2, 2, 2), (1, 1, 1))

    def test_follower_engaging_events(self):
        """Engaging events are counted cumulatively, and those whose actor was a follower separately."""
        events = [like("bob", T0, follower=True), like("carol", T0, follower=False), like("bob", T0 + S)]
        snap = stream(evaluate(events))
        assert (snap.engaging_events, snap.follower_engaging_events) == (3, 2)


class TestEngagingTypes:
    """Seven types engage; `view`, `follow`, `unfollow` and `audience` never make an actor active or engaged."""

    @pytest.mark.parametrize("type_", ["like", "comment", "share", "reply", "mention", "save", "click"])
    def test_engaging(self, type_):
        """Each engaging type makes its actor engaged and, as a follower, active."""
        snap = stream(evaluate([ev(type_, "bob", T0, follower=True, actor_followers=10_000, campaign="c")]))
        assert snap.engaged_actors == snap.active_followers == snap.influencer_active_followers == (1, 1, 1)
        assert snap.campaign_engaged_actors == {"c": (1, 1, 1)}

    @pytest.mark.parametrize("type_", ["view", "follow", "unfollow"])
    def test_not_engaging(self, type_):
        """A view, follow or unfollow, even with `follower: true` and a campaign, is no engagement."""
        snap = stream(evaluate([ev(type_, "bob", T0, follower=True, actor_followers=10_000, campaign="c")]))
        assert snap.engaged_actors == snap.active_followers == snap.influencer_active_followers == (0, 0, 0)
        assert snap.campaign_engaged_actors == {}

    def test_view_never_activates_a_new_follower(self):
        """A view after a follow leaves the new follower not activated."""
        snap = stream(evaluate([follow("bob", T0), ev("view", "bob", T0 + M)]))
        assert (snap.new_followers, snap.new_followers_activated) == (1, 0)


class TestEngagementsByType:
    """`engagewatch_engagements_total`: applied events by type, every type but `audience`."""

    def test_counts_by_type(self):
        """Every applied event is counted under its type; audience snapshots are not."""
        events = [like("a", T0), like("b", T0), ev("comment", "a", T0), ev("view", "c", T0), follow("d", T0),
                  unfollow("e", T0), ev("click", "f", T0), audience(10, T0)]
        assert stream(evaluate(events)).engagements == {
            "like": 2, "comment": 1, "view": 1, "follow": 1, "unfollow": 1, "click": 1}

    def test_only_applied_events_count(self):
        """Duplicate, late and invalid records are not engagements."""
        first = like("a", T0 + H)
        events = [first, dict(first), like("b", T0), like("c", T0 + H, follower="no")]
        snap = stream(evaluate(events))
        assert snap.engagements == {"like": 1}
        assert (snap.follows, snap.unfollows) == (0, 0)

    def test_follows_and_unfollows(self):
        """Follows and unfollows are counted cumulatively."""
        snap = stream(evaluate([follow("a", T0), follow("b", T0), unfollow("a", T0 + S)]))
        assert (snap.follows, snap.unfollows) == (2, 1)

    def test_counters_do_not_decay(self):
        """Counters keep their values however far the evaluation time moves on."""
        engine = feed([like("a", T0), ev("view", "b", T0)])
        assert stream(engine.snapshot(T0 + 365 * D)).engagements == {"like": 1, "view": 1}


class TestInfluencers:
    """Active followers with at least one follower event in the window carrying `actor_followers ≥` threshold."""

    @pytest.mark.parametrize(
        ("reach", "threshold", "counted"),
        [(10_000, 10_000, True), (9_999, 10_000, False), (10**12, 10_000, True), (0, 0, True), (5, 6, False)],
    )
    def test_threshold_boundary(self, reach, threshold, counted):
        """Reach equal to the threshold counts; one less does not."""
        snap = stream(evaluate([like("bob", T0, actor_followers=reach)], config=EngineConfig(
            influencer_threshold=threshold)))
        assert snap.influencer_active_followers == ((1, 1, 1) if counted else (0, 0, 0))

    def test_without_reach(self):
        """An event without `actor_followers` never makes an influencer."""
        assert stream(evaluate([like("bob", T0)])).influencer_active_followers == (0, 0, 0)

    def test_reach_on_a_non_follower_event_does_not_count(self):
        """A big reach on an event whose actor is not a follower makes no influencer active follower."""
        events = [like("bob", T0, actor_followers=50_000, follower=False), like("bob", T0 + M, follower=True)]
        snap = stream(evaluate(events))
        assert (snap.active_followers, snap.influencer_active_followers) == ((1, 1, 1), (0, 0, 0))

    def test_one_such_event_in_the_window_is_enough(self):
        """A later follower event without reach does not undo an influencer event in the window."""
        events = [like("bob", T0, actor_followers=50_000), like("bob", T0 + 2 * H, actor_followers=10)]
        snap = stream(evaluate(events))
        assert snap.active_followers == (1, 1, 1)
        assert snap.influencer_active_followers == (0, 1, 1)


class TestWindows:
    """Window W at T holds the buckets b with bucket(T) - W/g < b ≤ bucket(T)."""

    @pytest.mark.parametrize(
        ("ts", "expected"),
        [
            (T0 + 2 * H, (1, 1, 1)),
            (T0 + H + M, (1, 1, 1)),  # bucket(T) - 59: the oldest bucket of 1h
            (T0 + H + 1, (0, 1, 1)),  # bucket(T) - 60: just outside 1h, whatever the ms within it
            (T0 + H + M - 1, (0, 1, 1)),
            (T0 + 2 * H - D + M, (0, 1, 1)),  # oldest bucket of 24h
            (T0 + 2 * H - D + M - 1, (0, 0, 1)),
            (T0 + 2 * H - 7 * D + M, (0, 0, 1)),  # oldest bucket of 7d
            (T0 + 2 * H - 7 * D + M - 1, (0, 0, 0)),
        ],
    )
    def test_edges(self, ts, expected):
        """An event counts in a window exactly when its bucket lies in that window at T."""
        at = T0 + 2 * H + 59 * S  # T's bucket starts at T0 + 2h
        snap = stream(evaluate([like("old", ts), like("now", T0 + 2 * H)], at=at))
        assert snap.engaged_actors == tuple(1 + n for n in expected)

    def test_actor_counted_once(self):
        """Many events of one actor count it once per window."""
        events = [like("bob", T0 + i * M) for i in range(100)]
        assert stream(evaluate(events)).engaged_actors == (1, 1, 1)

    def test_latest_event_decides(self):
        """An actor with an old and a recent event is in every window that holds the recent one."""
        events = [like("bob", T0), like("bob", T0 + 3 * D), like("carol", T0 + 3 * D)]
        assert stream(evaluate(events)).engaged_actors == (2, 2, 2)

    def test_out_of_order_arrival(self):
        """An older event arriving after a newer one does not pull the actor back in time."""
        events = [like("bob", T0 + 2 * H), like("bob", T0 + 2 * H - 4 * M)]
        # At T the 1h window starts at T0 + 2h - 1 min: it holds the newer event, not the older one.
        assert stream(evaluate(events, at=T0 + 3 * H - 2 * M)).engaged_actors == (1, 1, 1)

    def test_idle_streams_decay_as_evaluation_time_moves(self):
        """Evaluating later (as the wall clock does) lets events leave the windows one by one."""
        engine = feed([like("bob", T0), like("carol", T0 + H)])
        assert stream(engine.snapshot(T0 + H)).engaged_actors == (1, 2, 2)
        assert stream(engine.snapshot(T0 + 2 * H)).engaged_actors == (0, 2, 2)
        assert stream(engine.snapshot(T0 + D + 30 * M)).engaged_actors == (0, 1, 2)
        assert stream(engine.snapshot(T0 + 8 * D)).engaged_actors == (0, 0, 0)

    def test_events_after_the_evaluation_time_do_not_count(self):
        """Events stamped after T are not in any window at T."""
        engine = feed([like("bob", T0), like("carol", T0 + 10 * M)])
        assert stream(engine.snapshot(T0 + 5 * M)).engaged_actors == (1, 1, 1)

    def test_custom_windows_and_bucket(self):
        """Windows and bucket size come from the configuration; labels keep their order."""
        cfg = EngineConfig(bucket_ms=10 * S, windows=(("30s", 30 * S), ("2m", 2 * M)))
        snap = evaluate([like("a", T0), like("b", T0 + 90 * S), like("c", T0 + 2 * M)], config=cfg)
        assert snap.windows == ("30s", "2m")
        # At T = 2:00 the 30s window holds buckets 1:40-2:00 (c), the 2m window 0:10-2:00 (b and c).
        assert stream(snap).engaged_actors == (1, 2)


class TestCampaigns:
    """Distinct actors with an applied engaging event tagged with the campaign, per window."""

    def test_per_campaign(self):
        """Each campaign counts its own actors; an actor in two campaigns counts in both; untagged in none."""
        events = [like("a", T0, campaign="bf"), like("b", T0, campaign="bf", follower=False),
                  like("a", T0, campaign="cm"), like("c", T0), like("a", T0 + S, campaign="bf")]
        assert stream(evaluate(events)).campaign_engaged_actors == {"bf": (2, 2, 2), "cm": (1, 1, 1)}

    def test_campaign_windows(self):
        """A campaign's actors leave its windows like any other."""
        events = [like("a", T0, campaign="bf"), like("b", T0 + 2 * H, campaign="bf")]
        assert stream(evaluate(events)).campaign_engaged_actors == {"bf": (1, 2, 2)}

    def test_campaign_is_per_stream(self):
        """The same campaign on two platforms is two series."""
        events = [like("a", T0, campaign="bf"), like("a", T0, campaign="bf", platform="tiktok", id="other")]
        snap = evaluate(events)
        assert stream(snap).campaign_engaged_actors == {"bf": (1, 1, 1)}
        assert stream(snap, platform="tiktok").campaign_engaged_actors == {"bf": (1, 1, 1)}


class TestCohort:
    """New followers: latest follow/unfollow is a follow in the cohort window; activated: engaged at or after it."""

    def test_follow_then_engagement(self):
        """A follow makes a new follower; an engagement after it activates them."""
        assert self.cohort([follow("bob", T0)]) == (1, 0)
        assert self.cohort([follow("bob", T0), like("bob", T0 + M)]) == (1, 1)

    @pytest.mark.parametrize(("offset", "activated"), [(-1, 0), (0, 1), (1, 1)])
    def test_engagement_at_the_follow_time(self, offset, activated):
        """An engagement at exactly the follow's ts activates; one millisecond earlier does not."""
        assert self.cohort([follow("bob", T0 + M), like("bob", T0 + M + offset)]) == (1, activated)

    def test_arrival_order_does_not_matter_for_activation(self):
        """An engagement stamped after the follow activates even when it arrives before it."""
        assert self.cohort([like("bob", T0 + 2 * M), follow("bob", T0 + M)]) == (1, 1)

    def test_engagement_before_the_follow_does_not_activate(self):
        """Only engagements at or after the follow's ts count."""
        assert self.cohort([like("bob", T0), follow("bob", T0 + M)]) == (1, 0)

    def test_non_follower_engagement_activates(self):
        """Activation needs an engaging event, whatever its follower field says."""
        assert self.cohort([follow("bob", T0), like("bob", T0 + M, follower=False)]) == (1, 1)

    @pytest.mark.parametrize("engaged_at", [T0, T0 + M])
    def test_unfollow_leaves_the_cohort(self, engaged_at):
        """An unfollow after the follow takes the actor out of the cohort, and out of the activated, also when it
        was activated by an engagement at the follow's very ts."""
        assert self.cohort([follow("bob", T0), like("bob", engaged_at), unfollow("bob", T0 + 2 * M)]) == (0, 0)

    def test_arrival_order_decides_membership(self):
        """A follow that arrives after an unfollow with a later ts still makes the actor a member."""
        assert self.cohort([unfollow("bob", T0 + 2 * M), follow("bob", T0 + M)]) == (1, 0)

    def test_refollow_moves_the_cohort_bucket(self):
        """A second follow replaces the first: membership and activation are judged from the latest one."""
        first, again = follow("bob", T0), follow("bob", T0 + 6 * D)
        at = T0 + 10 * D
        assert self.cohort([first], at=at) == (0, 0)
        assert self.cohort([first, again], at=at) == (1, 0)
        assert self.cohort([first, like("bob", T0 + D), again], at=at) == (1, 0)
        assert self.cohort([first, like("bob", T0 + D), again, like("bob", T0 + 7 * D)], at=at) == (1, 1)

    def test_refollow_after_unfollow(self):
        """Follow, unfollow, follow again: a member once, from the last follow."""
        events = [follow("bob", T0), unfollow("bob", T0 + M), follow("bob", T0 + 2 * M), like("bob", T0 + 3 * M)]
        assert self.cohort(events) == (1, 1)

    @pytest.mark.parametrize(
        ("follow_ts", "member"),
        [
            (T0 + 7 * D, 1),
            (T0 + M, 1),  # bucket(T) - 10079: the oldest bucket of the cohort window
            (T0 + M - 1, 0),  # bucket(T) - 10080: outside
            (T0, 0),
        ],
    )
    def test_cohort_window_edge(self, follow_ts, member):
        """A follow counts while its bucket lies in the cohort window at T."""
        assert self.cohort([follow("bob", follow_ts), like("bob", T0 + 7 * D)], at=T0 + 7 * D + 30 * S) == (
            member, member)

    def test_per_stream(self):
        """An engagement on another platform does not activate a follow on this one."""
        assert self.cohort([follow("bob", T0), like("bob", T0 + M, platform="tiktok")]) == (1, 0)

    def test_many(self):
        """Several actors: each counted once, activated ones among them."""
        events = [follow(a, T0 + i * M) for i, a in enumerate("abcde")]
        events += [like("a", T0 + H), like("b", T0), ev("view", "c", T0 + H), like("d", T0 + H), unfollow("e", T0 + H)]
        assert self.cohort(events) == (4, 2)

    @staticmethod
    def cohort(events: list[dict], at: int | None = None) -> tuple[int, int]:
        snap = stream(evaluate(events, at=at))
        return snap.new_followers, snap.new_followers_activated


class TestAudienceAndRatio:
    """Audience = latest snapshot + net follows after it (floored at 0); ratio = active / audience, absent at 0."""

    def test_snapshot_plus_follows_after_it(self):
        """Follows and unfollows after the snapshot move the audience; those before or at it do not."""
        events = [follow("a", T0 - M), audience(100, T0), follow("b", T0), follow("c", T0 + M), follow("d", T0 + M),
                  unfollow("e", T0 + 2 * M)]
        assert stream(evaluate(events)).audience_followers == 101

    def test_without_snapshot(self):
        """Without a snapshot the audience is follows minus unfollows, floored at 0."""
        assert stream(evaluate([follow("a", T0), follow("b", T0), unfollow("c", T0)])).audience_followers == 1
        assert stream(evaluate([unfollow("a", T0), unfollow("b", T0)])).audience_followers == 0

    def test_ties_later_arrival_wins(self):
        """Two snapshots with the same ts: the later to arrive counts; an older snapshot is ignored."""
        events = [audience(100, T0 + M), audience(80, T0 + M), audience(500, T0)]
        assert stream(evaluate(events)).audience_followers == 80

    def test_audience_is_per_stream(self):
        """Each platform of an account has its own audience."""
        events = [audience(100, T0), audience(7, T0, platform="tiktok"), follow("a", T0 + M, platform="tiktok")]
        snap = evaluate(events)
        assert (stream(snap).audience_followers, stream(snap, platform="tiktok").audience_followers) == (100, 8)

    def test_ratio(self):
        """The ratio divides active followers of each window by the audience."""
        events = [audience(4, T0), like("a", T0), like("b", T0 + 2 * H)]
        assert stream(evaluate(events)).active_follower_ratio() == (0.25, 0.5, 0.5)

    @pytest.mark.parametrize(
        "events",
        [
            pytest.param([like("a", T0)], id="no audience known"),
            pytest.param([audience(0, T0), like("a", T0 + M)], id="snapshot of 0"),
            pytest.param([audience(1, T0), unfollow("b", T0 + M), like("a", T0 + M)], id="unfollowed down to 0"),
        ],
    )
    def test_ratio_absent_at_zero_audience(self, events):
        """While the audience is 0 the ratio is absent (None), even with active followers."""
        snap = stream(evaluate(events))
        assert snap.audience_followers == 0
        assert snap.active_followers == (1, 1, 1)
        assert snap.active_follower_ratio() == (None, None, None)

    def test_audience_only_stream_exists(self):
        """A stream with only an audience snapshot is a stream with zero activity."""
        snap = stream(evaluate([audience(10, T0)]))
        assert (snap.audience_followers, snap.engaged_actors, snap.engagements) == (10, (0, 0, 0), {})


class TestOutcomes:
    """Every record gets exactly one outcome."""

    def test_outcomes_add_up(self):
        """applied + duplicate + late + invalid equals the number of records, and dead letters are late + invalid."""
        rng = random.Random(7)
        lines = []
        for i in range(2_000):
            r = {"id": f"i{rng.randint(0, 300)}", "ts": T0 + rng.randint(0, 40) * M, "platform": rng.choice("xy"),
                 "account": rng.choice(("a", "b")), "type": rng.choice(("like", "view", "follow", "audience")),
                 "actor": f"u{rng.randint(0, 20)}", "followers": 5}
            if rng.random() < 0.1:
                r["follower"] = "maybe"
            lines.append(orjson.dumps(r) if rng.random() > 0.05 else b"{oops")
        engine = Engine(EngineConfig())
        dead = engine.feed(lines[:1000]) + engine.feed(lines[1000:])
        out = engine.snapshot(engine.event_time()).outcomes
        assert sum(out.values()) == len(lines)
        assert out["late"] + out["invalid"] == len(dead)
        assert min(out.values()) > 0

    def test_outcomes_are_cumulative_across_batches(self):
        """Feeding one batch or many gives the same outcomes and metrics."""
        events = [like(f"u{i % 7}", T0 + (i * 37 % 500) * S, id=f"i{i % 50}") for i in range(200)]
        raws = [orjson.dumps(e) for e in events]
        whole, pieces = Engine(EngineConfig()), Engine(EngineConfig())
        whole.feed(raws)
        for i in range(0, len(raws), 13):
            pieces.feed(raws[i:i + 13])
        at = whole.event_time()
        assert whole.snapshot(at) == pieces.snapshot(at)


class TestLabelBudgets:
    """Past a label budget the engine keeps counting, visibly: `overflow["streams"]`, campaign `_other`."""

    def test_streams_beyond_the_budget(self):
        """Events of streams beyond `max_streams` are counted as overflow and their streams not exported."""
        events = [like("a", T0, platform="p1"), like("a", T0, platform="p2"), like("a", T0, platform="p3"),
                  like("b", T0 + S, platform="p3"), like("a", T0, platform="p1", account="beta"),
                  like("c", T0 + S, platform="p1")]
        snap = evaluate(events, config=EngineConfig(max_streams=2))
        assert sorted((s.account, s.platform) for s in snap.streams) == [("acme", "p1"), ("acme", "p2")]
        assert snap.overflow["streams"] == 3
        assert stream(snap, platform="p1").engaged_actors == (2, 2, 2)
        assert snap.outcomes["applied"] == 6

    def test_campaigns_beyond_the_budget_fold_into_other(self):
        """Campaigns past the per-account budget are counted under `_other`, and each folded event is counted."""
        events = [like("a", T0, campaign="c1"), like("b", T0, campaign="c2"), like("c", T0, campaign="c3"),
                  like("d", T0, campaign="c4"), like("c", T0 + S, campaign="c4"), like("e", T0, campaign="c1"),
                  like("f", T0, campaign="c3", platform="tiktok")]
        snap = evaluate(events, config=EngineConfig(max_campaigns_per_account=2))
        assert stream(snap).campaign_engaged_actors == {"c1": (2, 2, 2), "c2": (1, 1, 1), "_other": (2, 2, 2)}
        assert stream(snap, platform="tiktok").campaign_engaged_actors == {"_other": (1, 1, 1)}
        assert snap.overflow["campaigns"] == 4

    def test_ended_campaigns_give_up_their_labels_to_new_ones(self):
        """With the budget full, a new campaign takes the label of one with no engaged actor left in any window
        (its series, at 0 for good, leave), however the records are batched."""
        events = [like("a", T0, campaign="c1"), like("b", T0, campaign="c2", platform="tiktok"),
                  like("c", T0 + 8 * D, campaign="c3"), like("d", T0 + 8 * D, campaign="c4"),
                  like("e", T0 + 8 * D, campaign="c5", platform="tiktok")]
        config = EngineConfig(max_campaigns_per_account=2)
        whole, one_by_one = feed(events, config), Engine(config)
        for e in events:
            one_by_one.feed([orjson.dumps(e)])
        for engine in (whole, one_by_one):
            snap = engine.snapshot(T0 + 8 * D)
            assert stream(snap).campaign_engaged_actors == {"c3": (1, 1, 1), "c4": (1, 1, 1)}
            assert stream(snap, platform="tiktok").campaign_engaged_actors == {"_other": (1, 1, 1)}
            assert snap.overflow["campaigns"] == 1

    def test_a_campaign_with_an_actor_in_a_window_keeps_its_label(self):
        """A campaign with an engaged actor still in the longest window on any platform has not ended; one whose
        actors have all left it is the one that gives up its label."""
        events = [like("a", T0, campaign="c1"), like("b", T0, campaign="c2"),
                  like("c", T0 + 6 * D, campaign="c2", platform="tiktok"), like("d", T0 + 8 * D, campaign="c3")]
        snap = evaluate(events, config=EngineConfig(max_campaigns_per_account=2))
        assert stream(snap).campaign_engaged_actors == {"c2": (0, 0, 0), "c3": (1, 1, 1)}
        assert stream(snap, platform="tiktok").campaign_engaged_actors == {"c2": (0, 0, 1)}
        assert snap.overflow["campaigns"] == 0

    @pytest.mark.parametrize(("late_by", "ended"), [(0, True), (-1, False)])
    def test_a_campaign_ends_once_no_evaluation_still_possible_has_it_in_a_window(self, late_by, ended):
        """A record may be up to the future allowance (5 min) ahead of a wall-clock evaluation, so the campaigns
        engaged at T0 end when a record reaches T0 + 7 d + 5 min: not a millisecond before. Until then the budget
        stays full and the new campaign folds into `_other`."""
        config = EngineConfig(max_campaigns_per_account=2)
        last = T0 + 7 * D + config.max_future_ms + late_by
        snap = evaluate([like("a", T0, campaign="c1"), like("b", T0, campaign="c2"), like("d", last, campaign="c3")],
                        config=config)
        if ended:
            assert stream(snap).campaign_engaged_actors == {"c3": (1, 1, 1)}
        else:
            assert stream(snap).campaign_engaged_actors == {"c1": (0, 0, 0), "c2": (0, 0, 0), "_other": (1, 1, 1)}
        assert snap.overflow["campaigns"] == (0 if ended else 1)

    def test_campaign_budget_is_per_account(self):
        """Each account has its own campaign budget."""
        events = [like("a", T0, campaign="c1"), like("a", T0, campaign="c2", account="beta")]
        snap = evaluate(events, config=EngineConfig(max_campaigns_per_account=1))
        assert stream(snap).campaign_engaged_actors == {"c1": (1, 1, 1)}
        assert stream(snap, account="beta").campaign_engaged_actors == {"c2": (1, 1, 1)}
        assert snap.overflow == {"streams": 0, "campaigns": 0}

    def test_within_the_budgets_nothing_overflows(self):
        """With the defaults a small input overflows nothing."""
        assert evaluate([like("a", T0, campaign="c")]).overflow == {"streams": 0, "campaigns": 0}


def _story(seed: int) -> list[list[dict]]:
    """Batches of events of a few streams over 40 days, actors coming and going, in event-time order-ish."""
    rng = random.Random(seed)
    batches = []
    t = T0
    for _ in range(60):
        batch = []
        for _ in range(rng.randint(20, 60)):
            t += rng.choice((S, M, 10 * M, H))
            kind = rng.random()
            actor = f"u{rng.randint(0, 400)}"
            platform = rng.choice(("x", "tiktok"))
            ts = t - rng.randint(0, 4 * M)
            if kind < 0.6:
                fields = {}
                if rng.random() < 0.3:
                    fields["follower"] = rng.random() < 0.5
                if rng.random() < 0.2:
                    fields["actor_followers"] = rng.choice((10, 10_000, 10**6))
                if rng.random() < 0.2:
                    fields["campaign"] = rng.choice(("bf", "cm"))
                batch.append(ev(rng.choice(("like", "comment", "view")), actor, ts, platform=platform, **fields))
            elif kind < 0.75:
                batch.append(follow(actor, ts, platform=platform))
            elif kind < 0.85:
                batch.append(unfollow(actor, ts, platform=platform))
            else:
                batch.append(audience(rng.randint(0, 500), ts, platform=platform))
        t += rng.choice((0, 0, 12 * H, 2 * D))
        batches.append(batch)
    return batches


class TestIdleStateIsDropped:
    """State that can never count again is dropped as event time passes; exact results stay the same."""

    @pytest.mark.parametrize(("policy", "kept"), [("follower", "unfollower"), ("not_follower", "follower")])
    def test_idle_actors_are_dropped(self, policy, kept):
        """Actors who only engaged long ago leave the stream's state, and so do those whose relation says what the
        unknown-actor policy would say anyway, once their follow has left the cohort window. The others stay:
        their follower status at a later event depends on their relation."""
        config = EngineConfig(unknown_actor=policy)
        events = [like(f"u{i}", T0) for i in range(100)] + [follow("follower", T0), unfollow("unfollower", T0)]
        engine = feed(events, config)
        # The follow is in the cohort window; an unfollow that says what the policy says needs no row at all.
        assert stream(engine.snapshot(T0)).actors == (102 if policy == "follower" else 101)
        assert stream(engine.snapshot(T0)).new_followers == 1
        engine.feed([orjson.dumps(like("newcomer", T0 + 8 * D))])
        snap = stream(engine.snapshot(T0 + 8 * D))
        x = engine.accounts["acme"].streams["x"]
        assert sorted(x.rows) == sorted([kept, "newcomer"])
        assert sorted(a for a in x.actors if a is not None) == sorted(x.rows)  # no dropped id is held on to
        assert snap.engaged_actors == (1, 1, 1) and snap.new_followers == 0
        assert snap.engagements == {"like": 101, "follow": 1, "unfollow": 1}
        engine.feed([orjson.dumps(like(a, T0 + 8 * D)) for a in ("u1", "follower", "unfollower")])
        snap = stream(engine.snapshot(T0 + 8 * D))
        assert snap.engaged_actors == (4, 4, 4)
        # Counted as followers: with the default policy u1, follower and newcomer; otherwise follower alone.
        assert snap.active_followers == ((3, 3, 3) if policy == "follower" else (1, 1, 1))

    def test_state_at_the_edge_of_the_longest_window_is_kept_for_an_evaluation_still_possible(self):
        """On the wall clock a record may be up to the future allowance ahead of now, and the evaluation that
        follows is at now: a sweep set off by such a record keeps the actors, follows and campaign members whose
        bucket is the oldest that the longest window (and the cohort window, as long) still holds at now."""
        config = EngineConfig()
        now = T0 + 10 * D
        oldest_in_window = now - (config.retention_buckets - 1) * config.bucket_ms
        engine = Engine(config)
        records = [like("edge", oldest_in_window, campaign="bf"), follow("joined", oldest_in_window),
                   like("ahead", now + config.max_future_ms)]
        assert engine.feed([orjson.dumps(r) for r in records], now_ms=now) == []
        snap = stream(engine.snapshot(now))
        assert snap.engaged_actors == (0, 0, 1)  # "ahead" is past now: in no window yet
        assert snap.campaign_engaged_actors == {"bf": (0, 0, 1)}
        assert snap.new_followers == 1

    def test_a_quiet_stream_is_left_alone_until_it_has_something_to_drop(self, monkeypatch):
        """Once a sweep has dropped everything a stream could lose, later sweeps skip it (a long history of many
        streams would otherwise cost a pass over each at every sweep); a newcomer makes it due again."""
        engine = feed([like("once", T0), unfollow("kept", T0), like("kept", T0, campaign="bf")])
        quiet = engine.accounts["acme"].streams["x"]
        swept = []
        sweep = Stream.forget_idle

        def counted(s: Stream, tb: int, *args) -> None:
            if s is quiet:
                swept.append(tb)
            sweep(s, tb, *args)

        monkeypatch.setattr(Stream, "forget_idle", counted)
        for day in range(8, 30):
            engine.feed([orjson.dumps(like("elsewhere", T0 + day * D, platform="tiktok"))])
        assert len(swept) == 1
        assert len(quiet) == 1 and quiet.campaigns["bf"][0] == {}  # only the unfollower is left
        engine.feed([orjson.dumps(like("newcomer", T0 + 30 * D))])
        for day in range(31, 60):
            engine.feed([orjson.dumps(like("elsewhere", T0 + day * D, platform="tiktok"))])
        droppable = (T0 + 37 * D) // M  # the newcomer's bucket has left the 7 days looked back
        assert len(swept) > 2 and swept[-2] < droppable <= swept[-1]  # swept until the newcomer was gone
        assert len(quiet) == 1
        assert stream(engine.snapshot(T0 + 40 * D)).engaged_actors == (0, 0, 0)

    def test_follows_do_not_pile_up_on_a_stream_without_audience_snapshots(self):
        """Follows wait for a snapshot that could supersede them only while a record could still be admitted
        before them (the grace): an hour of follows without any snapshot leaves only the last few minutes'."""
        engine = Engine(EngineConfig())
        for minute in range(60):
            engine.feed([orjson.dumps(follow(f"u{minute}-{i}", T0 + minute * M)) for i in range(10)])
        gate = engine.accounts["acme"]
        pending = len(gate.streams["x"].audience.pending)
        assert pending <= 10 * (EngineConfig().grace_ms // M + 2)
        assert stream(engine.snapshot(T0 + 60 * M)).audience_followers == 600

    def test_follows_after_a_quiet_spell_are_folded_too(self):
        """A stream whose waiting follows were all folded waits again on its next follows, and they too are folded
        once the grace has passed them."""
        engine = feed([follow(f"early{i}", T0) for i in range(10)] + [like("someone", T0 + 20 * M)])
        assert engine.accounts["acme"].streams["x"].audience.pending == []
        for minute in range(30, 90):
            engine.feed([orjson.dumps(follow(f"u{minute}-{i}", T0 + minute * M)) for i in range(10)])
        pending = len(engine.accounts["acme"].streams["x"].audience.pending)
        assert pending <= 10 * (EngineConfig().grace_ms // M + 2)
        assert stream(engine.snapshot(T0 + 90 * M)).audience_followers == 610

    @pytest.mark.parametrize("policy", ["follower", "not_follower"])
    @pytest.mark.parametrize("seed", range(4))
    def test_results_equal_an_engine_that_never_forgets(self, seed, policy):
        """An engine that drops idle state gives the same snapshots as one that keeps everything."""
        forgetting = Engine(EngineConfig(unknown_actor=policy))
        keeping = Engine(EngineConfig(unknown_actor=policy))
        keeping._maybe_sweep = lambda: None  # this one never drops anything
        dropped = False
        for batch in _story(seed):
            raws = [orjson.dumps(e) for e in batch]
            forgetting.feed(raws)
            keeping.feed(raws)
            at = forgetting.event_time()
            a, b = forgetting.snapshot(at), keeping.snapshot(at)
            assert _without_actors(a) == _without_actors(b)
            dropped |= sum(s.actors for s in a.streams) < sum(s.actors for s in b.streams)
            for gate in forgetting.accounts.values():
                for s in gate.streams.values():
                    assert _members(s) == _rows_counted(s)
        assert dropped, "the story is long enough for idle actors to be dropped"


def _members(s: Stream) -> tuple[int, ...]:
    return len(s.engaged), len(s.active), len(s.influencer), len(s.new_followers), len(s.activated)


def _rows_counted(s: Stream) -> tuple[int, ...]:
    """What each windowed count should hold, from the rows: a dropped actor leaves every count it was in (values
    alone cannot tell, as its buckets are outside every window by then, but the histograms would grow for good)."""
    rows = [(s.state[r], s.eng_ts[r], s.follow_ts[r]) for r in s.rows.values()]
    return (
        sum(1 for state, _, _ in rows if state & ENGAGED),
        sum(1 for state, _, _ in rows if state & ACTIVE),
        sum(1 for state, _, _ in rows if state & INFLUENCER),
        sum(1 for state, _, _ in rows if state & FOLLOWING),
        sum(1 for state, e, f in rows if state & FOLLOWING and state & ENGAGED and e >= f),
    )


def _without_actors(snap: Snapshot) -> Snapshot:
    return dataclasses.replace(snap, streams=tuple(dataclasses.replace(s, actors=0) for s in snap.streams))


class TestTicks:
    """`feed(on_tick=...)` calls back at every multiple of `tick_ms` that event time reaches, before the record
    that reaches it: the detectors see the same states however the records are batched."""

    @staticmethod
    def ticks(batches: list[list[dict]]) -> list[tuple[int, tuple[int, ...]]]:
        engine = Engine(EngineConfig())
        seen = []
        for batch in batches:
            engine.feed([orjson.dumps(e) for e in batch], tick_ms=5 * M,
                        on_tick=lambda at: seen.append((at, TestTicks.engaged(engine.snapshot(at)))))
        return seen

    @staticmethod
    def engaged(snap: Snapshot) -> tuple[int, ...]:
        return stream(snap).engaged_actors if snap.streams else (0, 0, 0)  # no stream before its first record

    def test_a_tick_sees_the_state_before_the_record_that_reaches_it(self):
        """A record stamped exactly at a tick is applied after that tick's evaluation, in one batch or several."""
        events = [like("a", T0 + M), like("b", T0 + 5 * M), like("c", T0 + 6 * M)]
        expected = [(T0, (0, 0, 0)), (T0 + 5 * M, (1, 1, 1))]
        assert self.ticks([events]) == expected
        assert self.ticks([[e] for e in events]) == expected

    @pytest.mark.parametrize(("gap_end", "resumed_at"), [
        (T0 + 30 * D, T0 + 23 * D),  # a month: only its last week
        (T0 + 7 * D + 10 * M, T0 + 10 * M),  # the first tick due (T0 + 5 min) is more than a week before: skipped
        (T0 + 7 * D + 5 * M, T0 + 5 * M),  # exactly a week: every tick
    ])
    def test_a_long_gap_is_reported_from_its_last_week(self, gap_end, resumed_at):
        """After a gap in the records the ticks resume at most a week before the record that ends it."""
        seen = [at for at, _ in self.ticks([[like("a", T0)], [like("b", gap_end)]])]
        assert seen == [T0, *range(resumed_at, gap_end + 1, 5 * M)]


class TestCheckpoint:
    """`to_bytes` / `from_bytes` carry the whole state."""

    def test_round_trip(self):
        """A restored engine gives the same snapshot, and the same snapshots after more events."""
        batches = _story(11)
        engine = Engine(EngineConfig())
        for batch in batches[:30]:
            engine.feed([orjson.dumps(e) for e in batch])
        restored = Engine.from_bytes(EngineConfig(), engine.to_bytes())
        at = engine.event_time()
        assert restored.snapshot(at) == engine.snapshot(at)
        for batch in batches[30:]:
            raws = [orjson.dumps(e) for e in batch]
            assert [d.reason for d in restored.feed(raws)] == [d.reason for d in engine.feed(raws)]
            at = engine.event_time()
            assert restored.snapshot(at) == engine.snapshot(at)

    def test_duplicates_survive_a_restore(self):
        """Ids remembered before the checkpoint still make duplicates after it."""
        first = like("a", T0)
        engine = feed([first])
        restored = Engine.from_bytes(engine.config, engine.to_bytes())
        restored.feed([orjson.dumps(first)])
        assert restored.snapshot(T0).outcomes["duplicate"] == 1

    def test_checkpoint_written_before_the_set_of_unsettled_streams(self):
        """A checkpoint from before the engine listed the streams with follows to fold: they are found again."""
        engine = feed([follow(f"u{i}", T0) for i in range(10)])
        state = engine.__getstate__()
        del state["_unsettled"]
        restored = Engine.__new__(Engine)
        restored.__setstate__(state)
        restored.feed([orjson.dumps(like("someone", T0 + 20 * M))])
        assert restored.accounts["acme"].streams["x"].audience.pending == []

    def test_checkpoint_written_before_rows_knew_their_actor(self):
        """A checkpoint from before the streams kept each row's actor (and marked free rows) restores to an engine
        that goes on exactly like the original, dropping idle actors as before."""
        batches = _story(5)
        engine = Engine(EngineConfig())
        for batch in batches[:40]:
            engine.feed([orjson.dumps(e) for e in batch])
        data = engine.to_bytes()
        restored = Engine.from_bytes(EngineConfig(), data)
        for gate in restored.accounts.values():
            for s in gate.streams.values():  # as the older code left them
                assert s.free, "the story has dropped actors by now"
                for row in s.free:
                    s.state[row] = 1
                state = s.__getstate__()
                del state[1]["sweep_due"]
                s.__setstate__(state)
        for batch in batches[40:]:
            raws = [orjson.dumps(e) for e in batch]
            engine.feed(raws)
            restored.feed(raws)
            at = engine.event_time()
            assert restored.snapshot(at) == engine.snapshot(at)

    def test_other_settings_refused(self):
        """A checkpoint written with other settings is refused."""
        data = feed([like("a", T0)]).to_bytes()
        with pytest.raises(ValueError, match="settings"):
            Engine.from_bytes(EngineConfig(grace_ms=0), data)


class TestWallClock:
    """With `now_ms` (the wall clock), records stamped more than `max_future` ahead are dead-lettered `future`."""

    @pytest.mark.parametrize(("ahead", "reason"), [(0, None), (5 * M, None), (5 * M + 1, "future"), (D, "future")])
    def test_future_boundary(self, ahead, reason):
        """ts == now + max_future is applied; one millisecond more is `future`."""
        engine = Engine(EngineConfig())
        dead = engine.feed([orjson.dumps(like("a", T0 + ahead))], now_ms=T0)
        assert [d.reason for d in dead] == ([] if reason is None else [reason])

    def test_future_records_are_not_applied(self):
        """A future record is counted as invalid, dead-lettered, and moves no watermark."""
        engine = Engine(EngineConfig())
        engine.feed([orjson.dumps(like("a", T0))], now_ms=T0)
        engine.feed([orjson.dumps(like("b", T0 + D))], now_ms=T0)
        snap = engine.snapshot(T0)
        assert snap.outcomes == {"applied": 1, "duplicate": 0, "late": 0, "invalid": 1}
        assert snap.dead_letters == {"future": 1}
        assert snap.watermark_ms == T0
        assert stream(snap).engaged_actors == (1, 1, 1)

    def test_event_clock_has_no_future(self):
        """Without `now_ms` any valid time is applied."""
        assert feed([like("a", T0 + 1000 * D)]).applied == 1

    def test_max_future_setting(self):
        """The allowance comes from the configuration."""
        engine = Engine(EngineConfig(max_future_ms=0))
        dead = engine.feed([orjson.dumps(like("a", T0)), orjson.dumps(like("b", T0 + 1))], now_ms=T0)
        assert [(d.reason, d.index) for d in dead] == [("future", 1)]

    def test_future_record_of_a_new_account(self):
        """A future record of an account not seen before is dead-lettered and the engine carries on."""
        engine = Engine(EngineConfig())
        dead = engine.feed([orjson.dumps(like("a", T0)), orjson.dumps(like("b", T0 + D, account="beta"))], now_ms=T0)
        assert [d.reason for d in dead] == ["future"]
        engine.feed([orjson.dumps(like("c", T0 + 3 * D))], now_ms=T0 + 3 * D)
        assert engine.snapshot(T0 + 3 * D).outcomes["applied"] == 2
