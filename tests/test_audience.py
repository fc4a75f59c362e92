"""`processors.audience.Audience`: a stream's follower count from platform snapshots and follows/unfollows.

followers = S.followers + follows - unfollows with ts > S.ts for the snapshot S of greatest ts (ties: the later
arrival), or follows - unfollows without a snapshot; floored at 0 (contract/metrics.md).
"""

from __future__ import annotations

import random

import pytest

from processors.audience import Audience

FOLLOW, UNFOLLOW = 1, -1


def brute(events: list[tuple]) -> int:
    """The contract's formula over every event kept: ("snap", ts, n) or ("follow", ts, ±1), in arrival order."""
    snap = None
    for e in events:
        if e[0] == "snap" and (snap is None or e[1] >= snap[1]):
            snap = e
    if snap is None:
        return max(0, sum(e[2] for e in events if e[0] == "follow"))
    return max(0, snap[2] + sum(e[2] for e in events if e[0] == "follow" and e[1] > snap[1]))


class TestAudience:
    """Snapshots supersede the follows they include; follows after the newest snapshot are added to it."""

    def test_nothing_known(self):
        """Without snapshots or follows the audience is 0."""
        assert Audience().followers() == 0

    def test_follows_without_a_snapshot(self):
        """Before any snapshot the audience is the net follows."""
        a = Audience()
        for ts in (1, 2, 3):
            a.follow(ts, FOLLOW)
        a.follow(4, UNFOLLOW)
        assert a.followers() == 2

    def test_snapshot_then_follows_after_it(self):
        """Follows and unfollows after the snapshot's ts move the count from the snapshot's value."""
        a = Audience()
        a.snapshot(100, 50)
        a.follow(101, FOLLOW)
        a.follow(102, FOLLOW)
        a.follow(103, UNFOLLOW)
        assert a.followers() == 51

    def test_follows_at_or_before_the_snapshot_are_included_in_it(self):
        """A follow with ts ≤ the snapshot's ts is already in the snapshot, whatever the arrival order."""
        a = Audience()
        a.follow(90, FOLLOW)
        a.snapshot(100, 50)
        a.follow(100, FOLLOW)
        a.follow(99, UNFOLLOW)
        assert a.followers() == 50

    def test_newer_snapshot_supersedes_earlier_follows(self):
        """A newer snapshot replaces the older one and the follows between them."""
        a = Audience()
        a.snapshot(100, 50)
        a.follow(110, FOLLOW)
        a.follow(130, FOLLOW)
        a.snapshot(120, 70)
        assert a.followers() == 71

    def test_older_snapshot_is_ignored(self):
        """A snapshot older than the current one changes nothing."""
        a = Audience()
        a.snapshot(100, 50)
        a.follow(101, FOLLOW)
        a.snapshot(99, 1_000)
        assert a.followers() == 51

    def test_tie_later_arrival_wins(self):
        """Of two snapshots with the same ts, the one that arrived later counts."""
        a = Audience()
        a.snapshot(100, 50)
        a.follow(101, FOLLOW)
        a.snapshot(100, 40)
        assert a.followers() == 41
        a.snapshot(100, 60)
        assert a.followers() == 61

    @pytest.mark.parametrize(
        ("snapshot", "unfollows", "expected"), [(0, 3, 0), (2, 3, 0), (3, 3, 0), (4, 3, 1), (None, 2, 0)]
    )
    def test_floor_at_zero(self, snapshot, unfollows, expected):
        """More unfollows than followers give 0, never a negative count."""
        a = Audience()
        if snapshot is not None:
            a.snapshot(0, snapshot)
        for ts in range(1, unfollows + 1):
            a.follow(ts, UNFOLLOW)
        assert a.followers() == expected

    def test_floor_applies_to_the_total_only(self):
        """The floor is taken on the final sum: a negative stretch is made up by later follows."""
        a = Audience()
        a.snapshot(0, 1)
        for ts in (1, 2, 3):
            a.follow(ts, UNFOLLOW)
        for ts in (4, 5, 6):
            a.follow(ts, FOLLOW)
        assert a.followers() == 1

    def test_settle_never_changes_followers(self):
        """Folding old follows with `settle` leaves the count as it was."""
        a = Audience()
        a.snapshot(10, 5)
        for ts in (11, 12, 13, 20, 30):
            a.follow(ts, FOLLOW)
        a.follow(25, UNFOLLOW)
        before = a.followers()
        for cut in (0, 12, 13, 26, 10**6):
            a.settle(cut)
            assert a.followers() == before

    def test_snapshot_after_settle_supersedes_settled_follows(self):
        """A snapshot newer than settled follows replaces them, as if they had never been folded."""
        a = Audience()
        a.snapshot(10, 5)
        a.follow(11, FOLLOW)
        a.follow(12, FOLLOW)
        a.follow(40, FOLLOW)
        a.settle(20)  # follows before 20: no admissible snapshot can fall before them any more
        a.snapshot(30, 100)
        assert a.followers() == 101

    @pytest.mark.parametrize("seed", range(30))
    def test_agrees_with_brute_force(self, seed):
        """Random snapshots, follows and settles (behind the admissible edge) match the formula over all events."""
        rng = random.Random(seed)
        a = Audience()
        events: list[tuple] = []
        watermark, grace = 0, 20
        for _ in range(300):
            # Only records that are not late reach the audience: ts ≥ watermark - grace.
            ts = watermark + rng.randint(-grace, 10)
            watermark = max(watermark, ts)
            r = rng.random()
            if r < 0.15:
                n = rng.randint(0, 30)
                a.snapshot(ts, n)
                events.append(("snap", ts, n))
            elif r < 0.9:
                delta = rng.choice((FOLLOW, FOLLOW, UNFOLLOW))
                a.follow(ts, delta)
                events.append(("follow", ts, delta))
            else:
                a.settle(watermark - grace)
            assert a.followers() == brute(events)
