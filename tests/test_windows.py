"""`processors.windows.WindowedCount`: exact distinct counts over nested sliding windows of buckets.

A window of `span` buckets evaluated at bucket `tb` holds the members at buckets `b` with `tb - span < b <= tb`.
"""

from __future__ import annotations

import random

import pytest

from processors.windows import WindowedCount


def brute(members: dict[object, int], spans: tuple[int, ...], tb: int) -> tuple[int, ...]:
    """Members per window, by looking at every member."""
    return tuple(sum(1 for b in members.values() if tb - span < b <= tb) for span in spans)


class TestWindowedCount:
    """Members sit at one bucket each; `counts(tb)` says how many lie in each window ending at bucket `tb`."""

    def test_empty(self):
        """Nothing tracked counts 0 in every window."""
        assert WindowedCount((2, 5)).counts(100) == (0, 0)

    def test_add_counts_in_every_window_that_holds_the_bucket(self):
        """A member at the evaluation bucket counts in every window."""
        w = WindowedCount((2, 5))
        w.add(100)
        assert w.counts(100) == (1, 1)
        assert len(w) == 1

    @pytest.mark.parametrize(
        ("b", "expected"),
        [
            (100, (1, 1)),
            (99, (1, 1)),  # tb - 2 + 1: the oldest bucket of the short window
            (98, (0, 1)),  # tb - 2: just outside the short window
            (96, (0, 1)),  # tb - 5 + 1: the oldest bucket of the long window
            (95, (0, 0)),  # tb - 5: just outside the long window
            (101, (0, 0)),  # ahead of the evaluation bucket
            (10**9, (0, 0)),
            (-(10**9), (0, 0)),
        ],
    )
    def test_window_edges(self, b, expected):
        """Bucket tb - span is excluded, tb - span + 1 included, and buckets after tb are not counted."""
        w = WindowedCount((2, 5))
        w.add(b)
        assert w.counts(100) == expected

    @pytest.mark.parametrize(
        ("b", "expected"), [(99, (1, 1)), (98, (0, 1)), (95, (0, 0)), (101, (0, 0))]
    )
    def test_window_edges_after_an_earlier_evaluation(self, b, expected):
        """The edges hold the same way for members added after the windows were evaluated once."""
        w = WindowedCount((2, 5))
        assert w.counts(90) == (0, 0)
        w.add(b)
        assert w.counts(100) == expected

    def test_members_ahead_are_counted_once_time_reaches_them(self):
        """A member at a bucket after the evaluation bucket starts counting when evaluation reaches its bucket."""
        w = WindowedCount((2, 5))
        w.add(103)
        w.add(100)
        assert w.counts(100) == (1, 1)
        assert w.counts(102) == (0, 1)
        assert w.counts(103) == (1, 2)
        assert w.counts(104) == (1, 2)
        assert w.counts(105) == (0, 1)

    def test_remove(self):
        """A removed member no longer counts; its bucket's other members still do."""
        w = WindowedCount((2, 5))
        w.add(100)
        w.add(100)
        w.add(97)
        w.remove(100)
        assert w.counts(100) == (1, 2)
        w.remove(97)
        assert w.counts(100) == (1, 1)
        assert len(w) == 1

    def test_remove_a_member_already_outside_every_window(self):
        """Removing a member that time has left behind changes no count."""
        w = WindowedCount((2, 5))
        w.add(10)
        w.add(100)
        assert w.counts(100) == (1, 1)
        w.remove(10)
        assert w.counts(101) == (1, 1)
        assert len(w) == 1

    @pytest.mark.parametrize("b", range(85, 112))
    def test_time_passes_while_empty(self, b):
        """After evaluations with no member at all, a member added later lands in the windows it belongs to, and
        leaves them on time."""
        w = WindowedCount((2, 5))
        w.add(60)
        assert w.counts(61) == (1, 1)
        w.remove(60)
        assert w.counts(100) == (0, 0)
        w.add(b)
        for tb in (100, 103, 110):
            assert w.counts(tb) == brute({"m": b}, (2, 5), tb)

    def test_move_forward_across_an_edge(self):
        """A member moved from an old bucket into the short window counts in both windows again."""
        w = WindowedCount((2, 5))
        w.add(96)
        assert w.counts(100) == (0, 1)
        w.move(96, 100)
        assert w.counts(100) == (1, 1)
        assert len(w) == 1

    def test_move_back_from_the_window(self):
        """A member moved from the newest bucket to one outside every window stops counting."""
        w = WindowedCount((2, 5))
        w.add(100)
        assert w.counts(100) == (1, 1)
        w.move(100, 90)
        assert w.counts(100) == (0, 0)

    def test_move_within_the_newest_band(self):
        """A member moving among buckets of the short window keeps counting once."""
        w = WindowedCount((2, 5))
        w.add(99)
        w.counts(100)
        w.move(99, 100)
        assert w.counts(100) == (1, 1)

    def test_move_from_outside_every_window_to_ahead(self):
        """A member moved from before every window to a bucket ahead counts only once time reaches it."""
        w = WindowedCount((2, 5))
        w.add(50)
        assert w.counts(100) == (0, 0)
        w.move(50, 102)
        assert w.counts(100) == (0, 0)
        assert w.counts(102) == (1, 1)

    def test_small_steps(self):
        """Evaluated bucket by bucket, a member counts for exactly `span` evaluations per window."""
        w = WindowedCount((3, 7))
        w.add(10)
        seen = [w.counts(tb) for tb in range(5, 20)]
        assert [c[0] for c in seen] == [1 if 10 <= tb < 13 else 0 for tb in range(5, 20)]
        assert [c[1] for c in seen] == [1 if 10 <= tb < 17 else 0 for tb in range(5, 20)]

    def test_huge_jump(self):
        """A jump far past every window leaves nothing counted, and later members count normally."""
        w = WindowedCount((60, 1440, 10080))
        for b in range(0, 20_000, 7):
            w.add(b)
        assert w.counts(20_000) == brute(dict(enumerate(range(0, 20_000, 7))), (60, 1440, 10080), 20_000)
        assert w.counts(10**12) == (0, 0, 0)
        w.add(10**12)
        w.add(10**12 - 100)
        assert w.counts(10**12) == (1, 2, 2)

    def test_same_evaluation_twice(self):
        """Evaluating twice at the same bucket gives the same counts."""
        w = WindowedCount((2, 5))
        for b in (95, 96, 98, 99, 100, 101):
            w.add(b)
        assert w.counts(100) == w.counts(100) == (2, 4)

    def test_single_window(self):
        """A single window (the cohort) works like any other."""
        w = WindowedCount((4,))
        w.add(7)
        assert [w.counts(tb)[0] for tb in range(5, 13)] == [0, 0, 1, 1, 1, 1, 0, 0]

    @pytest.mark.parametrize("seed", range(40))
    def test_agrees_with_brute_force(self, seed):
        """Random adds, removes (one or several at once), forward and backward moves and evaluations match a
        brute-force count."""
        rng = random.Random(seed)
        spans = tuple(sorted(rng.sample(range(1, 40), rng.randint(1, 4))))
        w = WindowedCount(spans)
        members: dict[int, int] = {}
        tb = rng.randint(-50, 50)
        next_id = 0
        for _ in range(400):
            op = rng.random()
            if op < 0.35 or not members:
                b = tb + rng.randint(-60, 10)
                members[next_id] = b
                next_id += 1
                w.add(b)
            elif op < 0.45:
                m = rng.choice(list(members))
                w.remove(members.pop(m))
            elif op < 0.5:  # a sweep: several at once, some sharing a bucket
                gone = rng.sample(list(members), rng.randint(1, min(5, len(members))))
                w.remove_all([members.pop(m) for m in gone])
            elif op < 0.75:
                m = rng.choice(list(members))
                new = members[m] + rng.randint(-30, 30) if rng.random() < 0.3 else tb + rng.randint(-3, 5)
                w.move(members[m], new)
                members[m] = new
            else:
                tb += rng.choice((0, 1, 1, 2, 5, 17, 100)) if rng.random() < 0.95 else 10**6
                assert w.counts(tb) == brute(members, spans, tb)
            assert len(w) == len(members)
        assert w.counts(tb) == brute(members, spans, tb)
