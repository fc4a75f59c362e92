"""A deliberately naive reference of the engagewatch contract (wire format v1, metric semantics v1).

Nothing here is optimised and nothing is shared with the engine: every record is kept, outcomes are decided one
record at a time in arrival order, and every series is recomputed at the evaluation time by looping over all
applied events. Tests compare the engine's Prometheus output with `evaluate(...)`.

The contract, in short (our own words):

* A record is one non-blank line of UTF-8 JSON holding an object of at most 64 KiB. Required: `id` (1-128 chars),
  `ts` (RFC 3339 with a mandatory offset, or integer epoch milliseconds), `platform` and `account` (patterns,
  matched against the whole string), `type` (one of twelve), `actor` (1-128 chars; not required for `audience`),
  `followers` (integer >= 0, required for `audience`). Optional: `follower` (boolean), `actor_followers` (integer
  >= 0), `campaign` (pattern). `null` in an optional field means absent; unknown fields are ignored; booleans are
  never integers; integers must fit in a signed 64-bit integer. (Read here as: the integers of the fields above.
  Unknown fields are ignored whatever they hold -- the contract does not say which rule wins there, and the tests do
  not depend on it.)
* Processing order per record: invalid -> late (ts < account watermark - grace) -> duplicate ((account, id) seen
  among non-late records still remembered: their ts >= watermark - dedup horizon) -> applied.
* Series are computed per stream (account, platform) at T = the largest applied ts of the whole input.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple

# --------------------------------------------------------------------------------------------------- constants

MAX_RECORD_BYTES = 64 * 1024
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

PLATFORM_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
ACCOUNT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}")
CAMPAIGN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
# RFC 3339 date-time: "T"/"Z" may be lower case; the offset is mandatory; any number of fraction digits; ASCII
# digits only.
RFC3339_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)

ENGAGING_TYPES = frozenset({"like", "comment", "share", "reply", "mention", "save", "click"})
TYPES = ENGAGING_TYPES | {"view", "follow", "unfollow", "audience"}

OUTCOMES = ("applied", "duplicate", "late", "invalid")

_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def duration_ms(text: str) -> int:
    """`60s`, `5m`, `1h`, `7d` -> milliseconds (only what the tests need)."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d|w)", text)
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


# ------------------------------------------------------------------------------------------------------ config


@dataclass(frozen=True)
class Config:
    """The contract's knobs, as the `ENGAGEWATCH_*` variables spell them (defaults = the contract's defaults)."""

    bucket: str = "60s"
    windows: str = "1h,24h,7d"
    grace: str = "5m"
    dedup_horizon: str = "1h"
    influencer_threshold: int = 10_000
    cohort_window: str = "7d"
    unknown_actor: str = "follower"

    @property
    def bucket_ms(self) -> int:
        return duration_ms(self.bucket)

    @property
    def window_list(self) -> list[tuple[str, int]]:
        return [(w, duration_ms(w)) for w in self.windows.split(",")]

    def env(self) -> dict[str, str]:
        """The environment that configures the engine the same way."""
        return {
            "ENGAGEWATCH_BUCKET": self.bucket,
            "ENGAGEWATCH_WINDOWS": self.windows,
            "ENGAGEWATCH_GRACE": self.grace,
            "ENGAGEWATCH_DEDUP_HORIZON": self.dedup_horizon,
            "ENGAGEWATCH_INFLUENCER_THRESHOLD": str(self.influencer_threshold),
            "ENGAGEWATCH_COHORT_WINDOW": self.cohort_window,
            "ENGAGEWATCH_UNKNOWN_ACTOR": self.unknown_actor,
        }


# -------------------------------------------------------------------------------------------------- validation


class Event(NamedTuple):
    """A valid record, with `ts` in epoch milliseconds and absent optional fields as None."""

    id: str
    ts: int
    platform: str
    account: str
    type: str
    actor: str | None
    follower: bool | None
    actor_followers: int | None
    campaign: str | None
    followers: int | None


class Invalid(Exception):
    """The record breaks the wire format; `args[0]` says why."""


def _reject_constant(name: str) -> Any:
    raise Invalid(f"{name} is not JSON")


def _is_int(v: Any) -> bool:
    return type(v) is int  # a bool is not an integer


def _check_unicode(v: Any) -> None:
    """Every string (keys included) must be Unicode text: a lone surrogate escape such as "\\ud800" is not."""
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise Invalid("string is not valid Unicode") from None
    elif isinstance(v, dict):
        for k, item in v.items():
            _check_unicode(k)
            _check_unicode(item)
    elif isinstance(v, list):
        for item in v:
            _check_unicode(item)


def parse_rfc3339_ms(text: str) -> int:
    """RFC 3339 date-time with offset -> epoch ms (fractions below a millisecond are floored)."""
    m = RFC3339_RE.fullmatch(text)
    if not m:
        raise Invalid("ts is not RFC 3339 with an offset")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    fraction = m.group(7) or ""
    if m.group(8):
        offset_min = 0
    else:
        oh, om = int(m.group(10)), int(m.group(11))
        if oh > 23 or om > 59:
            raise Invalid("bad offset")
        offset_min = (oh * 60 + om) * (1 if m.group(9) == "+" else -1)
    try:
        local = _dt.datetime(year, month, day, hour, minute, second, tzinfo=_dt.timezone.utc)
    except ValueError as e:  # day 30 of February, hour 24, second 60 (leap seconds are not accepted), ...
        raise Invalid(f"bad date-time: {e}") from None
    epoch = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
    seconds = (local - epoch) // _dt.timedelta(seconds=1) - offset_min * 60
    return seconds * 1000 + int((fraction + "000")[:3])


def _string(obj: dict, key: str, *, required: bool, lo: int = 1, hi: int = 128, pattern=None) -> str | None:
    v = obj.get(key)
    if v is None:
        if required:
            raise Invalid(f"missing {key}")
        return None
    if not isinstance(v, str):
        raise Invalid(f"{key} is not a string")
    if pattern is not None:
        if not pattern.fullmatch(v):
            raise Invalid(f"{key} does not match its pattern")
    elif not lo <= len(v) <= hi:
        raise Invalid(f"{key} has a bad length")
    return v


def _count(obj: dict, key: str, *, required: bool) -> int | None:
    v = obj.get(key)
    if v is None:
        if required:
            raise Invalid(f"missing {key}")
        return None
    if not _is_int(v) or v < 0 or v > INT64_MAX:
        raise Invalid(f"{key} is not an integer >= 0")
    return v


def validate(raw: bytes) -> Event:
    """Decode one record or raise `Invalid`."""
    if len(raw) > MAX_RECORD_BYTES:
        raise Invalid("larger than 64 KiB")
    try:
        text = raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise Invalid("not UTF-8") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise Invalid("not JSON") from None
    if not isinstance(obj, dict):
        raise Invalid("not an object")
    _check_unicode(obj)

    id_ = _string(obj, "id", required=True)
    ts_raw = obj.get("ts")
    if ts_raw is None:
        raise Invalid("missing ts")
    if _is_int(ts_raw):
        if not INT64_MIN <= ts_raw <= INT64_MAX:
            raise Invalid("ts outside the signed 64-bit range")
        ts = ts_raw
    elif isinstance(ts_raw, str):
        ts = parse_rfc3339_ms(ts_raw)
    else:
        raise Invalid("ts is neither a string nor an integer")
    platform = _string(obj, "platform", required=True, pattern=PLATFORM_RE)
    account = _string(obj, "account", required=True, pattern=ACCOUNT_RE)
    type_ = obj.get("type")
    if type_ is None:
        raise Invalid("missing type")
    if not isinstance(type_, str) or type_ not in TYPES:
        raise Invalid("unknown type")
    actor = _string(obj, "actor", required=type_ != "audience")
    follower = obj.get("follower")
    if follower is not None and not isinstance(follower, bool):
        raise Invalid("follower is not a boolean")
    actor_followers = _count(obj, "actor_followers", required=False)
    campaign = _string(obj, "campaign", required=False, pattern=CAMPAIGN_RE)
    followers = _count(obj, "followers", required=type_ == "audience")
    return Event(id_, ts, platform, account, type_, actor, follower, actor_followers, campaign, followers)


# ---------------------------------------------------------------------------------------------------- outcomes


class Decision(NamedTuple):
    """What happened to the record at `index` (arrival position): its outcome and, unless invalid, its event."""

    index: int
    outcome: str
    event: Event | None


def split_lines(data: bytes) -> list[bytes]:
    """The records of a JSON-lines file (a final newline does not start an extra record)."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def decide(records: Iterable[bytes], config: Config) -> list[Decision]:
    """Outcome of every record, in arrival order, straight from the definitions."""
    grace = duration_ms(config.grace)
    horizon = duration_ms(config.dedup_horizon)
    decisions: list[Decision] = []
    for index, raw in enumerate(records):
        if not raw.strip():  # a blank line is not a record: no outcome, no dead letter
            continue
        try:
            event = validate(raw)
        except Invalid:
            decisions.append(Decision(index, "invalid", None))
            continue
        applied_before = [d.event for d in decisions if d.outcome == "applied" and d.event.account == event.account]
        if applied_before:
            watermark = max(e.ts for e in applied_before)
            if event.ts < watermark - grace:
                decisions.append(Decision(index, "late", event))
                continue
            remembered = [e for e in applied_before if e.id == event.id and e.ts >= watermark - horizon]
            if remembered:
                decisions.append(Decision(index, "duplicate", event))
                continue
        decisions.append(Decision(index, "applied", event))
    return decisions


# ----------------------------------------------------------------------------------------------------- metrics

SeriesKey = tuple[str, frozenset]


def key(name: str, **labels: str) -> SeriesKey:
    return (name, frozenset(labels.items()))


def follower_status(applied: list[Event], position: int, config: Config) -> bool:
    """Follower status of the actor of `applied[position]` at that event (arrival order)."""
    event = applied[position]
    if event.follower is not None:
        return event.follower
    for earlier in reversed(applied[:position]):
        if (
            earlier.type in ("follow", "unfollow")
            and earlier.actor == event.actor
            and (earlier.account, earlier.platform) == (event.account, event.platform)
        ):
            return earlier.type == "follow"
    return config.unknown_actor == "follower"


def audience(stream_events: list[Event]) -> int:
    """Audience of one stream from its applied events in arrival order."""
    snapshot = None
    for e in stream_events:
        if e.type == "audience" and (snapshot is None or e.ts >= snapshot.ts):  # ties -> later arrival
            snapshot = e
    base, since = (0, None) if snapshot is None else (snapshot.followers, snapshot.ts)
    follows = sum(1 for e in stream_events if e.type == "follow" and (since is None or e.ts > since))
    unfollows = sum(1 for e in stream_events if e.type == "unfollow" and (since is None or e.ts > since))
    return max(0, base + follows - unfollows)


def evaluate(records: Iterable[bytes], config: Config = Config()) -> dict[SeriesKey, float]:
    """Every series the contract defines, by brute force, at T = the largest applied ts (event clock)."""
    decisions = decide(list(records), config)
    series: dict[SeriesKey, float] = {}

    for outcome in OUTCOMES:
        series[key("engagewatch_events_total", outcome=outcome)] = sum(1 for d in decisions if d.outcome == outcome)
    # Reason names other than `late` are the engine's choice: the reference files them all under `invalid`.
    for reason, outcome in (("late", "late"), ("invalid", "invalid")):
        count = sum(1 for d in decisions if d.outcome == outcome)
        if count:
            series[key("engagewatch_dead_letters_total", reason=reason)] = count

    applied = [d.event for d in decisions if d.outcome == "applied"]
    if not applied:
        return series
    g = config.bucket_ms
    T = max(e.ts for e in applied)
    bT = T // g

    def in_last(ts: int, span_ms: int) -> bool:
        return bT - span_ms // g < ts // g <= bT

    # Follower status is decided at each engaging event, in arrival order.
    status = {i: follower_status(applied, i, config) for i, e in enumerate(applied) if e.type in ENGAGING_TYPES}

    streams = sorted({(e.account, e.platform) for e in applied})
    for account, platform in streams:
        labels = {"account": account, "platform": platform}
        positions = [i for i, e in enumerate(applied) if (e.account, e.platform) == (account, platform)]
        events = [applied[i] for i in positions]

        for type_ in sorted({e.type for e in events} - {"audience"}):
            series[key("engagewatch_engagements_total", type=type_, **labels)] = sum(
                1 for e in events if e.type == type_
            )

        aud = audience(events)
        series[key("engagewatch_audience_followers", **labels)] = aud

        campaigns = sorted({e.campaign for e in events if e.type in ENGAGING_TYPES and e.campaign is not None})
        for window, span in config.window_list:
            wl = dict(labels, window=window)
            engaging = [i for i in positions if applied[i].type in ENGAGING_TYPES and in_last(applied[i].ts, span)]
            engaged = {applied[i].actor for i in engaging}
            active = {applied[i].actor for i in engaging if status[i]}
            influencers = {
                applied[i].actor
                for i in engaging
                if status[i]
                and applied[i].actor_followers is not None
                and applied[i].actor_followers >= config.influencer_threshold
            }
            series[key("engagewatch_active_followers", **wl)] = len(active)
            series[key("engagewatch_engaged_actors", **wl)] = len(engaged)
            series[key("engagewatch_influencer_active_followers", **wl)] = len(influencers)
            if aud > 0:
                series[key("engagewatch_active_follower_ratio", **wl)] = len(active) / aud
            for campaign in campaigns:
                series[key("engagewatch_campaign_engaged_actors", campaign=campaign, **wl)] = len(
                    {applied[i].actor for i in engaging if applied[i].campaign == campaign}
                )

        cohort = 0
        activated = 0
        for actor in sorted({e.actor for e in events if e.type in ("follow", "unfollow")}):
            relation = [e for e in events if e.type in ("follow", "unfollow") and e.actor == actor]
            latest = relation[-1]
            if latest.type != "follow" or not in_last(latest.ts, duration_ms(config.cohort_window)):
                continue
            cohort += 1
            engaged_ts = [e.ts for e in events if e.type in ENGAGING_TYPES and e.actor == actor]
            if engaged_ts and max(engaged_ts) >= latest.ts:
                activated += 1
        series[key("engagewatch_new_followers", **labels)] = cohort
        series[key("engagewatch_new_followers_activated", **labels)] = activated

    return series


# -------------------------------------------------------------------------------------- reading engine output

COMPARED_FAMILIES = frozenset(
    {
        "engagewatch_audience_followers",
        "engagewatch_active_followers",
        "engagewatch_engaged_actors",
        "engagewatch_influencer_active_followers",
        "engagewatch_active_follower_ratio",
        "engagewatch_campaign_engaged_actors",
        "engagewatch_new_followers",
        "engagewatch_new_followers_activated",
        "engagewatch_engagements_total",
        "engagewatch_events_total",
        "engagewatch_dead_letters_total",
    }
)


def parse_prom(text: str) -> dict[SeriesKey, float]:
    """The samples of the compared families from a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[SeriesKey, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in COMPARED_FAMILIES:
                k = (s.name, frozenset(s.labels.items()))
                assert k not in samples, f"series exposed twice: {k}"
                samples[k] = s.value
    return samples


def comparable(series: dict[SeriesKey, float]) -> dict[SeriesKey, float]:
    """Normalise what the contract leaves open, so that two exports can be compared for equality.

    * Dead-letter reasons other than `late` are the engine's choice: keep only their total (`reason="*"`).
    * Labelled counters and campaign series are not required to be exposed while zero: zeros are dropped there.
    """
    out: dict[SeriesKey, float] = {}
    dead_total = 0.0
    for (name, labels), value in series.items():
        if name == "engagewatch_dead_letters_total":
            dead_total += value
            if dict(labels).get("reason") == "late" and value:
                out[(name, labels)] = value
            continue
        if name in ("engagewatch_events_total", "engagewatch_engagements_total", "engagewatch_campaign_engaged_actors"):
            if value == 0:
                continue
        out[(name, labels)] = value
    if dead_total:
        out[key("engagewatch_dead_letters_total", reason="*")] = dead_total
    return out


def diff(expected: dict[SeriesKey, float], actual: dict[SeriesKey, float], tol: float = 1e-9) -> list[str]:
    """Human-readable differences (empty when equal: exact counts, ratios within `tol`)."""

    def show(k: SeriesKey) -> str:
        name, labels = k
        return name + "{" + ",".join(f'{a}="{b}"' for a, b in sorted(labels)) + "}"

    problems = []
    for k in sorted(set(expected) | set(actual), key=show):
        if k not in actual:
            problems.append(f"missing {show(k)} (expected {expected[k]})")
        elif k not in expected:
            problems.append(f"extra   {show(k)} = {actual[k]}")
        elif abs(expected[k] - actual[k]) > (tol if k[0].endswith("_ratio") else 0):
            problems.append(f"differs {show(k)}: expected {expected[k]}, engine {actual[k]}")
    return problems


# ------------------------------------------------------------------------------------------ driving the engine


class EngineRun(NamedTuple):
    """What one batch run of the engine left behind."""

    exit_code: int
    series: dict[SeriesKey, float]
    dead_letters: list[dict]


def run_engine(data: bytes, config: Config, workdir, *, dead_letter: bool = False) -> EngineRun:
    """Run `engagewatch run --clock event` in-process on `data`, configured through the environment."""
    import pytest

    from streams.cli import main

    workdir.mkdir(parents=True, exist_ok=True)
    source, out, dead = workdir / "events.jsonl", workdir / "out.prom", workdir / "dead.jsonl"
    for path in (out, dead):
        if path.exists():
            path.unlink()
    source.write_bytes(data)
    argv = ["run", "--source", str(source), "--clock", "event", "--metrics-out", str(out)]
    if dead_letter:
        argv += ["--dead-letter", str(dead)]
    with pytest.MonkeyPatch.context() as mp:
        for name, value in config.env().items():
            mp.setenv(name, value)
        code = main(argv)
    letters = []
    if dead_letter and dead.exists():
        letters = [json.loads(line) for line in dead.read_bytes().splitlines() if line.strip()]
    return EngineRun(code, parse_prom(out.read_text(encoding="utf-8")), letters)
