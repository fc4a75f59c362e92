"""Seeded synthetic interaction streams in wire format v1, with labelled anomalies and optional dirt.

The world: every stream (account, platform) has a population of actors. A share of it follows the account at the
start, and only a small share of those followers ever engage — most are passive, which is what the active-follower
ratio is about. The rest of the population are outsiders who engage now and then and sometimes follow.
Event rates follow a daily (and mild weekly) curve in the account's local time, rise during campaigns, and can be
bent by injected anomalies: a `Decay` of the followers' engagement rate, or `BoughtFollowers` who never engage.

Time advances one hour at a time: each hour's events are drawn for every stream, sorted, then given actors in time
order so that `follower` flags, follows, unfollows and `audience` snapshots stay consistent. A separate random
stream then dirties a share of the records (`SimSpec.dirt`), so the clean world is the same with or without dirt.
"""

from __future__ import annotations

import heapq
import math
import random
import re
import time
from bisect import bisect
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import accumulate, islice
from typing import Iterator

import orjson

from processors.config import parse_duration

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
DEFAULT_START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
ENGAGING_TYPES = ("like", "comment", "share", "reply", "mention", "save", "click")
EVENT_TYPES = (*ENGAGING_TYPES, "view", "follow", "unfollow", "audience")
DIRT_KINDS = ("duplicate", "reorder", "late", "extra_fields", "invalid")
INVALID_KINDS = (
    "not_json", "not_utf8", "not_object", "missing_field", "wrong_type", "bad_pattern",
    "unknown_type", "bool_for_int", "int_overflow", "oversized",
)

_ACCOUNT_NAMES = ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell", "soylent")


def account_name(index: int) -> str:
    """The name of the `index`-th simulated account: fixed, so `--decay acme=...` means the same in every run."""
    return _ACCOUNT_NAMES[index] if index < len(_ACCOUNT_NAMES) else f"brand{index}"


def parse_time(text: str) -> int:
    """An RFC 3339 time (`2026-01-01T00:00:00Z`) or integer epoch milliseconds -> epoch milliseconds."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 time or epoch milliseconds") from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return round(moment.timestamp() * 1000)


_TARGET = re.compile(r"\A(?:(?P<account>[^/=]+)(?:/(?P<platform>[^/=]+))?=)?(?P<rest>.+)\Z")


def _split_target(text: str) -> tuple[str | None, str | None, str]:
    m = _TARGET.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is empty")
    return m["account"], m["platform"], m["rest"]


@dataclass(frozen=True, slots=True)
class Decay:
    """From `at_ms` after the start, the engagement rate of the followers of the matching streams falls by `drop`."""

    drop: float  # share of the followers' engagement rate lost once fully in effect, in (0, 1]
    at_ms: int  # onset, as an offset from SimSpec.start_ms
    ramp_ms: int = 0  # 0: sudden; otherwise the loss grows linearly over this long (gradual onset)
    account: str | None = None  # None: every account
    platform: str | None = None  # None: every platform

    @classmethod
    def parse(cls, text: str) -> Decay:
        """`[ACCOUNT[/PLATFORM]=]DROP@AT[:sudden|:gradual:RAMP]`, e.g. `0.4@36h` or `acme/x=0.3@2d:gradual:6h`."""
        account, platform, rest = _split_target(text)
        drop, at_sign, when = rest.partition("@")
        if not at_sign:
            raise ValueError(f"{text!r} is not like 0.4@36h")
        at, _, onset = when.partition(":")
        if onset in ("", "sudden"):
            ramp_ms = 0
        elif onset.startswith("gradual:"):
            ramp_ms = parse_duration(onset.removeprefix("gradual:"), "decay ramp")
        else:
            raise ValueError(f"{text!r}: onset must be `sudden` or `gradual:DURATION`")
        return cls(float(drop), parse_duration(at, "decay onset"), ramp_ms, account, platform)

    def factor(self, offset_ms: int) -> float:
        """What is left of the followers' engagement rate `offset_ms` after the start."""
        if offset_ms < self.at_ms:
            return 1.0
        if self.ramp_ms and offset_ms < self.at_ms + self.ramp_ms:
            return 1.0 - self.drop * (offset_ms - self.at_ms) / self.ramp_ms
        return 1.0 - self.drop


@dataclass(frozen=True, slots=True)
class BoughtFollowers:
    """`count` follows by bot actors who never engage, evenly spread over `over_ms` from `at_ms`: hollow growth."""

    count: int  # follows added to every matching stream
    at_ms: int  # start of the spike, as an offset from SimSpec.start_ms
    over_ms: int = 10 * 60_000  # how long the spike lasts (default of the text form too)
    account: str | None = None  # None: every account
    platform: str | None = None  # None: every platform

    @classmethod
    def parse(cls, text: str) -> BoughtFollowers:
        """`[ACCOUNT[/PLATFORM]=]N@AT[:OVER]`, e.g. `5000@30h` or `acme/tiktok=20000@2d:1h`."""
        account, platform, rest = _split_target(text)
        count, at_sign, when = rest.partition("@")
        if not at_sign:
            raise ValueError(f"{text!r} is not like 5000@30h")
        at, _, over = when.partition(":")
        spike = cls(int(count), parse_duration(at, "bought-followers time"), account=account, platform=platform)
        return replace(spike, over_ms=parse_duration(over, "bought-followers spread")) if over else spike


@dataclass(frozen=True, slots=True)
class Anomaly:
    """Ground truth of one injected anomaly on one stream, for backtests. Times are epoch milliseconds."""

    account: str
    platform: str
    kind: str  # "decay" or "bought_followers"
    start_ms: int  # when it begins
    full_ms: int  # when it reaches its full magnitude (== start_ms for a sudden onset)
    end_ms: int | None  # when it ends; None: it lasts until the end of an unbounded stream
    magnitude: float  # decay: share of the followers' engagement rate lost; bought_followers: follows added


def _matches(target: Decay | BoughtFollowers, account: str, platform: str) -> bool:
    return target.account in (None, account) and target.platform in (None, platform)


@dataclass(frozen=True, slots=True)
class SimSpec:
    """Everything that determines a simulated stream: the same spec always yields the same bytes."""

    seed: int = 42
    accounts: int = 3  # number of brand accounts, named by `account_name`
    platforms: tuple[str, ...] = ("instagram", "tiktok", "x")  # every account is on every platform
    start_ms: int = DEFAULT_START_MS  # event time of the first hour
    duration_ms: int | None = DAY_MS  # simulated time; None: unbounded (stop on `events`, or never for a live demo)
    events: int | None = None  # stop after this many lines (dirt included); None: at the end of `duration_ms`
    actors: int = 20_000  # mean population of a stream (followers and outsiders); ids are distinct per stream
    rate: float = 500.0  # mean events per stream per hour, before seasonality, campaigns and dirt
    follower_share: float = 0.6  # share of a stream's population following it at the start
    active_share: float = 0.1  # share of those followers who engage at all; the rest only ever view
    campaigns: bool = True  # run tagged campaigns that raise engagement for 6-30 h now and then
    decays: tuple[Decay, ...] = ()  # injected drops of the followers' engagement rate
    bought: tuple[BoughtFollowers, ...] = ()  # injected spikes of follows that never engage
    dirt: float = 0.0  # share of records made dirty (duplicated, reordered, late, extra fields, or an invalid twin)
    int_ts_share: float = 0.05  # share of valid records whose `ts` is integer epoch ms instead of RFC 3339

    def __post_init__(self) -> None:
        for name, value in (("accounts", self.accounts), ("actors", self.actors)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        if not self.platforms:
            raise ValueError("platforms must not be empty")
        if self.accounts * len(self.platforms) > MAX_STREAMS:
            raise ValueError(f"at most {MAX_STREAMS} streams can be simulated")
        if self.rate <= 0:
            raise ValueError(f"rate must be positive, not {self.rate}")
        if self.duration_ms is not None and self.duration_ms <= 0:
            raise ValueError(f"duration must be positive, not {self.duration_ms} ms")
        if self.events is not None and self.events < 0:
            raise ValueError(f"events must not be negative, not {self.events}")
        for name in ("follower_share", "active_share", "dirt", "int_ts_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {getattr(self, name)}")
        streams = self.streams()
        for target in (*self.decays, *self.bought):
            if isinstance(target, Decay) and not 0.0 < target.drop <= 1.0:
                raise ValueError(f"a decay drop must be in (0, 1], not {target.drop}")
            if isinstance(target, BoughtFollowers) and target.count < 1:
                raise ValueError(f"bought followers must be at least 1, not {target.count}")
            if not any(_matches(target, a, p) for a, p in streams):
                raise ValueError(f"no simulated stream matches {target.account or '*'}/{target.platform or '*'}")

    @property
    def end_ms(self) -> int | None:
        """Event time where the simulation stops, if bounded in time."""
        return None if self.duration_ms is None else self.start_ms + self.duration_ms

    def streams(self) -> tuple[tuple[str, str], ...]:
        """Every simulated (account, platform) stream."""
        return tuple((account_name(a), p) for a in range(self.accounts) for p in self.platforms)

    def anomalies(self) -> tuple[Anomaly, ...]:
        """Ground-truth labels of every injected anomaly, one per affected stream."""
        labels = []
        for account, platform in self.streams():
            for d in self.decays:
                if _matches(d, account, platform):
                    start = self.start_ms + d.at_ms
                    labels.append(Anomaly(account, platform, "decay", start, start + d.ramp_ms, self.end_ms, d.drop))
            for b in self.bought:
                if _matches(b, account, platform):
                    start = self.start_ms + b.at_ms
                    labels.append(Anomaly(account, platform, "bought_followers", start, start, start + b.over_ms,
                                          float(b.count)))
        return tuple(labels)


def timeline(spec: SimSpec) -> Iterator[tuple[int, bytes]]:
    """(emission time in epoch ms, line) in emission order, for pacing against a clock; lines have no newline.

    The emission time is when the record reaches the pipeline: a reordered or late record is emitted after records
    with a greater `ts`.
    """
    lines = _dirty(_World(spec).events(), spec)
    return lines if spec.events is None else islice(lines, spec.events)


def generate(spec: SimSpec) -> Iterator[bytes]:
    """The lines of the simulated stream in (near) time order, without trailing newlines."""
    return (line for _, line in timeline(spec))


# --- the clean world ---------------------------------------------------------------------------------------------

# Event kinds inside one hour's sort key, below the timestamp and the stream index.
_FAN, _OUTSIDER, _VIEW, _FOLLOW, _UNFOLLOW, _BOUGHT, _AUDIENCE = range(7)
_KIND_BITS, _STREAM_BITS = 4, 20
_TS_SHIFT = _KIND_BITS + _STREAM_BITS
MAX_STREAMS = 1 << _STREAM_BITS
# Share of a stream's events by kind; engagements are split between fans (followers) and outsiders.
_MIX = {_FAN: 0.42, _OUTSIDER: 0.26, _VIEW: 0.30, _FOLLOW: 0.012, _UNFOLLOW: 0.008}
_TYPE_CUM = tuple(accumulate((0.56, 0.12, 0.06, 0.06, 0.04, 0.07, 0.09)))
_FAN_FLAG_SHARE = 0.6  # followers' events that say `follower: true`; the rest rely on the follow history
_OUTSIDER_FLAG_SHARE = 0.95  # non-followers' events that say `follower: false`
_REACH_SHARE = 0.7  # events that carry `actor_followers`
_CONVERT_ACTIVATION = 0.35  # share of organic new followers who go on to engage
_ID_PRIMES = (1_000_003, 10_000_019, 100_000_007, 1_000_000_007, 10_000_000_019)
_CAMPAIGN_WORDS = ("launch", "spring", "summer", "bf", "holiday", "collab", "giveaway", "promo")


def _poisson(rng: random.Random, lam: float) -> int:
    if lam < 30.0:
        limit, k, p = math.exp(-lam), 0, rng.random()
        while p > limit:
            k += 1
            p *= rng.random()
        return k
    return max(0, round(rng.gauss(lam, math.sqrt(lam))))


def _season(local_ms: int) -> float:
    """Daily curve peaking at 20:00 local time (trough at 08:00), a little more on weekends."""
    hour = (local_ms % DAY_MS) / HOUR_MS
    weekday = (local_ms // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    return (1.0 + 0.55 * math.cos(2 * math.pi * (hour - 20.0) / 24.0)) * (1.1 if weekday >= 5 else 0.97)


class _Stream:
    """Mutable state of one stream while the world runs."""

    def __init__(self, index: int, account: str, platform: str, population: int, spec: SimSpec,
                 first_id: int, utc_offset_ms: int) -> None:
        self.index, self.account, self.platform = index, account, platform
        self.population = population
        # At least one follower and one outsider, so both kinds of actor can be drawn.
        self.initial_followers = min(population - 1, max(1, round(population * spec.follower_share)))
        self.active = max(1, round(self.initial_followers * spec.active_share))
        self.followers = self.initial_followers
        # 1 while actor i follows: an array, not a set, so a 1M-actor population costs 1 MB.
        self.status = bytearray(b"\x01" * self.initial_followers) + bytearray(population - self.initial_followers)
        self.converts: list[int] = []  # organic new followers who engage
        self.first_id = first_id  # global actor number of population index 0
        self.first_bot_id = 0  # global actor number of this stream's first bought follower
        self.bots_used = 0
        self.scale = population / spec.actors
        self.utc_offset_ms = utc_offset_ms
        self.decays = tuple(d for d in spec.decays if _matches(d, account, platform))
        self.bought = tuple(b for b in spec.bought if _matches(b, account, platform))
        self.bot_count = sum(b.count for b in self.bought)


@dataclass(frozen=True, slots=True)
class _Campaign:
    tag: str
    end_ms: int
    boost: float  # multiplier of engagement and follow rates
    share: float  # share of engagements and views tagged


class _World:
    def __init__(self, spec: SimSpec) -> None:
        self.spec = spec
        self.rng = rng = random.Random(spec.seed)
        # Injected anomalies draw from their own generator: with or without them, the organic stream is the same.
        self.anomaly_rng = random.Random(f"anomalies:{spec.seed}")
        self.streams: list[_Stream] = []
        offsets = {account: rng.randrange(-8, 10) * HOUR_MS for account, _ in spec.streams()}
        next_id = 0
        for index, (account, platform) in enumerate(spec.streams()):
            population = max(10, round(spec.actors * rng.uniform(0.5, 1.5)))
            stream = _Stream(index, account, platform, population, spec, next_id, offsets[account])
            next_id += population
            self.streams.append(stream)
        for stream in self.streams:  # bots are numbered after every population, so they shift no organic id
            stream.first_bot_id = next_id
            next_id += stream.bot_count
        self.id_prime = next(p for p in _ID_PRIMES if p > next_id)
        self.id_shift = rng.randrange(self.id_prime)
        self.reach_salt = rng.getrandbits(64)
        self.campaigns: dict[str, _Campaign | None] = dict.fromkeys(offsets)
        self.campaign_count = 0
        self.seq = 0
        self.minute = -1
        self.minute_prefix = ""

    def events(self) -> Iterator[tuple[int, dict]]:
        """(ts ms, event) in time order, forever or until the spec's end."""
        spec, end = self.spec, self.spec.end_ms
        hour = spec.start_ms
        while end is None or hour < end:
            stop = hour + HOUR_MS if end is None else min(hour + HOUR_MS, end)
            for ts, stream, kind in self._hour(hour, stop):
                event = self._materialise(ts, stream, kind)
                if event is not None:
                    yield ts, event
            hour = stop

    def _hour(self, start: int, stop: int) -> list[tuple[int, _Stream, int]]:
        rng, span = self.rng, stop - start
        if self.spec.campaigns:
            self._roll_campaigns(start)
        keys = []
        for s in self.streams:
            campaign = self.campaigns.get(s.account)
            boost = campaign.boost if campaign else 1.0
            base = self.spec.rate * s.scale * _season(start + span // 2 + s.utc_offset_ms) * span / HOUR_MS
            stream_key = s.index << _KIND_BITS
            for kind, share in _MIX.items():
                lam = base * share * (1.0 if kind in (_VIEW, _UNFOLLOW) else boost)
                for _ in range(_poisson(rng, lam)):
                    keys.append((start + int(rng.random() * span)) << _TS_SHIFT | stream_key | kind)
            for b in s.bought:
                keys.extend(ts << _TS_SHIFT | stream_key | _BOUGHT for ts in _spike(b, self.spec, start, stop))
            keys.append(start << _TS_SHIFT | stream_key | _AUDIENCE)
        keys.sort()
        stream_mask, kind_mask = MAX_STREAMS - 1, (1 << _KIND_BITS) - 1
        return [(k >> _TS_SHIFT, self.streams[(k >> _KIND_BITS) & stream_mask], k & kind_mask) for k in keys]

    def _roll_campaigns(self, now: int) -> None:
        rng = self.rng
        for account, campaign in self.campaigns.items():
            if campaign is not None and campaign.end_ms <= now:
                self.campaigns[account] = campaign = None
            if campaign is None and rng.random() < 1 / 36:
                self.campaign_count += 1
                tag = f"{account}-{rng.choice(_CAMPAIGN_WORDS)}-{self.campaign_count}"
                length = rng.randrange(6, 31) * HOUR_MS
                self.campaigns[account] = _Campaign(tag, now + length, rng.uniform(1.2, 1.6), rng.uniform(0.3, 0.6))

    def _materialise(self, ts: int, s: _Stream, kind: int) -> dict | None:
        rng = self.rng
        if kind == _AUDIENCE:
            event = self._head(ts, s, "audience")
            # Platform counts are noisy (caching, spam sweeps): the snapshot is the true count within ~0.2 %.
            event["followers"] = max(0, round(s.followers * (1.0 + rng.gauss(0.0, 0.002))))
            return event
        if kind == _BOUGHT:
            bots = self.anomaly_rng
            event = self._head(ts, s, "follow", bots)
            event["actor"] = self._actor_id(s.first_bot_id + s.bots_used)
            s.bots_used += 1
            s.followers += 1
            if bots.random() < _REACH_SHARE:
                event["actor_followers"] = bots.randrange(0, 40)
            return event
        if kind == _FOLLOW or kind == _UNFOLLOW:
            return self._relation(ts, s, kind == _FOLLOW)
        return self._engagement(ts, s, kind)

    def _relation(self, ts: int, s: _Stream, follow: bool) -> dict | None:
        rng = self.rng
        if follow:
            actor = self._pick(s, self._outsider, 0)
        else:
            actor = self._pick(s, lambda s: int(s.initial_followers * rng.random()), 1)
        if actor is None:
            return None
        s.status[actor] = int(follow)
        s.followers += 1 if follow else -1
        if follow and rng.random() < _CONVERT_ACTIVATION:
            s.converts.append(actor)
        event = self._head(ts, s, "follow" if follow else "unfollow")
        self._set_actor(event, s.first_id + actor)
        return event

    def _engagement(self, ts: int, s: _Stream, kind: int) -> dict | None:
        """An engaging event (or a view), flagged `follower` on a share of them and tagged during campaigns.

        None when a decay thins out this engagement by a follower.
        """
        rng = self.rng
        if kind == _FAN:
            actor = self._fan(s)
        elif kind == _OUTSIDER:
            actor = self._outsider(s)
        else:  # views come from passive followers as much as from anyone
            actor = int(s.initial_followers * rng.random()) if rng.random() < 0.6 else self._outsider(s)
        kind_name = "view" if kind == _VIEW else ENGAGING_TYPES[bisect(_TYPE_CUM, rng.random() * _TYPE_CUM[-1])]
        event = self._head(ts, s, kind_name)
        self._set_actor(event, s.first_id + actor)
        follows = s.status[actor]
        if rng.random() < (_FAN_FLAG_SHARE if follows else _OUTSIDER_FLAG_SHARE):
            event["follower"] = bool(follows)
        campaign = self.campaigns.get(s.account)
        if campaign is not None and rng.random() < campaign.share:
            event["campaign"] = campaign.tag
        if follows and kind != _VIEW and s.decays:
            # Thinned once fully drawn, on the anomaly generator, so the rest of the stream is exactly the plain one.
            keep = math.prod(d.factor(ts - self.spec.start_ms) for d in s.decays)
            if self.anomaly_rng.random() >= keep:
                return None
        return event

    def _set_actor(self, event: dict, g: int) -> None:
        event["actor"] = self._actor_id(g)
        if self.rng.random() < _REACH_SHARE:
            event["actor_followers"] = self._reach(g)

    def _head(self, ts: int, s: _Stream, kind_name: str, rng: random.Random | None = None) -> dict:
        self.seq += 1
        return {"id": f"ev{self.seq:x}", "ts": self._ts(ts, rng or self.rng), "platform": s.platform,
                "account": s.account, "type": kind_name}

    def _fan(self, s: _Stream) -> int:
        """An engaging follower: a few super-fans, a long tail of occasional ones, and some recent converts."""
        rng, converts = self.rng, s.converts
        if converts and rng.random() * (s.active + len(converts)) < len(converts):
            return converts[int(len(converts) * rng.random())]
        return int(s.active * rng.random() ** 2.5)

    def _outsider(self, s: _Stream) -> int:
        """A non-follower at the start, the frequent ones first (they are also the likeliest to follow)."""
        return s.initial_followers + int((s.population - s.initial_followers) * self.rng.random() ** 1.5)

    @staticmethod
    def _pick(s: _Stream, draw, wanted_status: int) -> int | None:
        for _ in range(8):
            actor = draw(s)
            if s.status[actor] == wanted_status:
                return actor
        return None

    def _actor_id(self, g: int) -> str:
        # A bijection of the global actor number, so ids look arbitrary but never collide.
        return f"u{(g * 48271 + self.id_shift) % self.id_prime}"

    def _reach(self, g: int) -> int:
        """The actor's own follower count: Pareto-distributed (about 1.3 % reach 10 000), fixed per actor."""
        h = ((g ^ self.reach_salt) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        u = ((h >> 11) + 1) / 9007199254740993.0  # in (0, 1)
        return min(200_000_000, int(80.0 * u ** (-1.0 / 0.9)))

    def _ts(self, ts: int, rng: random.Random) -> str | int:
        if rng.random() < self.spec.int_ts_share:
            return ts
        minute, rest = divmod(ts, 60_000)
        if minute != self.minute:
            self.minute, self.minute_prefix = minute, time.strftime("%Y-%m-%dT%H:%M:", time.gmtime(minute * 60))
        return f"{self.minute_prefix}{rest // 1000:02d}.{rest % 1000:03d}Z"


def _spike(b: BoughtFollowers, spec: SimSpec, start: int, stop: int) -> Iterator[int]:
    """Timestamps of the bought follows falling in [start, stop): follow k lands at at + k·over/count."""
    at = spec.start_ms + b.at_ms
    first = max(0, -((at - start) * b.count // b.over_ms))  # ceil((start - at)·count / over)
    last = min(b.count, max(0, -((at - stop) * b.count // b.over_ms)))
    return (at + k * b.over_ms // b.count for k in range(first, last))


# --- dirt ----------------------------------------------------------------------------------------------------------

_DIRT_CUM = tuple(accumulate((0.30, 0.25, 0.10, 0.10, 0.25)))
_INVALID_CUM = tuple(accumulate((1, 1, 1, 1, 1, 1, 1, 1, 1, 0.1)))  # oversized lines are rare: 64 KiB each
_BIG = "@@big@@"


def _dumps(obj: object) -> bytes:
    # orjson >= 3.12 returns bytes sitting in a ~4 KiB buffer; a right-sized copy keeps held lines (a caller's list,
    # the dirt heap) at their real size: 1M lines would otherwise hold 4 GB.
    return bytes(memoryview(orjson.dumps(obj)))


def _dirty(events: Iterator[tuple[int, dict]], spec: SimSpec) -> Iterator[tuple[int, bytes]]:
    """Serialise the clean events and dirty a `spec.dirt` share of them, yielding (emission ms, line)."""
    dumps = _dumps
    if spec.dirt == 0.0:
        for ts, event in events:
            yield ts, dumps(event)
        return
    rng = random.Random(f"dirt:{spec.seed}")
    pending: list[tuple[int, int, bytes]] = []  # (release ms, tie-break, line): records held back
    held = 0
    for ts, event in events:
        while pending and pending[0][0] <= ts:
            release, _, line = heapq.heappop(pending)
            yield release, line
        line = dumps(event)
        if rng.random() >= spec.dirt:
            yield ts, line
            continue
        kind = DIRT_KINDS[bisect(_DIRT_CUM, rng.random() * _DIRT_CUM[-1])]
        if kind == "extra_fields":
            yield ts, dumps(_with_extra_fields(event, rng))
            continue
        if kind == "invalid":
            yield ts, line
            yield ts, _invalid(event, rng)
            continue
        if kind == "duplicate":
            yield ts, line
            delay = rng.randrange(1_000, 120_000)
        elif kind == "reorder":
            delay = rng.randrange(5_000, 240_000)  # stays within the default 5-minute grace
        else:
            delay = rng.randrange(6 * 60_000, 90 * 60_000)  # arrives after the account moved past ts + grace
        held += 1
        heapq.heappush(pending, (ts + delay, held, line))
    while pending:
        release, _, line = heapq.heappop(pending)
        yield release, line


def _with_extra_fields(event: dict, rng: random.Random) -> dict:
    """A valid record with fields the contract ignores: unknown ones, and `null` for absent optional ones."""
    extra = dict(event, source=rng.choice(("webhook", "api", "export")), meta={"lang": "en", "v": 2})
    for optional in ("follower", "campaign", "actor_followers"):
        if optional not in event and rng.random() < 0.3:
            extra[optional] = None
    return extra


def _invalid(event: dict, rng: random.Random) -> bytes:
    """An invalid twin of `event`, of a random class in INVALID_KINDS, with its own id."""
    kind = INVALID_KINDS[bisect(_INVALID_CUM, rng.random() * _INVALID_CUM[-1])]
    bad = dict(event, id=f"{event['id']}-bad")
    required = ("id", "ts", "platform", "account", "type", "followers" if bad["type"] == "audience" else "actor")
    integer = "followers" if bad["type"] == "audience" else "actor_followers"
    if kind == "not_json":
        return _dumps(bad)[: rng.randrange(1, 30)]
    if kind == "not_utf8":
        return _dumps(bad).replace(b'"id":"', b'"id":"\xff\xfe', 1)
    if kind == "not_object":
        return rng.choice((_dumps([bad]), b'"like"', b"42", b"null"))
    if kind == "missing_field":
        del bad[rng.choice(required)]
    elif kind == "wrong_type":
        field, value = rng.choice((("id", 17), ("ts", [bad["ts"]]), ("platform", 3), ("account", {"name": "x"}),
                                   ("type", 1), ("follower", "yes"), (integer, "120"), ("campaign", 5)))
        bad[field] = value
    elif kind == "bad_pattern":
        field, value = rng.choice((("platform", "Insta Gram"), ("account", "-" + bad["account"]),
                                   ("campaign", "spring sale!"), ("ts", "yesterday"), ("ts", "2026-01-01T00:00:00"),
                                   ("id", ""), ("id", "x" * 129), (integer, -5)))
        bad[field] = value
    elif kind == "unknown_type":
        bad["type"] = rng.choice(("poke", "retweet", "LIKE"))
    elif kind == "bool_for_int":
        bad[rng.choice((integer, "ts"))] = rng.choice((True, False))
    elif kind == "int_overflow":
        bad[rng.choice((integer, "ts"))] = _BIG
        big = rng.choice((b"9223372036854775808", b"-9223372036854775809", b"18446744073709551616"))
        return _dumps(bad).replace(f'"{_BIG}"'.encode(), big)
    else:
        bad["note"] = "x" * rng.randrange(65 * 1024, 80 * 1024)
    return _dumps(bad)
