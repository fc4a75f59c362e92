"""Wire format v1 (contract/events.md): which records are valid, and the reason given for each one that is not.

Every rule is checked on a fresh engine (the thorough path, `Validator.check`) and again on an engine that has
already applied valid records of the same account, platform, campaign and timestamp minute, so that the record
takes the engine's memoised fast path: both must give the same verdict.
"""

from __future__ import annotations

import json

import orjson
import pytest

from processors.config import EngineConfig
from processors.engine import Engine
from processors.wire import MAX_RECORD_BYTES, Validator, decode_beyond_double, rfc3339_to_ms

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
ABSENT = object()  # a field left out of the record (None writes an explicit JSON null)
INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)

LIKE = {"id": "e1", "ts": "2026-01-01T00:00:30Z", "platform": "x", "account": "acme", "type": "like", "actor": "bob"}
AUDIENCE = {"id": "e1", "ts": "2026-01-01T00:00:30Z", "platform": "x", "account": "acme", "type": "audience",
            "followers": 10}


def record(base: dict = LIKE, **changes) -> bytes:
    """`base` with `changes` applied (ABSENT removes a field), as one JSON record."""
    merged = dict(base, **changes)
    return json.dumps({k: v for k, v in merged.items() if v is not ABSENT}, ensure_ascii=False,
                      separators=(",", ":")).encode()


def padded(size: int) -> bytes:
    """A valid like padded by an unknown field to exactly `size` bytes."""
    bare = len(record(pad=""))
    return record(pad="p" * (size - bare))


def decoded(raw: bytes) -> object:
    """The record's JSON value, as the engine decodes it (orjson refuses numbers beyond a double)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return decode_beyond_double(raw)


# Records that warm an engine up: after them, the account, the platform, the campaign `bf` and the minute
# 2026-01-01T00:00 are all remembered as valid, so a like of that stream takes the fast path.
WARM_UP = [
    record(id="w1", ts="2026-01-01T00:00:00Z", campaign="bf", actor_followers=5, follower=True),
    record(id="w2", ts="2026-01-01T00:00:10.500Z"),
    record(id="w3", ts=T0 + 20_000, type="follow", actor="carol"),
    record(AUDIENCE, id="w4", ts="2026-01-01T00:00:00Z"),
]


def verdict(raw: bytes, warm: bool) -> str:
    """The outcome of `raw` as the second batch of an engine: its dead-letter reason, or `applied`."""
    engine = Engine(EngineConfig())
    if warm:
        assert engine.feed(WARM_UP) == []
    before = engine.applied
    dead = engine.feed([raw])
    if dead:
        assert len(dead) == 1 and dead[0].raw == raw and dead[0].index == 0
        return dead[0].reason
    assert engine.applied == before + 1
    return "applied"


# (record, reason): each breaks exactly one rule and must be dead-lettered with exactly that reason.
INVALID = [
    # -- the record as a whole
    pytest.param(b'{"id": "e1", "ts": ', "bad_json", id="truncated JSON"),
    pytest.param(record() + b" x", "bad_json", id="trailing garbage"),
    pytest.param(record()[:-1] + b',"actor_followers":NaN}', "bad_json", id="NaN is not JSON"),
    pytest.param(record()[:-1] + b',"note":"\\ud800"}', "bad_json", id="lone surrogate escape"),
    pytest.param(record()[:-1] + b',"n":1e400,"note":"\\udc00"}', "bad_json",
                 id="lone surrogate beside a number beyond a double"),
    pytest.param(record()[:-1] + b',"n":[1e400,-Infinity]}', "bad_json", id="Infinity beside a number beyond a double"),
    pytest.param(record()[:-1] + b',"n":1e400} x', "bad_json", id="garbage after a number beyond a double"),
    pytest.param(b"\xef\xbb\xbf" + record(), "bad_json", id="UTF-8 byte order mark"),
    pytest.param(record(actor="b?b").replace(b"?", b"\xff")[:-1] + b',"n":1e400}', "not_utf8",
                 id="invalid UTF-8 beside a number beyond a double"),
    pytest.param(b"1e400", "not_object", id="a number beyond a double"),
    pytest.param(record(actor="b?b").replace(b"?", b"\xff"), "not_utf8", id="invalid UTF-8 byte"),
    pytest.param(record(actor="b?b").replace(b"?", b"\xc3"), "not_utf8", id="truncated UTF-8 sequence"),
    # The fast path's decoder skips unknown fields without reading their UTF-8: the engine must check it.
    pytest.param(record()[:-1] + b',"note":"\xff"}', "not_utf8", id="invalid UTF-8 in an unknown field"),
    pytest.param(record()[:-1] + b',"\xff":1}', "not_utf8", id="invalid UTF-8 in an unknown key"),
    pytest.param(record()[:-1] + b',"note":"\xed\xa0\x80"}', "not_utf8",
                 id="UTF-8-encoded surrogate in an unknown field"),
    pytest.param(record()[:-1] + b',"n":' + b"[" * 1024 + b"]" * 1024 + b"}", "bad_json",
                 id="unknown field nested beyond 1024 levels"),
    pytest.param(b'[{"id": "e1"}]', "not_object", id="array"),
    pytest.param(b'"like"', "not_object", id="string"),
    pytest.param(b"42", "not_object", id="number"),
    pytest.param(b"null", "not_object", id="null"),
    pytest.param(padded(MAX_RECORD_BYTES + 1), "too_large", id="64 KiB + 1 byte"),
    # -- required fields
    pytest.param(record(type=ABSENT), "missing_type", id="no type"),
    pytest.param(record(id=ABSENT), "missing_id", id="no id"),
    pytest.param(record(ts=ABSENT), "missing_ts", id="no ts"),
    pytest.param(record(platform=ABSENT), "missing_platform", id="no platform"),
    pytest.param(record(account=ABSENT), "missing_account", id="no account"),
    pytest.param(record(actor=ABSENT), "missing_actor", id="like without actor"),
    pytest.param(record(type="follow", actor=ABSENT), "missing_actor", id="follow without actor"),
    pytest.param(record(type="view", actor=None), "missing_actor", id="view with null actor"),
    pytest.param(record(AUDIENCE, followers=ABSENT), "missing_followers", id="audience without followers"),
    pytest.param(record(AUDIENCE, followers=None), "missing_followers", id="audience with null followers"),
    pytest.param(record(id=None), "missing_id", id="null id"),
    # -- type
    pytest.param(record(type="poke"), "unknown_type", id="unknown type"),
    pytest.param(record(type="Like"), "unknown_type", id="type in upper case"),
    pytest.param(record(type="like\n"), "unknown_type", id="type with trailing newline"),
    pytest.param(record(type=3), "invalid_type", id="type as number"),
    pytest.param(record(type=["like"]), "invalid_type", id="type as list"),
    # -- id and actor: strings of 1 to 128 characters
    pytest.param(record(id=""), "invalid_id", id="empty id"),
    pytest.param(record(id="i" * 129), "invalid_id", id="id of 129 chars"),
    pytest.param(record(id=7), "invalid_id", id="id as number"),
    pytest.param(record(actor=""), "invalid_actor", id="empty actor"),
    pytest.param(record(actor="a" * 129), "invalid_actor", id="actor of 129 chars"),
    pytest.param(record(actor=42), "invalid_actor", id="actor as number"),
    pytest.param(record(AUDIENCE, actor="a" * 200), "invalid_actor", id="audience with an actor of 200 chars"),
    # -- ts
    pytest.param(record(ts="2026-01-01T00:00:30"), "invalid_ts", id="ts without offset"),
    pytest.param(record(ts="2026-01-01"), "invalid_ts", id="ts date only"),
    pytest.param(record(ts="2026-01-01T00:00Z"), "invalid_ts", id="ts without seconds"),
    pytest.param(record(ts="2026-1-01T00:00:30Z"), "invalid_ts", id="ts one-digit month"),
    pytest.param(record(ts="2026-01-01T00:00:30.Z"), "invalid_ts", id="ts empty fraction"),
    pytest.param(record(ts="2026-01-01T00:00:30+0100"), "invalid_ts", id="ts offset without colon"),
    pytest.param(record(ts="2026-01-01T00:00:30Z "), "invalid_ts", id="ts trailing space"),
    pytest.param(record(ts="2026-01-01T00:00:30Z\n"), "invalid_ts", id="ts trailing newline"),
    pytest.param(record(ts="2026-02-30T00:00:00Z"), "invalid_ts", id="Feb 30"),
    pytest.param(record(ts="2025-02-29T00:00:00Z"), "invalid_ts", id="Feb 29 of a common year"),
    pytest.param(record(ts="2026-13-01T00:00:00Z"), "invalid_ts", id="month 13"),
    pytest.param(record(ts="2026-00-10T00:00:00Z"), "invalid_ts", id="month 0"),
    pytest.param(record(ts="2026-01-01T24:00:00Z"), "invalid_ts", id="hour 24"),
    pytest.param(record(ts="2026-01-01T00:60:00Z"), "invalid_ts", id="minute 60"),
    pytest.param(record(ts="2026-01-01T00:00:61Z"), "invalid_ts", id="second 61"),
    pytest.param(record(ts="2026-01-01T00:00:00+24:00"), "invalid_ts", id="offset hour 24"),
    pytest.param(record(ts="2026-01-01T00:00:00+05:60"), "invalid_ts", id="offset minute 60"),
    pytest.param(record(ts="not a time"), "invalid_ts", id="ts free text"),
    pytest.param(record(ts=1.5), "invalid_ts", id="ts as float"),
    pytest.param(record(ts=True), "invalid_ts", id="ts as boolean"),
    pytest.param(record(ts=[T0]), "invalid_ts", id="ts as list"),
    pytest.param(record()[:-1] + b',"ts":1e400}', "invalid_ts", id="ts beyond a double"),
    pytest.param(record(ts=INT64_MAX + 1), "invalid_ts", id="ts 2^63"),
    pytest.param(record(ts=(1 << 64) - 1), "invalid_ts", id="ts 2^64-1"),
    pytest.param(record()[:-1] + b',"ts":18446744073709551616}', "invalid_ts", id="ts 2^64 (a float for orjson)"),
    pytest.param(record()[:-1] + b',"ts":-9223372036854775809}', "invalid_ts", id="ts -2^63-1 (a float for orjson)"),
    pytest.param(record()[:-1] + b',"ts":' + b"9" * 5000 + b"}", "invalid_ts", id="ts of 5000 digits"),
    # -- platform ^[a-z0-9][a-z0-9_-]{0,31}$
    pytest.param(record(platform=""), "invalid_platform", id="empty platform"),
    pytest.param(record(platform="X"), "invalid_platform", id="platform in upper case"),
    pytest.param(record(platform="x\n"), "invalid_platform", id="platform with trailing newline"),
    pytest.param(record(platform="-x"), "invalid_platform", id="platform starting with -"),
    pytest.param(record(platform="p" * 33), "invalid_platform", id="platform of 33 chars"),
    pytest.param(record(platform="you tube"), "invalid_platform", id="platform with space"),
    pytest.param(record(platform=1), "invalid_platform", id="platform as number"),
    # -- account ^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$
    pytest.param(record(account=""), "invalid_account", id="empty account"),
    pytest.param(record(account="acme\n"), "invalid_account", id="account with trailing newline"),
    pytest.param(record(account="_acme"), "invalid_account", id="account starting with _"),
    pytest.param(record(account="a" * 129), "invalid_account", id="account of 129 chars"),
    pytest.param(record(account="ac/me"), "invalid_account", id="account with slash"),
    pytest.param(record(account=True), "invalid_account", id="account as boolean"),
    # -- follower: boolean
    pytest.param(record(follower="yes"), "invalid_follower", id="follower as string"),
    pytest.param(record(follower=1), "invalid_follower", id="follower as 1"),
    pytest.param(record(follower=0), "invalid_follower", id="follower as 0"),
    # -- actor_followers: integer >= 0, not boolean, within int64
    pytest.param(record(actor_followers=True), "invalid_actor_followers", id="actor_followers as boolean"),
    pytest.param(record(actor_followers=-1), "invalid_actor_followers", id="negative actor_followers"),
    pytest.param(record(actor_followers=1.5), "invalid_actor_followers", id="actor_followers as float"),
    pytest.param(record(actor_followers=10.0), "invalid_actor_followers", id="actor_followers as 10.0"),
    pytest.param(record(actor_followers="10"), "invalid_actor_followers", id="actor_followers as string"),
    pytest.param(record(actor_followers=INT64_MAX + 1), "invalid_actor_followers", id="actor_followers 2^63"),
    pytest.param(record(actor_followers=5)[:-1] + b',"actor_followers":true}', "invalid_actor_followers",
                 id="actor_followers repeated, the last invalid"),
    pytest.param(record()[:-1] + b',"actor_followers":18446744073709551616}', "invalid_actor_followers",
                 id="actor_followers 2^64 (a float for orjson)"),
    pytest.param(record()[:-1] + b',"actor_followers":-1e400}', "invalid_actor_followers",
                 id="actor_followers beyond a double"),
    pytest.param(record()[:-1] + b',"actor_followers":-' + b"9" * 5000 + b"}", "invalid_actor_followers",
                 id="actor_followers of minus 5000 digits"),
    # -- campaign ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$
    pytest.param(record(campaign=""), "invalid_campaign", id="empty campaign"),
    pytest.param(record(campaign="bf\n"), "invalid_campaign", id="campaign with trailing newline"),
    pytest.param(record(campaign="_other"), "invalid_campaign", id="campaign starting with _"),
    pytest.param(record(campaign="c" * 65), "invalid_campaign", id="campaign of 65 chars"),
    pytest.param(record(campaign="b@f"), "invalid_campaign", id="campaign with @"),
    pytest.param(record(campaign=12), "invalid_campaign", id="campaign as number"),
    # -- followers: integer >= 0 (required on audience, checked wherever it appears)
    pytest.param(record(AUDIENCE, followers=-1), "invalid_followers", id="negative followers"),
    pytest.param(record(AUDIENCE, followers=True), "invalid_followers", id="followers as boolean"),
    pytest.param(record(AUDIENCE, followers="100"), "invalid_followers", id="followers as string"),
    pytest.param(record(AUDIENCE, followers=100.0), "invalid_followers", id="followers as float"),
    pytest.param(record(AUDIENCE, followers=INT64_MAX + 1), "invalid_followers", id="followers 2^63"),
    pytest.param(record(AUDIENCE)[:-1] + b',"followers":1e400}', "invalid_followers", id="followers beyond a double"),
    pytest.param(record(followers="many"), "invalid_followers", id="like with followers as string"),
    pytest.param(record(followers=-5), "invalid_followers", id="like with negative followers"),
]

# (record, applied ts in epoch ms): edge cases that are valid.
VALID = [
    pytest.param(record(), T0 + 30_000, id="plain like"),
    pytest.param(record(ts=T0 + 30_000), T0 + 30_000, id="ts as epoch ms"),
    pytest.param(record(ts=0), 0, id="ts epoch 0"),
    pytest.param(record(ts=-1), -1, id="ts before the epoch"),
    pytest.param(record(ts=INT64_MAX), INT64_MAX, id="ts 2^63-1"),
    pytest.param(record(ts="2026-01-01T05:30:30+05:30"), T0 + 30_000, id="offset +05:30"),
    pytest.param(record(ts="2025-12-31T19:00:30-05:00"), T0 + 30_000, id="offset -05:00"),
    pytest.param(record(ts="2026-01-01T00:00:30+00:00"), T0 + 30_000, id="offset +00:00"),
    pytest.param(record(ts="2026-01-01t00:00:30z"), T0 + 30_000, id="lower-case t and z"),
    pytest.param(record(ts="2024-02-29T00:00:00Z"), 1_709_164_800_000, id="Feb 29 of a leap year"),
    pytest.param(record(id="i" * 128), T0 + 30_000, id="id of 128 chars"),
    pytest.param(record(actor="a" * 128), T0 + 30_000, id="actor of 128 chars"),
    pytest.param(record(account="A" * 128), T0 + 30_000, id="account of 128 chars"),
    pytest.param(record(account="a.b:c@d-e_f"), T0 + 30_000, id="account with . : @ - _"),
    pytest.param(record(platform="p" * 32), T0 + 30_000, id="platform of 32 chars"),
    pytest.param(record(platform="0x_y-z"), T0 + 30_000, id="platform with digits _ -"),
    pytest.param(record(campaign="c" * 64), T0 + 30_000, id="campaign of 64 chars"),
    pytest.param(record(campaign="Q4.bf:v-2_a"), T0 + 30_000, id="campaign with . : - _"),
    pytest.param(record(id="ünï ✓", actor="😀"), T0 + 30_000, id="non-ASCII id and actor"),
    pytest.param(record(follower=None, actor_followers=None, campaign=None), T0 + 30_000, id="nulls in optionals"),
    pytest.param(record(extra={"nested": [1, 2]}, v=2, flag=True), T0 + 30_000, id="unknown fields"),
    pytest.param(record(huge=1 << 70), T0 + 30_000, id="unknown field beyond 64 bits"),
    pytest.param(record(note="ünï ✓ 😀"), T0 + 30_000, id="non-ASCII unknown field"),
    pytest.param(record()[:-1] + b',"n":' + b"[" * 1023 + b"]" * 1023 + b"}", T0 + 30_000,
                 id="unknown field nested 1023 levels"),
    pytest.param(record(actor_followers=True)[:-1] + b',"actor_followers":5}', T0 + 30_000,
                 id="actor_followers repeated, the last valid"),
    # JSON sets no bound on numbers; orjson refuses those beyond a double, Python's parser does not.
    pytest.param(record()[:-1] + b',"n":1e400,"m":{"k":[-1E+999]}}', T0 + 30_000, id="unknown field beyond a double"),
    pytest.param(record()[:-1] + b',"n":[' + b"9" * 5000 + b",-" + b"9" * 5000 + b"]}", T0 + 30_000,
                 id="unknown field of 5000 digits"),
    pytest.param(record(actor_followers=0), T0 + 30_000, id="actor_followers 0"),
    pytest.param(record(actor_followers=INT64_MAX), T0 + 30_000, id="actor_followers 2^63-1"),
    pytest.param(record(follower=False), T0 + 30_000, id="follower false"),
    pytest.param(record(followers=3), T0 + 30_000, id="like with a valid followers field"),
    pytest.param(record(AUDIENCE), T0 + 30_000, id="audience without actor"),
    pytest.param(record(AUDIENCE, followers=0), T0 + 30_000, id="audience of 0"),
    pytest.param(record(AUDIENCE, actor="ops"), T0 + 30_000, id="audience with an actor"),
    pytest.param(record(type="view"), T0 + 30_000, id="view"),
    pytest.param(padded(MAX_RECORD_BYTES), T0 + 30_000, id="exactly 64 KiB"),
    pytest.param(b"  " + record() + b"\r", T0 + 30_000, id="JSON whitespace around the object"),
]


class TestInvalidRecords:
    """Each class of invalid record is dead-lettered with its own machine-readable reason."""

    @pytest.mark.parametrize(("raw", "reason"), INVALID)
    def test_reason_on_a_fresh_engine(self, raw, reason):
        """An invalid record is dead-lettered, with its original bytes, under the reason of its class."""
        assert verdict(raw, warm=False) == reason

    @pytest.mark.parametrize(("raw", "reason"), INVALID)
    def test_same_reason_after_valid_records_of_the_stream(self, raw, reason):
        """The fast path taken after valid records of the same stream and minute gives the first sighting's reason."""
        assert verdict(raw, warm=True) == reason

    @pytest.mark.parametrize(("raw", "reason"), INVALID)
    def test_counted_as_invalid_and_by_reason(self, raw, reason):
        """An invalid record counts once as outcome `invalid` and once under its dead-letter reason."""
        engine = Engine(EngineConfig())
        engine.feed([raw])
        snap = engine.snapshot(T0)
        assert snap.outcomes == {"applied": 0, "duplicate": 0, "late": 0, "invalid": 1}
        assert snap.dead_letters == {reason: 1}
        assert snap.streams == ()

    def test_the_run_goes_on_after_invalid_records(self):
        """Invalid records between valid ones are skipped: every valid record is still applied."""
        lines = []
        for i, p in enumerate(INVALID):
            lines += [record(id=f"ok{i}"), p.values[0]]
        engine = Engine(EngineConfig())
        dead = engine.feed(lines)
        assert [d.index for d in dead] == list(range(1, len(lines), 2))
        assert engine.applied == len(INVALID)

    def test_blank_lines_hold_no_record(self):
        """Empty and whitespace-only lines are neither applied nor dead-lettered."""
        engine = Engine(EngineConfig())
        assert engine.feed([b"", b"   ", b"\r", record()]) == []
        assert engine.snapshot(T0).outcomes["applied"] == 1

    @pytest.mark.parametrize(
        ("raw", "reason"),
        [p for p in INVALID if p.values[1].startswith(("missing_", "invalid_", "unknown_"))],
    )
    def test_validator_names_the_same_problem(self, raw, reason):
        """`Validator.check` on the decoded object returns a Rejection with the engine's reason."""
        result = Validator().check(decoded(raw))
        assert not isinstance(result, int)
        assert (result.reason, bool(result.detail)) == (reason, True)


class TestValidRecords:
    """Edge cases the contract allows are applied, at the right event time."""

    @pytest.mark.parametrize(("raw", "ts"), VALID)
    def test_applied_at_its_time(self, raw, ts):
        """A valid edge case is applied and its `ts` converts to the expected epoch milliseconds."""
        engine = Engine(EngineConfig())
        assert engine.feed([raw]) == []
        assert engine.event_time() == ts
        assert engine.snapshot(ts).streams[0].last_ts == ts

    @pytest.mark.parametrize(("raw", "ts"), VALID)
    def test_valid_on_the_fast_path_too(self, raw, ts):
        """After valid records of the same stream and minute, a valid edge case is applied (or late, if older)."""
        late = ts < T0 + 20_000 - EngineConfig().grace_ms  # the warm-up moved the watermark to 00:00:20
        assert verdict(raw, warm=True) == ("late" if late else "applied")

    def test_int64_min_is_a_valid_time(self):
        """`ts` = -2^63 passes validation (it is within the signed 64-bit range)."""
        assert Validator().check(orjson.loads(record(ts=INT64_MIN))) == INT64_MIN
        engine = Engine(EngineConfig())
        assert engine.feed([record(ts=INT64_MIN)]) == []
        assert engine.applied == 1

    def test_int64_min_sets_the_event_time(self):
        """A record applied at `ts` = -2^63 makes -2^63 the event time."""
        engine = Engine(EngineConfig())
        engine.feed([record(ts=INT64_MIN)])
        assert engine.event_time() == INT64_MIN

    @pytest.mark.parametrize(("raw", "ts"), [p for p in VALID if p.values[0].startswith(b"{")])
    def test_validator_returns_the_time(self, raw, ts):
        """`Validator.check` returns the record's event time in epoch milliseconds."""
        assert Validator().check(decoded(raw)) == ts

    def test_null_follower_means_absent(self):
        """`follower: null` falls back to the unknown-actor policy, exactly like a missing field."""
        engine = Engine(EngineConfig(unknown_actor="not_follower"))
        engine.feed([record(id="1", follower=None), record(id="2", actor="eve", follower=True)])
        assert engine.snapshot(T0 + 30_000).streams[0].active_followers == (1, 1, 1)

    def test_null_campaign_means_no_campaign(self):
        """`campaign: null` tags no campaign."""
        engine = Engine(EngineConfig())
        engine.feed([record(campaign=None)])
        assert engine.snapshot(T0 + 30_000).streams[0].campaign_engaged_actors == {}


class TestTimestamps:
    """RFC 3339 with a mandatory offset converts to epoch milliseconds; sub-millisecond digits are truncated."""

    @pytest.mark.parametrize(
        ("text", "ms"),
        [
            ("2026-01-01T00:00:00Z", T0),
            ("2026-01-01T00:00:00.1Z", T0 + 100),
            ("2026-01-01T00:00:00.12Z", T0 + 120),
            ("2026-01-01T00:00:00.123Z", T0 + 123),
            ("2026-01-01T00:00:00.1239Z", T0 + 123),
            ("2026-01-01T00:00:00.12399Z", T0 + 123),
            ("2026-01-01T00:00:00.123999Z", T0 + 123),
            ("2026-01-01T00:00:00.1239999Z", T0 + 123),
            ("2026-01-01T00:00:00.12399999Z", T0 + 123),
            ("2026-01-01T00:00:00.999999999Z", T0 + 999),
            ("2026-01-01T00:00:00.000000001Z", T0),
            ("2026-01-01T05:30:00+05:30", T0),
            ("2026-01-01T05:30:00.250+05:30", T0 + 250),
            ("2025-12-31T14:00:00-10:00", T0),
            ("2026-01-01T00:00:00-00:00", T0),
            ("2026-01-01T00:59:00+00:59", T0),
            ("1970-01-01T00:00:00Z", 0),
            ("1969-12-31T23:59:59.999Z", -1),
            ("2026-01-01T23:59:59Z", T0 + 86_399_000),
        ],
    )
    def test_converts(self, text, ms):
        """The timestamp converts to the expected epoch milliseconds."""
        assert rfc3339_to_ms(text) == ms

    @pytest.mark.parametrize(
        "text",
        ["2026-01-01T00:00:00", "2026-01-01T00:00:60Z", "2026-04-31T00:00:00Z", "2026-01-01 00:00:00Z",
         "2026-01-01T00:00:00+5:30", "0000-01-01T00:00:00Z", "", "2026-01-01T00:00:00ZZ",
         "\u0662\u0660\u0662\u0666-01-01T00:00:00Z", "2026-01-01T00:00:00.\uff11Z"],  # digits of other scripts
    )
    def test_rejects(self, text):
        """A string that is not an RFC 3339 date-time with offset gives None."""
        assert rfc3339_to_ms(text) is None

    @pytest.mark.parametrize(
        ("text", "ms"),
        [
            ("2026-01-01T00:00:07Z", T0 + 7_000),
            ("2026-01-01T00:00:07.5Z", T0 + 7_500),
            ("2026-01-01T00:00:07.050Z", T0 + 7_050),
            ("2026-01-01T00:00:07.123456789Z", T0 + 7_123),
            ("2026-01-01T05:30:07+05:30", T0 + 7_000),
            ("2026-01-01T00:00:07z", T0 + 7_000),
            ("2026-01-01T00:30:07+00:30", T0 + 7_000),
            ("2026-01-01T00:00:07.250999-00:00", T0 + 7_250),
            ("2026-01-01T00:00:07.9+00:01", T0 + 7_900 - 60_000),
            ("2026-01-01T00:00:07.25-23:59", T0 + 7_250 + (23 * 60 + 59) * 60_000),
        ],
    )
    def test_same_time_on_the_fast_path(self, text, ms):
        """A timestamp of a minute already seen converts exactly as on first sighting."""
        engine = Engine(EngineConfig())
        engine.feed(WARM_UP)
        assert engine.feed([record(id="t", ts=text, actor="zed")]) == []
        snap = engine.snapshot(T0 + 60_000)
        assert snap.streams[0].last_ts == max(ms, T0 + 20_000)
        cold = Engine(EngineConfig())
        cold.feed([record(id="t", ts=text, actor="zed")])
        assert cold.event_time() == ms


class CountingValidator(Validator):
    """A validator that counts how often the thorough path runs."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def check(self, rec):
        self.calls += 1
        return super().check(rec)


class TestFastPathAgreesWithFirstSighting:
    """Memoised accounts, platforms, campaigns and minutes never let an invalid record through."""

    @pytest.mark.parametrize(
        "raw",
        [
            record(id="f1"),
            record(id="f2", ts="2026-01-01T00:00:59.999Z", campaign="bf", follower=False, actor_followers=7),
            record(id="f3", ts=T0 + 45_000, type="unfollow"),
            record(id="f4", ts="2026-01-01T00:00:59.999999Z"),
            record(id="f5", ts="2026-01-01T00:00:59.5+00:00"),
            record(id="f6", ts="2026-01-01T00:00:59-00:00"),
            record(id="f7", ts="2026-01-01T00:00:59z"),
        ],
    )
    def test_warm_up_puts_the_stream_on_the_fast_path(self, raw):
        """After the warm-up a valid record of the stream is applied without the thorough check (the premise here)."""
        engine = Engine(EngineConfig())
        engine._validator = counting = CountingValidator()
        engine.feed(WARM_UP)
        calls = counting.calls
        assert engine.feed([raw]) == []
        assert counting.calls == calls

    @pytest.mark.parametrize(
        ("raw", "reason"),
        [
            pytest.param(record(AUDIENCE, id="x", followers=ABSENT), "missing_followers",
                         id="audience without followers after a valid audience"),
            pytest.param(record(id="x", actor="a" * 200), "invalid_actor", id="like with an actor of 200 chars"),
            pytest.param(record(id="x", actor=""), "invalid_actor", id="like with an empty actor"),
            pytest.param(record(id="x", follower="yes"), "invalid_follower", id="follower: yes"),
            pytest.param(record(id="x", actor_followers=True), "invalid_actor_followers", id="actor_followers: true"),
            pytest.param(record(id="x", actor_followers=-3), "invalid_actor_followers", id="actor_followers: -3"),
            pytest.param(record(id="x", followers="lots"), "invalid_followers", id="like with followers: lots"),
            pytest.param(record(id="x", followers=-1), "invalid_followers", id="like with followers: -1"),
            pytest.param(record(id="x", followers=True), "invalid_followers", id="like with followers: true"),
            pytest.param(record(id="x", ts=INT64_MAX + 1), "invalid_ts", id="int ts 2^63"),
            pytest.param(record(id="x", ts="2026-01-01T00:00:61Z"), "invalid_ts", id="second 61 of a known minute"),
            pytest.param(record(id="x", ts="2026-01-01T00:00:30.Z"), "invalid_ts", id="empty fraction, known minute"),
            pytest.param(record(id="x", ts="2026-01-01T00:00:30"), "invalid_ts", id="known minute, no offset"),
            pytest.param(record(id="x", ts="2026-01-01T00:00:3Z"), "invalid_ts", id="known minute, 1-digit second"),
            pytest.param(record(id="x", ts="2026-01-01T00:00:30+24:00"), "invalid_ts", id="known minute, offset 24h"),
            pytest.param(record(id="x", ts="2026-01-01T00:00:30+05:60"), "invalid_ts", id="known minute, offset :60"),
            pytest.param(record(id="x", ts="2026-01-01T00:00:30+0530"), "invalid_ts", id="known minute, offset +0530"),
            pytest.param(record(id="x", ts="2026-01-01T00:00:30.+05:30"), "invalid_ts",
                         id="known minute, empty fraction before an offset"),
            pytest.param(record(id="x", ts="2026-01-01T00:00:30.1a+05:30"), "invalid_ts",
                         id="known minute, letter in the fraction"),
            pytest.param(record(id="x", ts="2026-01-01T00:00:30.\uff11\uff12Z"), "invalid_ts",
                         id="known minute, fraction in full-width digits"),
            pytest.param(record(id="x", ts="2026-01-01T00:00:30Z+05:30"), "invalid_ts", id="known minute, Z and offset"),
            pytest.param(record(id="x", ts="2026-01-01T00:00:30x+05:30"), "invalid_ts",
                         id="known minute, no dot before the fraction"),
            pytest.param(record(id="x", campaign="bf\n"), "invalid_campaign", id="known campaign + newline"),
            pytest.param(record(id="x", campaign="-bf"), "invalid_campaign", id="campaign invalid after valid ones"),
            pytest.param(record(id="x", campaign=["bf"]), "invalid_campaign", id="campaign as a list"),
            pytest.param(record(id="x", account="acme\n"), "invalid_account", id="known account + newline"),
            pytest.param(record(id="x", platform="x\n"), "invalid_platform", id="known platform + newline"),
            pytest.param(record(id="x", type="like "), "unknown_type", id="type with trailing space"),
            pytest.param(record(id=""), "invalid_id", id="empty id"),
            pytest.param(record(id=["x"]), "invalid_id", id="id as a list"),
        ],
    )
    def test_invalid_after_valid(self, raw, reason):
        """An invalid record after valid ones of its account, platform and minute gets the first-sighting reason."""
        assert verdict(raw, warm=False) == reason
        assert verdict(raw, warm=True) == reason

    def test_memos_only_hold_valid_strings(self):
        """Valid records fill the memos; an invalid campaign is not remembered as valid."""
        engine = Engine(EngineConfig())
        engine.feed(WARM_UP + [record(id="x", campaign="-bad")])
        assert "bf" in engine._validator.campaigns
        assert "-bad" not in engine._validator.campaigns
        assert engine.feed([record(id="y", campaign="-bad")])[0].reason == "invalid_campaign"

    def test_memos_survive_a_checkpoint_round_trip(self):
        """After `from_bytes` the memos are rebuilt: invalid records are still caught, valid ones applied."""
        engine = Engine(EngineConfig())
        engine.feed(WARM_UP)
        restored = Engine.from_bytes(engine.config, engine.to_bytes())
        dead = restored.feed([record(id="x", follower="yes"), record(id="y", ts="2026-01-01T00:00:40Z")])
        assert [d.reason for d in dead] == ["invalid_follower"]
        assert restored.event_time() == T0 + 40_000
