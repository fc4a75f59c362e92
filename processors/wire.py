"""Wire format v1: what a valid interaction record is, and the reason a record is not.

Validation is on the hot path of every event. Strings that repeat across events (accounts, platforms,
campaigns, timestamps' minute prefixes) are validated once and remembered, so most records cost a few
dictionary look-ups rather than regular-expression matches.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date
from typing import Annotated, Literal, Union

import msgspec

MAX_RECORD_BYTES = 64 * 1024
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
MAX_NAME_CHARS = 128  # `id` and `actor`: 1 to this many characters
BEFORE_ALL = -(1 << 64)  # earlier than any valid ts: "nothing yet" without a None check on the hot path

ENGAGING_TYPES = ("like", "comment", "share", "reply", "mention", "save", "click")
TYPES = ENGAGING_TYPES + ("view", "follow", "unfollow", "audience")

# Type codes: engaging types are the codes below VIEW, so "is engaging" is one comparison.
TYPE_CODE = {name: code for code, name in enumerate(TYPES)}
VIEW, FOLLOW, UNFOLLOW, AUDIENCE = (TYPE_CODE[t] for t in ("view", "follow", "unfollow", "audience"))

# \Z rather than $: `$` would also accept a trailing newline.
PLATFORM_RE = re.compile(r"\A[a-z0-9][a-z0-9_-]{0,31}\Z")
ACCOUNT_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}\Z")
CAMPAIGN_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z")
# re.ASCII: without it `\d` also matches other scripts' digits, which `int()` then reads as if they were ASCII.
RFC3339_RE = re.compile(
    r"\A(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))\Z", re.ASCII
)

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_MEMO_LIMIT = 200_000


class Rejection(tuple):
    """Why a record is invalid: `reason` is a short machine-readable token, `detail` says more for people."""

    __slots__ = ()

    def __new__(cls, reason: str, detail: str = "") -> "Rejection":
        return tuple.__new__(cls, (reason, detail))

    @property
    def reason(self) -> str:
        return self[0]

    @property
    def detail(self) -> str:
        return self[1]


_Bounded = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_CHARS)]
_Count = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]


class Record(msgspec.Struct, gc=False):
    """A record as the engine's fast path decodes it: every field's JSON type and bounds checked by msgspec, in C.

    What is checked here is a subset of the format's rules, and never wider: a record that decodes into this is
    valid once its names (`platform`, `account`, `campaign`), its `ts` string and the presence of `actor` are
    vouched for, which the engine does with look-ups. Anything that fails to decode is validated the thorough way,
    which names the problem. Absent and `null` both decode to None.
    """

    # In the format's order: msgspec decodes fastest when the keys come in the order of the fields.
    id: _Bounded
    ts: Union[Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)], str]
    platform: str
    account: str
    type: Literal[TYPES]  # decodes to the literal itself: no new string to hash
    actor: Union[_Bounded, None] = None
    follower: Union[bool, None] = None
    actor_followers: Union[_Count, None] = None
    campaign: Union[str, None] = None
    followers: Union[_Count, None] = None


# msgspec skips unknown fields without checking their UTF-8: a record that is not ASCII must pass `bytes.decode`
# first. It is as strict as orjson otherwise (surrogates, control characters, numbers, nesting, trailing bytes).
decode_record: Callable[[bytes], Record] = msgspec.json.Decoder(Record).decode


def rfc3339_to_ms(text: str) -> int | None:
    """Epoch milliseconds of an RFC 3339 timestamp with an offset, or None when it is not one.

    Fractions below a millisecond are truncated. Leap seconds (`:60`) are rejected, as most parsers do.
    """
    m = RFC3339_RE.match(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, frac, zulu, sign, oh, om = m.groups()
    try:
        ordinal = date(int(year), int(month), int(day)).toordinal()
    except ValueError:
        return None
    h, mi, s = int(hour), int(minute), int(second)
    if h > 23 or mi > 59 or s > 59:
        return None
    offset_min = 0
    if not zulu:
        ohh, omm = int(oh), int(om)
        if ohh > 23 or omm > 59:
            return None
        offset_min = (ohh * 60 + omm) * (1 if sign == "+" else -1)
    ms = int((frac or "0")[:3].ljust(3, "0"))
    seconds = (ordinal - _EPOCH_ORDINAL) * 86_400 + h * 3_600 + mi * 60 + s - offset_min * 60
    return seconds * 1_000 + ms


# Timestamps are parsed on the engine's fast path from three look-ups: the hour prefix `YYYY-MM-DDTHH:` (memoised
# once valid), `MM:SS`, and the tail after the seconds, which for the usual `Z` and `.fffZ` is in a table. The
# tables are small on purpose: a 60 000-entry table of whole suffixes misses the CPU cache on nearly every event.
MINUTE_SECOND_MS: dict[str, int] = {f"{m:02d}:{s:02d}": (m * 60 + s) * 1_000 for m in range(60) for s in range(60)}
FRACTION_MS: dict[str, int] = {f".{f:03d}Z": f for f in range(1_000)}
FRACTION_MS["Z"] = 0
# `+HH:MM` / `-HH:MM` -> what to add to the local time to get UTC, in ms.
OFFSET_MS: dict[str, int] = {
    f"{sign}{h:02d}:{m:02d}": -factor * (h * 60 + m) * 60_000
    for sign, factor in (("+", 1), ("-", -1)) for h in range(24) for m in range(60)
}


def tail_ms(tail: str) -> int | None:
    """What the tail of an RFC 3339 time (fraction and offset, after the seconds) adds to its local time in ms
    to give UTC, or None when it is not a valid tail. For the tails the table lacks: other fraction lengths,
    numeric offsets, a lower-case `z`."""
    ms = FRACTION_MS.get(tail)
    if ms is not None:
        return ms
    ms = OFFSET_MS.get(tail[-6:])
    if ms is not None:
        fraction = tail[:-6]
    elif tail[-1:] in ("Z", "z"):
        ms, fraction = 0, tail[:-1]
    else:
        return None
    if not fraction:
        return ms
    digits = fraction[1:]
    if fraction[0] != "." or not digits.isascii() or not digits.isdigit():
        return None
    return ms + int(digits[:3].ljust(3, "0"))


class Validator:
    """Checks a decoded record against wire format v1 and returns its event time.

    `check(record)` returns the `ts` in epoch milliseconds for a valid record, or a `Rejection` naming the
    first problem. It also fills the memos the engine's fast path reads: valid platform and campaign names, and
    valid `YYYY-MM-DDTHH:` prefixes of timestamps with the epoch milliseconds of that hour.
    """

    __slots__ = ("campaigns", "hours", "platforms", "_accounts", "_fields")

    def __init__(self) -> None:
        self.campaigns: dict[str, bool] = {}
        self.hours: dict[str, int] = {}  # "2026-01-01T00:" -> epoch ms of that hour
        self._accounts: dict[str, bool] = {}
        self.platforms: dict[str, bool] = {}
        # The fields after `id` and `ts`, in the order their problems are reported: (name, required, problem),
        # for an engaging record and for an audience snapshot.
        self._fields = {
            is_audience: (
                ("platform", True, _remembered(self.platforms, PLATFORM_RE)),
                ("account", True, _remembered(self._accounts, ACCOUNT_RE)),
                ("actor", not is_audience, _bounded_string),
                ("follower", False, _boolean),
                ("actor_followers", False, _count),
                ("campaign", False, _remembered(self.campaigns, CAMPAIGN_RE)),
                ("followers", is_audience, _count),
            )
            for is_audience in (False, True)
        }

    def check(self, rec: dict) -> int | Rejection:
        """The slow path: check every field in a fixed order, remember valid strings, name the first problem."""
        get = rec.get
        type_name = get("type")
        if type_name is None:
            return Rejection("missing_type", "required field `type` is absent")
        if type(type_name) is not str:
            return Rejection("invalid_type", "`type` must be a string")
        if type_name not in TYPE_CODE:
            return Rejection("unknown_type", f"`type` is not one of {' '.join(TYPES)}")
        ident = get("id")
        if ident is None:
            return Rejection("missing_id", "required field `id` is absent")
        message = _bounded_string(ident)
        if message:
            return Rejection("invalid_id", f"`id` {message}")
        ts = get("ts")
        if ts is None:
            return Rejection("missing_ts", "required field `ts` is absent")
        ms = self._epoch_ms(ts)
        if type(ms) is str:
            return Rejection("invalid_ts", f"`ts` {ms}")
        for name, required, problem in self._fields[type_name == "audience"]:
            value = get(name)
            if value is None:
                if required:
                    return Rejection(f"missing_{name}", f"required field `{name}` is absent")
                continue
            message = problem(value)
            if message:
                return Rejection(f"invalid_{name}", f"`{name}` {message}")
        return ms

    def _epoch_ms(self, ts: object) -> int | str:
        """The epoch milliseconds of a `ts` value, or what is wrong with it. A string of an hour already seen
        is read from the fast path's tables; a new valid hour is added to them."""
        if type(ts) is int:
            return ts if INT64_MIN <= ts <= INT64_MAX else "is outside the signed 64-bit range"
        if type(ts) is not str:
            return "must be an RFC 3339 string or integer epoch milliseconds"
        minute_second, tail = MINUTE_SECOND_MS.get(ts[14:19]), tail_ms(ts[19:])
        if minute_second is not None and tail is not None:
            hour = self.hours.get(ts[:14])
            if hour is not None:
                return hour + minute_second + tail
        ms = rfc3339_to_ms(ts)
        if ms is None:
            return "is not an RFC 3339 time with offset"
        if minute_second is not None and tail is not None:
            if len(self.hours) > _MEMO_LIMIT:
                self.hours.clear()
            self.hours[ts[:14]] = ms - minute_second - tail
        return ms


def _remembered(memo: dict[str, bool], pattern: re.Pattern) -> Callable[[object], str | None]:
    """A check of a string against `pattern` that remembers the valid ones: names repeat on every record."""

    def problem(value: object) -> str | None:
        if type(value) is not str:
            return "must be a string"
        if value in memo:
            return None
        if pattern.match(value) is None:
            return f"does not match {pattern.pattern[2:-2]}"
        if len(memo) > _MEMO_LIMIT:
            memo.clear()
        memo[value] = True
        return None

    return problem


def _bounded_string(value: object) -> str | None:
    if type(value) is not str:
        return "must be a string"
    if not 0 < len(value) <= MAX_NAME_CHARS:
        return f"must be 1 to {MAX_NAME_CHARS} characters"
    return None


def _boolean(value: object) -> str | None:
    return None if type(value) is bool else "must be a boolean"


def _count(value: object) -> str | None:
    if type(value) is not int:
        return "must be an integer"
    if not 0 <= value <= INT64_MAX:
        return "must be between 0 and 2^63-1"
    return None


def decode_beyond_double(raw: bytes) -> object | None:
    """A record orjson refused, decoded if it is JSON all the same, or None.

    JSON sets no bound on numbers, but orjson refuses one that overflows a double (`1e400`): such a record is
    valid, and its other fields count. Python's own parser reads the number as an infinity, which no field of the
    format accepts, so it only ever lands in an ignored field. What orjson rightly refuses this parser must refuse
    too: the literals NaN and Infinity, and strings that are not Unicode (a lone surrogate escape, which only
    fails once encoded). Nor does JSON bound an integer's digits, where Python's `int()` stops (at 4 300 by default).
    """
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_not_json, parse_int=_integer)
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):  # UnicodeError and JSONDecodeError are ValueErrors
        return None
    return value


def _integer(digits: str) -> int:
    """An integer literal's value, or for one of more than 20 characters (beyond 64 bits, as JSON allows no leading
    zeros) the first integer beyond the signed 64-bit range on its side: no field of the format tells them apart."""
    if len(digits) <= 20:
        return int(digits)
    return INT64_MIN - 1 if digits[0] == "-" else INT64_MAX + 1


def _not_json(name: str) -> object:
    raise ValueError(f"{name} is not JSON")
