"""The engine's batch run against the brute-force reference (tests/reference.py), on generated inputs.

Random event sequences use few accounts, platforms, actors and campaigns so that they collide; they mix duplicates,
reused ids, late records, invalid records of every class, follows and unfollows, audience snapshots with tied
times, influencer reach around the threshold, both forms of `ts`, and steps from a millisecond to past the longest
window, under the default settings and under small ones. The engine's `.prom` must equal the reference exactly.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference import (
    Config,
    comparable,
    diff,
    duration_ms,
    evaluate,
    key,
    run_engine,
    split_lines,
)

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
ABSENT = object()  # a field left out of the record (None writes an explicit JSON null)


def record(fields: dict, **changes) -> bytes:
    """One JSON line from `fields` with `changes` applied (ABSENT removes a field)."""
    merged = dict(fields, **changes)
    return json.dumps({k: v for k, v in merged.items() if v is not ABSENT}, ensure_ascii=False).encode()


def sized(n: int) -> bytes:
    """A valid like padded by an unknown field to exactly `n` bytes."""
    raw = record(LIKE, pad="")
    return record(LIKE, pad="p" * (n - len(raw)))


LIKE = {"id": "case", "ts": "2026-01-01T00:00:30Z", "platform": "x", "account": "acme", "type": "like", "actor": "bob"}
AUDIENCE = {"id": "case", "ts": "2026-01-01T00:00:30Z", "platform": "x", "account": "acme", "type": "audience", "followers": 10}

# (name, raw record) -- each breaks exactly one rule of the wire format.
INVALID = [
    ("truncated JSON", b'{"id": "case", "ts": '),
    ("trailing garbage", record(LIKE) + b" x"),
    ("not UTF-8", record(LIKE, actor="b?ob").replace(b"?", b"\xff")),
    ("NaN is not JSON", record(LIKE)[:-1] + b', "actor_followers": NaN}'),
    ("lone surrogate escape", record(LIKE)[:-1] + b', "note": "\\ud800"}'),
    ("lone surrogate beside a number beyond a double", record(LIKE)[:-1] + b', "n": 1e400, "note": "\\udc00"}'),
    ("Infinity beside a number beyond a double", record(LIKE)[:-1] + b', "n": [1e400, Infinity]}'),
    ("garbage after a number beyond a double", record(LIKE)[:-1] + b', "n": 1e400} x'),
    ("ts beyond a double", record(LIKE)[:-1] + b', "ts": 1e400}'),
    ("actor_followers beyond a double", record(LIKE)[:-1] + b', "actor_followers": 1e400}'),
    ("array", b'[{"id": "case"}]'),
    ("string", b'"like"'),
    ("number", b"42"),
    ("null", b"null"),
    ("larger than 64 KiB", sized(64 * 1024 + 1)),
    ("missing id", record(LIKE, id=ABSENT)),
    ("missing ts", record(LIKE, ts=ABSENT)),
    ("missing platform", record(LIKE, platform=ABSENT)),
    ("missing account", record(LIKE, account=ABSENT)),
    ("missing type", record(LIKE, type=ABSENT)),
    ("missing actor", record(LIKE, actor=ABSENT)),
    ("missing actor of a follow", record(LIKE, type="follow", actor=ABSENT)),
    ("missing followers of an audience", record(AUDIENCE, followers=ABSENT)),
    ("null id", record(LIKE, id=None)),
    ("null ts", record(LIKE, ts=None)),
    ("null actor", record(LIKE, actor=None)),
    ("null followers of an audience", record(AUDIENCE, followers=None)),
    ("empty id", record(LIKE, id="")),
    ("id of 129 chars", record(LIKE, id="i" * 129)),
    ("id as a number", record(LIKE, id=7)),
    ("ts true", record(LIKE, ts=True)),
    ("ts fractional number", record(LIKE, ts=1_767_225_630_000.5)),
    ("ts text", record(LIKE, ts="not a time")),
    ("ts without offset", record(LIKE, ts="2026-01-01T00:00:30")),
    ("ts in Arabic-Indic digits", record(LIKE, ts="\u0662\u0660\u0662\u0666-01-01T00:00:30Z")),
    ("ts date only", record(LIKE, ts="2026-01-01")),
    ("ts impossible date", record(LIKE, ts="2026-02-30T00:00:30Z")),
    ("ts hour 24", record(LIKE, ts="2026-01-01T24:00:30Z")),
    ("ts digits as text", record(LIKE, ts="1767225630000")),
    ("ts above int64", record(LIKE, ts=2**63)),
    ("ts below int64", record(LIKE, ts=-(2**63) - 1)),
    ("ts far above int64", record(LIKE, ts=2**70)),
    ("ts as an object", record(LIKE, ts={"ms": 1_767_225_630_000})),
    ("platform upper case", record(LIKE, platform="X")),
    ("platform of 33 chars", record(LIKE, platform="p" * 33)),
    ("platform starting with _", record(LIKE, platform="_x")),
    ("platform with a trailing newline", record(LIKE, platform="x\n")),
    ("platform empty", record(LIKE, platform="")),
    ("platform as a number", record(LIKE, platform=1)),
    ("account starting with .", record(LIKE, account=".acme")),
    ("account with a space", record(LIKE, account="ac me")),
    ("account of 129 chars", record(LIKE, account="a" * 129)),
    ("account with a trailing newline", record(LIKE, account="acme\n")),
    ("type unknown", record(LIKE, type="poke")),
    ("type upper case", record(LIKE, type="Like")),
    ("type as a number", record(LIKE, type=1)),
    ("actor empty", record(LIKE, actor="")),
    ("actor of 129 chars", record(LIKE, actor="a" * 129)),
    ("actor as a number", record(LIKE, actor=5)),
    ("follower as text", record(LIKE, follower="yes")),
    ("follower as 1", record(LIKE, follower=1)),
    ("actor_followers true", record(LIKE, actor_followers=True)),
    ("actor_followers negative", record(LIKE, actor_followers=-1)),
    ("actor_followers fractional", record(LIKE, actor_followers=1.5)),
    ("actor_followers as text", record(LIKE, actor_followers="5")),
    ("actor_followers above int64", record(LIKE, actor_followers=2**63)),
    ("followers negative", record(AUDIENCE, followers=-1)),
    ("followers true", record(AUDIENCE, followers=True)),
    ("followers as text", record(AUDIENCE, followers="10")),
    ("followers above int64", record(AUDIENCE, followers=2**63)),
    ("campaign with a space", record(LIKE, campaign="b f")),
    ("campaign with @", record(LIKE, campaign="a@b")),
    ("campaign of 65 chars", record(LIKE, campaign="c" * 65)),
    ("campaign empty", record(LIKE, campaign="")),
    ("campaign as a number", record(LIKE, campaign=3)),
]

# Lines that hold no record: skipped, neither applied nor dead-lettered.
BLANK = [("empty line", b""), ("whitespace-only line", b" \t\r")]

# (name, raw record) -- at the edge of a rule, and valid.
VALID = [
    ("id of 1 char", record(LIKE, id="i")),
    ("id of 128 chars", record(LIKE, id="i" * 128)),
    ("id of 128 non-ASCII chars", record(LIKE, id="é" * 128)),
    ("actor of 128 non-ASCII chars", record(LIKE, actor="ü" * 128)),
    ("platform of 32 chars", record(LIKE, platform="p" * 32)),
    ("platform with digits, - and _", record(LIKE, platform="9g-a_g")),
    ("account of 128 chars", record(LIKE, account="A" * 128)),
    ("account with every punctuation allowed", record(LIKE, account="a.b:c@d-e_F9")),
    ("campaign of 64 chars", record(LIKE, campaign="C" * 64)),
    ("campaign with every punctuation allowed", record(LIKE, campaign="Q4.promo:x-1_2")),
    ("null follower", record(LIKE, follower=None)),
    ("null actor_followers", record(LIKE, actor_followers=None)),
    ("null campaign", record(LIKE, campaign=None)),
    ("unknown fields", record(LIKE, extra={"nested": [1, "two", None]}, note="hi")),
    # JSON sets no bound on numbers; orjson refuses those beyond a double, Python's parser does not.
    ("unknown fields beyond a double", record(LIKE)[:-1] + b', "n": 1e400, "m": {"k": [-1E+999]}}'),
    ("ts as epoch ms", record(LIKE, ts=1_767_225_630_000)),
    ("ts with a positive offset", record(LIKE, ts="2026-01-01T05:30:30+05:30")),
    ("ts with a negative offset", record(LIKE, ts="2025-12-31T16:00:30-08:00")),
    ("ts with offset -00:00", record(LIKE, ts="2026-01-01T00:00:30-00:00")),
    ("ts with milliseconds", record(LIKE, ts="2026-01-01T00:00:30.250Z")),
    ("ts with lower-case t and z", record(LIKE, ts="2026-01-01t00:00:30z")),
    ("actor_followers 0", record(LIKE, actor_followers=0)),
    ("actor_followers at int64 max", record(LIKE, actor_followers=2**63 - 1)),
    ("follower false", record(LIKE, follower=False)),
    ("audience of 0", record(AUDIENCE, followers=0)),
    ("audience at int64 max", record(AUDIENCE, followers=2**63 - 1)),
    ("audience with an actor", record(AUDIENCE, actor="bob")),
    ("view", record(LIKE, type="view")),
    ("record of exactly 64 KiB", sized(64 * 1024)),
    ("record ending in CR (a CRLF file)", record(LIKE) + b"\r"),
    ("whitespace around the object", b" \t" + record(LIKE) + b" "),
    ("ts 0 as epoch ms", record(LIKE, account="far", ts=0)),
    ("ts before 1970 as epoch ms", record(LIKE, account="far", ts=-1_000_000_000_001)),
    ("ts at int64 max as epoch ms", record(LIKE, account="far", ts=2**63 - 1)),
    ("ts at int64 min as epoch ms", record(LIKE, account="far", ts=-(2**63))),
    ("ts in year 1", record(LIKE, account="far", ts="0001-01-01T00:00:00+01:00")),
    ("ts late in year 9999, behind UTC", record(LIKE, account="far", ts="9999-12-31T23:59:59.999-23:59")),
]

FIRST = record(LIKE, id="first", ts="2026-01-01T00:00:00Z", actor="carol")
LAST = record(LIKE, id="last", ts="2026-01-01T00:01:00Z", actor="dave")


def _check_against_reference(data: bytes, config: Config, workdir: Path, *, dead_letter: bool = False):
    """Run the engine and assert that its comparable series equal the reference's; return the run."""
    run = run_engine(data, config, workdir, dead_letter=dead_letter)
    assert run.exit_code == 0
    expected = comparable(evaluate(split_lines(data), config))
    problems = diff(expected, comparable(run.series))
    assert not problems, "engine != reference for\n" + data.decode("utf-8", "replace") + "\n" + "\n".join(problems)
    return run


def holds_original(letter: dict, raw: bytes) -> bool:
    """Whether some field of a dead letter gives back the record's bytes (as text or as base64)."""
    for value in letter.values():
        if isinstance(value, str):
            if value.encode("utf-8", "surrogateescape") == raw:
                return True
            try:
                if base64.b64decode(value, validate=True) == raw:
                    return True
            except ValueError:
                pass
    return False


class TestRecordRules:
    """Every rule of the wire format, one record at a time, between two valid records."""

    def test_tables_are_right(self):
        """The sizes in the two tables straddle the 64 KiB limit."""
        sizes = {name: len(raw) for name, raw in INVALID + VALID}
        assert sizes["larger than 64 KiB"] > 64 * 1024 >= sizes["record of exactly 64 KiB"] == 64 * 1024

    @pytest.mark.parametrize(("name", "raw"), INVALID, ids=[n for n, _ in INVALID])
    def test_invalid_record_is_dead_lettered_and_the_run_continues(self, name, raw, tmp_path):
        """The record is counted invalid and dead-lettered with a reason; its neighbours are applied."""
        data = FIRST + b"\n" + raw + b"\n" + LAST + b"\n"
        assert len(split_lines(data)) == 3
        run = _check_against_reference(data, Config(), tmp_path, dead_letter=True)
        outcomes = {o: run.series.get(key("engagewatch_events_total", outcome=o), 0) for o in ("applied", "duplicate", "late", "invalid")}
        assert outcomes == {"applied": 2, "duplicate": 0, "late": 0, "invalid": 1}
        assert len(run.dead_letters) == 1 and run.dead_letters[0].get("reason")
        assert holds_original(run.dead_letters[0], raw)

    @pytest.mark.parametrize(("name", "raw"), VALID, ids=[n for n, _ in VALID])
    def test_valid_record_is_applied(self, name, raw, tmp_path):
        """A record at the edge of a rule is still applied."""
        data = FIRST + b"\n" + raw + b"\n" + LAST + b"\n"
        run = _check_against_reference(data, Config(), tmp_path, dead_letter=True)
        assert run.series.get(key("engagewatch_events_total", outcome="applied")) == 3
        assert run.dead_letters == []


# ---------------------------------------------------------------------------------------------- generated runs

CONFIGS = [
    Config(),
    Config(bucket="60s", windows="2m,10m", grace="1m", dedup_horizon="3m", cohort_window="5m"),
    Config(bucket="1s", windows="3s,1m", grace="2s", dedup_horizon="2s", cohort_window="10s"),
    Config(bucket="10s", windows="30s,1h", grace="0s", dedup_horizon="20s", cohort_window="1m"),
]
ACCOUNTS = ["acme", "b.co"]
PLATFORMS = ["x", "tt"]
ACTORS = ("bob", "carol", "dave")
CROWD = tuple(f"fan{i}" for i in range(12))
CAMPAIGNS = ["bf", "cm:1"]
TYPES = ["like", "comment", "share", "reply", "mention", "save", "click", "view"] + ["follow", "unfollow", "audience"] * 2
ECHO_TYPES = ["follow", "unfollow", "like", "comment", "view"]
OFFSETS = ["Z", "z", "+00:00", "+05:30", "-08:00"]


def spans(config: Config) -> tuple[list[int], list[int]]:
    """Clock steps and backward jumps that land on and around every edge of `config`."""
    g = config.bucket_ms
    grace, horizon, cohort = (duration_ms(config.grace), duration_ms(config.dedup_horizon), duration_ms(config.cohort_window))
    edges = [g, grace, horizon, cohort] + [w for _, w in config.window_list]
    steps = sorted({max(0, e + d) for e in edges for d in (-g, -1, 0, 1, g)})
    backs = sorted({max(0, e + d) for e in (g, grace, horizon) for d in (-1, 0, 1)})
    return steps, backs


def ts_text(ms: int, offset: str, style: int) -> str:
    """`ms` as RFC 3339 in the given offset; style picks how the fraction is written."""
    import datetime as dt

    if offset in ("Z", "z"):
        tz = dt.timezone.utc
    else:
        sign = 1 if offset[0] == "+" else -1
        tz = dt.timezone(sign * dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    t = dt.datetime.fromtimestamp(ms // 1000, tz)
    frac = ms % 1000
    if frac == 0 and style == 0:
        fraction = ""
    elif style == 2:
        fraction = f".{frac:03d}".rstrip("0") if frac else ".0"
    elif style == 3:  # microseconds, as Python's isoformat writes them: the digits past the millisecond are dropped
        fraction = f".{frac:03d}{ms * 7 % 1000:03d}"
    else:
        fraction = f".{frac:03d}"
    return t.strftime("%Y-%m-%dT%H:%M:%S") + fraction + offset


@st.composite
def scenarios(draw, max_records: int = 40, actors: tuple[str, ...] = ACTORS) -> tuple[Config, bytes]:
    """A configuration and a JSON-lines input meant to hit every rule and every edge of it."""
    config = draw(st.sampled_from(CONFIGS))
    config = dataclasses.replace(
        config,
        influencer_threshold=draw(st.sampled_from([10_000, 0, 5])),
        unknown_actor=draw(st.sampled_from(["follower", "not_follower"])),
    )
    threshold = config.influencer_threshold
    steps, backs = spans(config)
    small_steps = [0, 0, 1, 999, 1_000, 30_000, config.bucket_ms - 1]
    accounts = draw(st.sampled_from([ACCOUNTS[:1], ACCOUNTS]))
    platforms = draw(st.sampled_from([PLATFORMS[:1], PLATFORMS]))
    lines: list[bytes] = []
    ids: list[str] = []
    previous = None
    history: list[tuple[str, int, str]] = []
    grace = duration_ms(config.grace)
    g = config.bucket_ms
    clock = BASE_MS + draw(st.sampled_from([0, 1, g - 1]) | st.integers(0, 120_000))
    for n in range(draw(st.integers(1, max_records))):
        kind = draw(st.sampled_from(["event"] * 12 + ["echo"] * 3 + ["repeat", "reuse", "horizon", "edge", "invalid"]))
        if kind == "edge" and history:
            # Move the evaluation time to just around where an earlier event leaves a window or the cohort.
            _, old_ts, account = draw(st.sampled_from(history))
            span = draw(st.sampled_from([w for _, w in config.window_list] + [duration_ms(config.cohort_window)]))
            edge = old_ts + span + draw(st.sampled_from([-g, -1, 0, 1, g]))
            if edge >= clock:
                clock = edge
                lines.append(record({"id": f"t{n}", "ts": edge, "platform": platforms[0], "account": account, "type": "view", "actor": "bob"}))
                continue
        if kind == "horizon" and history:
            # Move the account's watermark to just around where an earlier id leaves the dedup memory, then reuse it.
            old_id, old_ts, account = draw(st.sampled_from(history))
            edge = old_ts + duration_ms(config.dedup_horizon) + draw(st.sampled_from([-1, 0, 1]))
            if edge >= clock:
                clock = edge
                filler = {"id": f"h{n}", "ts": edge, "platform": platforms[0], "account": account, "type": "view", "actor": "bob"}
                lines.append(record(filler))
                lines.append(record(filler, id=old_id, type="like"))
                continue
        if kind == "repeat" and lines:
            lines.append(draw(st.sampled_from(lines)))
            continue
        if kind == "invalid":
            lines.append(draw(st.sampled_from(INVALID + BLANK))[1])
            continue
        if kind == "echo" and previous is not None:
            # The same actor on the same stream again, a little earlier or at the same time: arrival order
            # and ts order disagree on purpose.
            ts = previous["ts_ms"] - draw(st.sampled_from(sorted({0, 1, grace // 2, grace})))
        else:
            clock += draw(st.sampled_from(steps) if draw(st.integers(0, 4)) == 0 else st.sampled_from(small_steps))
            ts = clock - (draw(st.sampled_from(backs)) if draw(st.integers(0, 5)) == 0 else 0)
        ts_form = draw(st.sampled_from(["int", "text"]))
        ts_value = ts if ts_form == "int" else ts_text(ts, draw(st.sampled_from(OFFSETS)), draw(st.integers(0, 3)))
        id_ = draw(st.sampled_from(ids)) if kind == "reuse" and ids else f"e{n}"
        ids.append(id_)
        type_ = draw(st.sampled_from(ECHO_TYPES if kind == "echo" and previous is not None else TYPES))
        fields = {
            "id": id_,
            "ts": ts_value,
            "platform": draw(st.sampled_from(platforms)),
            "account": draw(st.sampled_from(accounts)),
            "type": type_,
            "actor": draw(st.sampled_from(actors)) if type_ != "audience" else draw(st.sampled_from([ABSENT, "bob"])),
            "follower": draw(st.sampled_from([ABSENT] * 4 + [None, True, False])),
            "actor_followers": draw(st.sampled_from([ABSENT, ABSENT, None, 0, threshold - 1, threshold, threshold + 1])),
            "campaign": draw(st.sampled_from([ABSENT, ABSENT, None] + CAMPAIGNS)),
            "followers": draw(st.sampled_from([0, 1, 2, 3, 100])) if type_ == "audience" else draw(st.sampled_from([ABSENT] * 6 + [None, 7])),
        }
        if fields["actor_followers"] is not ABSENT and fields["actor_followers"] is not None and fields["actor_followers"] < 0:
            fields["actor_followers"] = ABSENT
        if draw(st.integers(0, 9)) == 0:
            fields["extra"] = {"source": "api", "n": [1, 2.5, None]}
        if kind == "echo" and previous is not None:
            fields.update(account=previous["account"], platform=previous["platform"], actor=previous["actor"])
        if isinstance(fields["actor"], str):
            previous = dict(fields, ts_ms=ts)
        history.append((id_, ts, fields["account"]))
        lines.append(record(fields))
    return config, b"\n".join(lines) + b"\n"


class TestAgainstReference:
    """The engine's final export equals the reference's, series for series."""

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(scenarios())
    def test_export_equals_reference(self, scenario):
        """Every contract series, and no other, with exact counts and ratios within 1e-9."""
        self.check(*scenario)

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(scenarios(max_records=250, actors=CROWD))
    def test_long_runs_with_a_crowd(self, scenario):
        """The same holds over long inputs with a dozen actors."""
        self.check(*scenario)

    @staticmethod
    def check(config: Config, data: bytes) -> None:
        """Run the engine on `data`; its export, its outcome counts and its dead letters must match the reference."""
        with tempfile.TemporaryDirectory() as tmp:
            run = _check_against_reference(data, config, Path(tmp), dead_letter=True)
        outcomes = {o: run.series.get(key("engagewatch_events_total", outcome=o), 0) for o in ("applied", "duplicate", "late", "invalid")}
        assert sum(outcomes.values()) == sum(1 for line in split_lines(data) if line.strip())
        assert len(run.dead_letters) == outcomes["late"] + outcomes["invalid"]
        assert sum(1 for letter in run.dead_letters if letter.get("reason") == "late") == outcomes["late"]
        assert all(letter.get("reason") for letter in run.dead_letters)
