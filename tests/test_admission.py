"""Admission (contract/metrics.md, "Processing order of one record"): late, then duplicate, then applied.

The account watermark is the largest applied `ts` of the account on any platform; `ts < watermark - grace` is
late. Among records that are not late, an (account, id) applied before is a duplicate while the earlier record's
`ts` is ≥ watermark - dedup horizon.
"""

from __future__ import annotations

import random

import orjson
import pytest

from processors.config import EngineConfig
from processors.engine import Engine

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
S, M, H = 1_000, 60_000, 3_600_000
GRACE, HORIZON = 5 * M, H  # the defaults


def ev(ident: str, ts: int, account: str = "acme", platform: str = "x", **fields) -> bytes:
    """A like by bob (unless `fields` say otherwise) as one wire record."""
    rec = {"id": ident, "ts": ts, "platform": platform, "account": account, "type": "like", "actor": "bob"}
    rec.update(fields)
    return orjson.dumps(rec)


def outcome(engine: Engine, raw: bytes) -> str:
    """Feed one record and say what became of it: applied, duplicate, late, or the invalid reason."""
    applied, duplicates = engine.applied, engine.duplicates
    dead = engine.feed([raw])
    if dead:
        return dead[0].reason
    if engine.duplicates == duplicates + 1:
        return "duplicate"
    assert engine.applied == applied + 1
    return "applied"


def outcomes(records: list[bytes], config: EngineConfig | None = None) -> list[str]:
    engine = Engine(config or EngineConfig())
    return [outcome(engine, r) for r in records]


class TestLateness:
    """A record more than the grace behind its account's watermark is late: dead-lettered, never applied."""

    @pytest.mark.parametrize(
        ("behind", "expected"),
        [
            (0, "applied"),
            (1, "applied"),
            (GRACE - 1, "applied"),
            (GRACE, "applied"),  # ts == watermark - grace is not late
            (GRACE + 1, "late"),  # one millisecond less is
            (10 * H, "late"),
        ],
    )
    def test_grace_boundary(self, behind, expected):
        """`ts == watermark - grace` is admitted, `ts == watermark - grace - 1` is late."""
        w = T0 + H
        assert outcomes([ev("a", w), ev("b", w - behind)]) == ["applied", expected]

    @pytest.mark.parametrize(("behind", "expected"), [(0, "applied"), (1, "late")])
    def test_zero_grace(self, behind, expected):
        """With no grace, anything older than the watermark is late, the watermark itself is not."""
        cfg = EngineConfig(grace_ms=0, dedup_horizon_ms=0)
        assert outcomes([ev("a", T0), ev("b", T0 - behind)], cfg) == ["applied", expected]

    def test_first_record_of_an_account_is_never_late(self):
        """An account without applied records has no watermark: its first record is admitted whatever its time."""
        assert outcomes([ev("a", T0 + 100 * H), ev("b", T0, account="beta")]) == ["applied", "applied"]

    def test_watermark_is_per_account_across_platforms(self):
        """Another platform of the same account shares the watermark; another account does not."""
        w = T0 + H
        got = outcomes([
            ev("a", w, platform="x"),
            ev("b", w - GRACE - 1, platform="instagram"),
            ev("c", w - GRACE - 1, account="beta", platform="x"),
        ])
        assert got == ["applied", "late", "applied"]

    def test_watermark_never_goes_back(self):
        """An applied record older than the watermark leaves the watermark where it was."""
        w = T0 + H
        got = outcomes([ev("a", w), ev("b", w - GRACE), ev("c", w - GRACE - 1)])
        assert got == ["applied", "applied", "late"]

    def test_late_records_do_not_move_the_watermark(self):
        """Only applied records move the watermark: after a late one, lateness is still judged from the old one."""
        w = T0 + H
        got = outcomes([ev("a", w), ev("b", w - 2 * GRACE), ev("c", w - GRACE)])
        assert got == ["applied", "late", "applied"]

    def test_invalid_records_do_not_move_the_watermark(self):
        """An invalid record, even with a valid later time, does not make later records late."""
        w = T0 + H
        got = outcomes([ev("a", w), ev("b", w + 10 * H, actor=""), ev("c", w - GRACE)])
        assert got == ["applied", "invalid_actor", "applied"]

    def test_late_is_dead_lettered_with_its_bytes(self):
        """A late record is dead-lettered as `late` with its original bytes and counted as outcome `late`."""
        engine = Engine(EngineConfig())
        late = ev("b", T0 - GRACE - 1)
        dead = engine.feed([ev("a", T0), late])
        assert [(d.reason, d.raw, d.index) for d in dead] == [("late", late, 1)]
        snap = engine.snapshot(T0)
        assert snap.outcomes == {"applied": 1, "duplicate": 0, "late": 1, "invalid": 0}
        assert snap.dead_letters == {"late": 1}

    def test_late_record_is_not_applied(self):
        """A late like does not count its actor."""
        engine = Engine(EngineConfig())
        engine.feed([ev("a", T0), ev("b", T0 - GRACE - 1, actor="dave")])
        assert engine.snapshot(T0).streams[0].engaged_actors == (1, 1, 1)


class TestDeduplication:
    """(account, id) applied before, and still within the dedup horizon, makes a record a duplicate."""

    def test_same_id_twice(self):
        """The second record with an applied id is a duplicate: counted, not dead-lettered, not applied."""
        engine = Engine(EngineConfig())
        dead = engine.feed([ev("a", T0), ev("a", T0, actor="carol")])
        assert dead == []
        snap = engine.snapshot(T0)
        assert snap.outcomes == {"applied": 1, "duplicate": 1, "late": 0, "invalid": 0}
        assert snap.streams[0].engaged_actors == (1, 1, 1)
        assert snap.dead_letters == {}

    def test_duplicate_need_not_have_the_same_content(self):
        """The id alone decides: a record with an applied id but another time and type is a duplicate."""
        got = outcomes([ev("a", T0), ev("a", T0 + M, type="follow", actor="zed")])
        assert got == ["applied", "duplicate"]

    def test_scope_is_the_account_across_platforms(self):
        """An id applied on one platform makes the same id on another platform of the account a duplicate."""
        got = outcomes([ev("a", T0, platform="x"), ev("a", T0, platform="tiktok"), ev("a", T0, account="beta")])
        assert got == ["applied", "duplicate", "applied"]

    def test_late_wins_over_duplicate(self):
        """A late record with an applied id is late, not a duplicate."""
        w = T0 + H
        got = outcomes([ev("a", w - GRACE), ev("b", w), ev("a", w - GRACE - 1)])
        assert got == ["applied", "applied", "late"]

    def test_late_records_are_not_remembered(self):
        """The id of a late record is free: a later record with it that is not late is applied."""
        w = T0 + H
        got = outcomes([ev("b", w), ev("a", w - GRACE - 1), ev("a", w)])
        assert got == ["applied", "late", "applied"]

    def test_invalid_records_are_not_remembered(self):
        """The id of an invalid record is free: a valid record with it is applied."""
        assert outcomes([ev("a", T0, follower="yes"), ev("a", T0)]) == ["invalid_follower", "applied"]

    def test_duplicates_are_not_remembered_anew(self):
        """A duplicate does not refresh the remembered time: the id expires from its first application."""
        w = T0 + H
        got = outcomes([ev("a", T0), ev("a", w - 1), ev("b", w + 1), ev("a", w + 1)], EngineConfig(grace_ms=H))
        assert got == ["applied", "duplicate", "applied", "applied"]

    @pytest.mark.parametrize(
        ("age", "expected"),
        [
            (0, "duplicate"),
            (HORIZON - 1, "duplicate"),
            (HORIZON, "duplicate"),  # ts == watermark - horizon is still remembered
            (HORIZON + 1, "applied"),  # one millisecond older is forgotten
            (50 * HORIZON, "applied"),
        ],
    )
    def test_horizon_boundary(self, age, expected):
        """An id is remembered while its ts ≥ watermark - horizon; after that a record reusing it is applied."""
        w = T0 + 100 * H
        got = outcomes([ev("a", w - age), ev("step", w), ev("a", w)])
        assert got == ["applied", "applied", expected]

    def test_reused_id_is_remembered_again(self):
        """An id reused after the horizon is applied, and then is a duplicate again."""
        w = T0 + 2 * H
        assert outcomes([ev("a", T0), ev("b", w), ev("a", w), ev("a", w)]) == [
            "applied", "applied", "applied", "duplicate"]

    @pytest.mark.parametrize(("grace", "horizon"), [(5 * M, 5 * M), (0, 0), (5 * M, 2 * H)])
    def test_horizon_setting(self, grace, horizon):
        """The configured horizon decides, including a horizon equal to the grace."""
        cfg = EngineConfig(grace_ms=grace, dedup_horizon_ms=horizon)
        w = T0 + 10 * H
        got = outcomes([ev("out", w - horizon - 1), ev("in", w - horizon), ev("step", w)]
                       + [ev("in", w), ev("out", w)], cfg)
        # "in" and "out" are applied before the watermark reaches w, then reused at w.
        assert got == ["applied", "applied", "applied", "duplicate", "applied"]

    def test_many_rotations_keep_ids_within_the_horizon(self):
        """After dozens of id-generation rotations, an id applied within the horizon is still a duplicate."""
        engine = Engine(EngineConfig(grace_ms=10 * S, dedup_horizon_ms=M))
        ts = T0
        for step in range(3_000):  # 10 s steps: 500 minutes, 500 horizons
            ts = T0 + step * 10 * S
            assert outcome(engine, ev(f"n{step}", ts)) == "applied"
            if step >= 6:
                # Applied exactly one horizon ago: still remembered.
                assert outcome(engine, ev(f"n{step - 6}", ts)) == "duplicate"
            if step >= 7:
                # Applied one horizon and 10 s ago: forgotten, so applied again (and remembered again).
                assert outcome(engine, ev(f"n{step - 7}", ts)) == "applied"
        assert engine.duplicates == 3_000 - 6

    @pytest.mark.parametrize("seed", range(20))
    def test_agrees_with_a_model(self, seed):
        """Random times and a small pool of ids give the outcomes of a plain dict-of-everything model."""
        rng = random.Random(seed)
        grace, horizon = rng.choice(((0, 0), (5, 5), (5, 40), (30, 60), (1, 1000)))
        engine = Engine(EngineConfig(grace_ms=grace, dedup_horizon_ms=horizon))
        seen: dict[tuple[str, str], int] = {}
        watermarks: dict[str, int] = {}
        wm_global = T0
        for _ in range(1_500):
            account = rng.choice(("a", "b"))
            ident = f"i{rng.randint(0, 15)}"
            wm_global += rng.choice((0, 1, 3, 10, 50))
            ts = wm_global - rng.randint(0, 2 * grace + 20)
            wm = watermarks.get(account)
            if wm is not None and ts < wm - grace:
                expected = "late"
            elif wm is not None and (account, ident) in seen and seen[account, ident] >= wm - horizon:
                expected = "duplicate"
            else:
                expected = "applied"
                seen[account, ident] = ts
                watermarks[account] = ts if wm is None else max(wm, ts)
            assert outcome(engine, ev(ident, ts, account=account)) == expected
