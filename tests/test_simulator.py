"""The simulator as a specification: reproducible, valid wire format v1, realistic, dirty on demand, labelled."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import replace
from itertools import pairwise

import pytest

from streams import cli
from streams.simulator import (
    DAY_MS,
    DEFAULT_START_MS,
    EVENT_TYPES,
    HOUR_MS,
    Anomaly,
    BoughtFollowers,
    Decay,
    SimSpec,
    generate,
    timeline,
)

# --- an independent reader of wire format v1, written from the contract --------------------------------------------

_PLATFORM = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_ACCOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}")
_CAMPAIGN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_ENGAGING = {"like", "comment", "share", "reply", "mention", "save", "click"}
_TYPES = _ENGAGING | {"view", "follow", "unfollow", "audience"}
_KNOWN_FIELDS = {"id", "ts", "platform", "account", "type", "actor", "follower", "actor_followers", "campaign",
                 "followers"}


def _int_problem(value) -> str | None:
    if isinstance(value, bool):
        return "bool_for_int"
    if not isinstance(value, int):
        return "wrong_type"
    if not -(2**63) <= value < 2**63:
        return "int_overflow"
    return None


def invalid_reason(line: bytes) -> str | None:
    """Why the contract rejects `line`, or None when it is a valid record."""
    if len(line) > 64 * 1024:
        return "oversized"
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return "not_utf8"
    try:
        record = json.loads(text)
    except ValueError:
        return "not_json"
    if not isinstance(record, dict):
        return "not_object"
    record = {k: v for k, v in record.items() if v is not None}
    required = ["id", "ts", "platform", "account", "type"]
    required.append("followers" if record.get("type") == "audience" else "actor")
    if any(name not in record for name in required):
        return "missing_field"
    for name in ("id", "platform", "account", "type", "actor", "campaign"):
        if name in record and not isinstance(record[name], str):
            return "wrong_type"
    if "follower" in record and not isinstance(record["follower"], bool):
        return "wrong_type"
    ts = record["ts"]
    if isinstance(ts, str):
        if not _RFC3339.fullmatch(ts):
            return "bad_pattern"
    elif problem := _int_problem(ts):
        return problem
    for name in ("followers", "actor_followers"):
        if name in record:
            if problem := _int_problem(record[name]):
                return problem
            if record[name] < 0:
                return "bad_pattern"
    for name in ("id", "actor"):
        if name in record and not 1 <= len(record[name]) <= 128:
            return "bad_pattern"
    patterns = (("platform", _PLATFORM), ("account", _ACCOUNT), ("campaign", _CAMPAIGN))
    if any(name in record and not pattern.fullmatch(record[name]) for name, pattern in patterns):
        return "bad_pattern"
    if record["type"] not in _TYPES:
        return "unknown_type"
    return None


def ts_ms(record: dict) -> int:
    from datetime import datetime

    ts = record["ts"]
    return ts if isinstance(ts, int) else round(datetime.fromisoformat(ts).timestamp() * 1000)


def records(lines) -> list[dict]:
    return [json.loads(line) for line in lines]


SMALL = SimSpec(duration_ms=6 * HOUR_MS, rate=300.0, actors=5_000)


@pytest.fixture(scope="module")
def clean() -> list[bytes]:
    return list(generate(replace(SMALL, duration_ms=DAY_MS, rate=150.0)))


@pytest.fixture(scope="module")
def clean_records(clean) -> list[dict]:
    return records(clean)


@pytest.fixture(scope="module")
def dirty() -> list[bytes]:
    return list(generate(replace(SMALL, dirt=0.5)))


@pytest.fixture(scope="module")
def dirty_valid(dirty) -> list[dict]:
    return records(line for line in dirty if invalid_reason(line) is None)


# --- tests ---------------------------------------------------------------------------------------------------------


class TestSimSpec:
    def test_streams_are_every_account_on_every_platform(self):
        """Accounts get fixed names and each one is on every platform."""
        assert SimSpec(accounts=2, platforms=("x", "tiktok")).streams() == (
            ("acme", "x"), ("acme", "tiktok"), ("globex", "x"), ("globex", "tiktok"))

    @pytest.mark.parametrize("change", [
        {"accounts": 0}, {"platforms": ()}, {"rate": 0.0}, {"dirt": 1.5}, {"duration_ms": 0},
        {"decays": (Decay(0.0, HOUR_MS),)}, {"decays": (Decay(0.4, HOUR_MS, account="nobody"),)},
        {"bought": (BoughtFollowers(0, HOUR_MS),)},
    ])
    def test_rejects_impossible_values(self, change):
        """A spec that cannot be simulated fails when it is built."""
        with pytest.raises(ValueError):
            SimSpec(**change)

    def test_anomalies_label_every_affected_stream(self):
        """Each injected anomaly is labelled once per stream it targets, in absolute event time."""
        spec = SimSpec(accounts=2, platforms=("x", "tiktok"), duration_ms=2 * DAY_MS,
                       decays=(Decay(0.4, 36 * HOUR_MS, ramp_ms=6 * HOUR_MS, account="globex"),),
                       bought=(BoughtFollowers(500, HOUR_MS, account="acme", platform="x"),))
        start = DEFAULT_START_MS
        assert set(spec.anomalies()) == {
            Anomaly("globex", "x", "decay", start + 36 * HOUR_MS, start + 42 * HOUR_MS, start + 2 * DAY_MS, 0.4),
            Anomaly("globex", "tiktok", "decay", start + 36 * HOUR_MS, start + 42 * HOUR_MS, start + 2 * DAY_MS, 0.4),
            Anomaly("acme", "x", "bought_followers", start + HOUR_MS, start + HOUR_MS, start + HOUR_MS + 600_000,
                    500.0),
        }

    def test_unbounded_decay_has_no_end(self):
        """Without a duration the decay lasts to the end of the stream, so its label has no end."""
        spec = SimSpec(duration_ms=None, events=10, decays=(Decay(0.4, HOUR_MS),))
        assert {a.end_ms for a in spec.anomalies()} == {None}


class TestParsing:
    @pytest.mark.parametrize("text, expected", [
        ("0.4@36h", Decay(0.4, 36 * HOUR_MS)),
        ("0.4@36h:sudden", Decay(0.4, 36 * HOUR_MS)),
        ("0.25@2d:gradual:6h", Decay(0.25, 2 * DAY_MS, 6 * HOUR_MS)),
        ("acme=0.5@1h", Decay(0.5, HOUR_MS, account="acme")),
        ("acme/x=0.5@1h", Decay(0.5, HOUR_MS, account="acme", platform="x")),
    ])
    def test_decay_text_forms(self, text, expected):
        """`[ACCOUNT[/PLATFORM]=]DROP@AT[:sudden|:gradual:RAMP]` reads as a Decay."""
        assert Decay.parse(text) == expected

    @pytest.mark.parametrize("text, expected", [
        ("5000@30h", BoughtFollowers(5000, 30 * HOUR_MS)),
        ("acme/tiktok=200@1h:1h", BoughtFollowers(200, HOUR_MS, HOUR_MS, "acme", "tiktok")),
    ])
    def test_bought_followers_text_forms(self, text, expected):
        """`[ACCOUNT[/PLATFORM]=]N@AT[:OVER]` reads as BoughtFollowers."""
        assert BoughtFollowers.parse(text) == expected

    @pytest.mark.parametrize("text", ["0.4", "0.4@soon", "0.4@1h:slowly", "x@1h"])
    def test_bad_decay_text_is_refused(self, text):
        """A decay that does not follow the form raises ValueError."""
        with pytest.raises(ValueError):
            Decay.parse(text)


class TestReproducibility:
    def test_same_seed_same_bytes(self):
        """The same spec always yields the same bytes, dirt included."""
        spec = replace(SMALL, dirt=0.1)
        assert list(generate(spec)) == list(generate(spec))

    def test_different_seed_different_bytes(self):
        """Another seed yields another stream."""
        assert list(generate(SMALL)) != list(generate(replace(SMALL, seed=SMALL.seed + 1)))

    def test_events_gives_exactly_n_lines(self):
        """With an event count and no duration, exactly that many lines come out."""
        spec = replace(SMALL, duration_ms=None, events=12_345, dirt=0.05)
        assert sum(1 for _ in generate(spec)) == 12_345

    def test_timeline_pairs_each_line_with_its_emission_time(self):
        """The live variant yields the same lines as generate, with non-decreasing emission times."""
        spec = replace(SMALL, dirt=0.2)
        pairs = list(timeline(spec))
        assert [line for _, line in pairs] == list(generate(spec))
        assert all(a <= b for (a, _), (b, _) in pairwise(pairs))


class TestCleanStream:
    def test_every_line_is_valid_wire_format(self, clean, clean_records):
        """Without dirt every line is a valid v1 record with only known fields."""
        assert Counter(invalid_reason(line) for line in clean) == {None: len(clean)}
        assert all(set(r) <= _KNOWN_FIELDS for r in clean_records)

    def test_every_event_type_appears(self, clean_records):
        """All twelve event types occur."""
        assert {r["type"] for r in clean_records} == set(EVENT_TYPES)

    def test_lines_are_in_time_order(self, clean_records):
        """Without dirt, event times never go backwards."""
        times = [ts_ms(r) for r in clean_records]
        assert times == sorted(times)

    def test_ts_is_mostly_rfc3339_with_milliseconds(self, clean_records):
        """Most `ts` are RFC 3339 UTC with milliseconds, a few are integer epoch milliseconds."""
        kinds = Counter("int" if isinstance(r["ts"], int) else len(r["ts"]) for r in clean_records)
        assert set(kinds) == {"int", len("2026-01-01T00:00:00.000Z")}
        assert 0.01 < kinds["int"] / len(clean_records) < 0.1

    def test_follower_flag_is_sometimes_present(self, clean_records):
        """The optional `follower` boolean is present on some engagements and absent on others."""
        flags = Counter(r.get("follower") for r in clean_records if r["type"] in _ENGAGING)
        assert flags[True] and flags[False] and flags[None]

    def test_most_followers_are_passive(self, clean_records):
        """Over a day, the distinct followers who engage are a small share of the audience."""
        rs = clean_records
        audience = {(r["account"], r["platform"]): r["followers"] for r in rs if r["type"] == "audience"}
        active = {(r["account"], r["platform"], r["actor"]) for r in rs
                  if r["type"] in _ENGAGING and r.get("follower") is True}
        per_stream = Counter((a, p) for a, p, _ in active)
        assert all(0.01 < per_stream[s] / audience[s] < 0.3 for s in audience)

    def test_influencers_are_a_small_share_of_actors(self, clean_records):
        """A few actors have at least 10 000 followers of their own; most have far fewer."""
        reach = {r["actor"]: r["actor_followers"] for r in clean_records if "actor_followers" in r}
        influencers = sum(1 for n in reach.values() if n >= 10_000)
        assert 0.002 < influencers / len(reach) < 0.05
        assert max(reach.values()) > 100_000

    def test_actor_ids_look_like_handles(self, clean_records):
        """Actors are ids like `u483920`."""
        assert all(re.fullmatch(r"u\d+", r["actor"]) for r in clean_records if "actor" in r)

    def test_campaigns_tag_some_engagements(self):
        """During campaigns, a share of engagements carries the campaign tag."""
        rs = records(generate(replace(SMALL, duration_ms=3 * DAY_MS, rate=50.0)))
        tagged = [r for r in rs if "campaign" in r]
        assert tagged and len(tagged) < len(rs) / 2
        assert all(r["campaign"].startswith(r["account"] + "-") for r in tagged)

    def test_audience_snapshots_follow_follows_and_unfollows(self, clean_records):
        """Hourly snapshots of each stream move with its follows and unfollows, within a little noise."""
        rs = clean_records
        for account, platform in SMALL.streams():
            mine = [r for r in rs if (r["account"], r["platform"]) == (account, platform)]
            snapshots = [r["followers"] for r in mine if r["type"] == "audience"]
            assert len(snapshots) == 24
            net = sum(1 if r["type"] == "follow" else -1 for r in mine[1:] if r["type"] in ("follow", "unfollow")
                      and ts_ms(r) < ts_ms(mine[0]) + 23 * HOUR_MS)
            assert abs(snapshots[-1] - snapshots[0] - net) < 0.01 * snapshots[0]


class TestDirt:
    def test_every_invalid_class_appears(self, dirty):
        """Dirt includes a record of every class the contract rejects."""
        reasons = Counter(invalid_reason(line) for line in dirty)
        assert set(reasons) - {None} == {"not_json", "not_utf8", "not_object", "missing_field", "wrong_type",
                                         "bad_pattern", "unknown_type", "bool_for_int", "int_overflow", "oversized"}
        assert reasons["oversized"] < reasons["not_json"]

    def test_duplicates_reorders_and_late_records_appear(self, dirty, dirty_valid):
        """Dirt re-sends exact copies, and delivers records behind the account watermark, within and past grace."""
        assert len(dirty) - len(set(dirty)) > 0
        watermark: dict[str, int] = defaultdict(int)
        behind = Counter()
        for r in dirty_valid:
            lag = watermark[r["account"]] - ts_ms(r)
            behind["late" if lag > 5 * 60_000 else "reordered" if lag > 0 else "in order"] += 1
            watermark[r["account"]] = max(watermark[r["account"]], ts_ms(r))
        assert behind["late"] and behind["reordered"]

    def test_unknown_fields_keep_records_valid(self, dirty_valid):
        """Some valid records carry unknown fields or explicit nulls, which the contract ignores."""
        assert any(set(r) - _KNOWN_FIELDS for r in dirty_valid)
        assert any(None in r.values() for r in dirty_valid)

    def test_dirt_keeps_the_clean_world(self, dirty_valid):
        """The valid records of a dirty stream, once unknown fields and nulls are dropped, are the clean stream."""
        def normal(r):
            return json.dumps({k: v for k, v in r.items() if k in _KNOWN_FIELDS and v is not None}, sort_keys=True)

        assert {normal(r) for r in dirty_valid} == {normal(r) for r in records(generate(SMALL))}


def follower_engagements(rs: list[dict], since: int, flag: bool) -> int:
    return sum(1 for r in rs if r["type"] in _ENGAGING and r.get("follower") is flag and ts_ms(r) >= since)


class TestAnomalies:
    BASE = SimSpec(accounts=1, platforms=("x",), duration_ms=8 * HOUR_MS, rate=2_000.0, campaigns=False)

    def test_decay_lowers_the_followers_engagement_rate(self):
        """After onset, followers engage about `drop` less while non-followers engage exactly as before."""
        onset = DEFAULT_START_MS + 4 * HOUR_MS
        before = records(generate(self.BASE))
        after = records(generate(replace(self.BASE, decays=(Decay(0.5, 4 * HOUR_MS),))))
        assert 0.35 < follower_engagements(after, onset, True) / follower_engagements(before, onset, True) < 0.65
        assert follower_engagements(after, onset, False) == follower_engagements(before, onset, False)

    def test_gradual_decay_deepens_over_its_ramp(self):
        """With a gradual onset the loss grows over the ramp instead of arriving at once."""
        spec = replace(self.BASE, decays=(Decay(0.8, 2 * HOUR_MS, ramp_ms=6 * HOUR_MS),))
        base, decayed = records(generate(self.BASE)), records(generate(spec))

        def hour(rs, h):
            start = DEFAULT_START_MS + h * HOUR_MS
            return follower_engagements(rs, start, True) - follower_engagements(rs, start + HOUR_MS, True)

        ratios = [hour(decayed, h) / hour(base, h) for h in (2, 4, 7)]
        assert ratios[0] > ratios[1] > ratios[2]

    def test_decay_only_removes_follower_engagements_after_onset(self):
        """The decayed stream is the plain one minus some engagements by followers, all after onset."""
        onset = DEFAULT_START_MS + 4 * HOUR_MS
        plain = list(generate(self.BASE))
        decayed = list(generate(replace(self.BASE, decays=(Decay(0.5, 4 * HOUR_MS),))))
        removed = records(set(plain) - set(decayed))
        assert set(decayed) < set(plain)
        assert all(r["type"] in _ENGAGING and ts_ms(r) >= onset and r.get("follower") is not False for r in removed)

    def test_bought_followers_follow_and_never_engage(self):
        """N follows by new actors arrive in the spike window, they never engage, and the audience grows by N."""
        at, over = DEFAULT_START_MS + 3 * HOUR_MS, 20 * 60_000
        spiked = records(generate(replace(self.BASE, bought=(BoughtFollowers(1_000, 3 * HOUR_MS, over),))))
        plain = records(generate(self.BASE))

        def organic(rs):
            return [(r["type"], r["actor"], ts_ms(r)) for r in rs if r["type"] != "audience"]

        bots = Counter(organic(spiked)) - Counter(organic(plain))
        assert sum(bots.values()) == 1_000 and not Counter(organic(plain)) - Counter(organic(spiked))
        assert {kind for kind, _, _ in bots} == {"follow"} and all(at <= ts < at + over for _, _, ts in bots)
        def audience(rs):
            return [r["followers"] for r in rs if r["type"] == "audience"]

        growth = [a - b for a, b in zip(audience(spiked), audience(plain))]
        assert growth[3] < 50 < 950 < growth[4]


class TestCommand:
    def test_writes_a_file(self, tmp_path):
        """`engagewatch simulate --out FILE` writes newline-terminated lines and exits 0."""
        out = tmp_path / "events.jsonl"
        assert cli.main(["simulate", "--duration", "2h", "--accounts", "1", "--out", str(out)]) == 0
        lines = out.read_bytes().splitlines()
        assert out.read_bytes().endswith(b"\n") and len(lines) > 100
        assert all(invalid_reason(line) is None for line in lines)

    def test_writes_to_stdout_exactly_n_events(self, capsysbinary):
        """With `--out -` (the default) and `--events N`, exactly N lines go to stdout."""
        assert cli.main(["simulate", "--events", "250", "--dirt", "0.1", "--seed", "3"]) == 0
        assert len(capsysbinary.readouterr().out.splitlines()) == 250

    def test_flags_reach_the_spec(self, tmp_path):
        """Decay and bought-follower flags are injected and written as labels."""
        out, labels = tmp_path / "e.jsonl", tmp_path / "labels.jsonl"
        argv = ["simulate", "--accounts", "2", "--platforms", "x", "--duration", "3h", "--decay", "globex=0.4@1h",
                "--bought-followers", "acme/x=50@2h", "--out", str(out), "--labels", str(labels)]
        assert cli.main(argv) == 0
        assert [(r["account"], r["kind"]) for r in records(labels.read_bytes().splitlines())] == [
            ("acme", "bought_followers"), ("globex", "decay")]

    def test_bad_spec_exits_2(self, capsys):
        """A decay aimed at an unknown account exits 2 with a message."""
        assert cli.main(["simulate", "--decay", "nobody=0.4@1h"]) == 2
        assert "nobody" in capsys.readouterr().err
