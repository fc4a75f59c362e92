"""The engine: records in, exact metrics out, at an explicit evaluation time.

`Engine.feed` takes raw records (bytes, one JSON object each) in arrival order and runs the contract's
processing order on each: decode and validate, lateness against the account watermark, deduplication,
application to the stream. `Engine.snapshot(T)` evaluates every metric at time T. Nothing here reads a
clock, touches Kafka or knows about Prometheus.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import NamedTuple

import orjson
from msgspec.structs import astuple

from processors.admission import AccountGate
from processors.config import EngineConfig
from processors.snapshot import Snapshot, StreamSnapshot
from processors.stream import Stream
from processors.wire import (
    AUDIENCE, BEFORE_ALL, FOLLOW, FRACTION_MS, INT64_MAX, MAX_RECORD_BYTES, MINUTE_SECOND_MS, TYPE_CODE,
    TYPES, UNFOLLOW, VIEW, Validator, decode_beyond_double, decode_record, tail_ms,
)

OUTCOMES = ("applied", "duplicate", "late", "invalid")
OTHER_CAMPAIGN = "_other"  # cannot collide: real campaign names start with a letter or digit
# Label budgets: the key `Engine.overflow` counts each under, and the `EngineConfig` field that sets it.
BUDGETS = {"streams": "max_streams", "campaigns": "max_campaigns_per_account"}


class DeadLetter(NamedTuple):
    """A record that was not applied."""

    reason: str
    """Machine-readable token: `late`, `future`, `too_large`, `not_utf8`, `bad_json`, `not_object`,
    `missing_<field>`, `invalid_<field>`, `unknown_type`."""
    detail: str
    """What exactly was wrong, for people."""
    raw: bytes
    """The record as it arrived."""
    index: int
    """Position of the record in the batch given to `feed`."""


class Engine:
    """All state of a set of accounts. One engine per Kafka partition, or one for a whole file."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config = config or EngineConfig()
        self._validator = Validator()
        self._spans = config.window_buckets
        self._cohort_span = config.cohort_ms // config.bucket_ms
        self.accounts: dict[str, AccountGate] = {}
        self.stream_count = 0
        self.max_ts: int | None = None
        self.applied = self.duplicates = self.late = self.invalid = 0
        self.dead_letter_counts: dict[str, int] = {}
        self.overflow = dict.fromkeys(BUDGETS, 0)
        self._swept_at: int | None = None
        # Streams holding follows that a future audience snapshot could still supersede: the only ones to settle.
        self._unsettled: set[Stream] = set()
        self._settled_at: int | None = None
        self._next_tick: int | None = None
        # account -> the bucket its campaign labels were last checked for ended campaigns, with the budget full
        self._labels_checked_at: dict[str, int] = {}

    # -- feeding ------------------------------------------------------------------------------------------

    def feed(self, lines: list[bytes], now_ms: int | None = None,
             on_tick: Callable[[int], None] | None = None, tick_ms: int = 300_000) -> list[DeadLetter]:
        """Process records in order; returns those not applied. `now_ms` only on the wall clock.

        On the event clock, `on_tick(T)` is called for every multiple T of `tick_ms` that the largest applied
        ts reaches, before the record that reaches it is applied: detectors see the state at each tick of
        event time however the input was batched.

        The fast path handles a record that decodes into a `Record` and whose account, platform, campaign and
        timestamp halves were all seen valid before, with plain look-ups; anything else (a first sighting, an
        audience snapshot, an invalid record) takes the thorough path through `Validator.check`, which also fills
        those memos.
        """
        cfg = self.config
        grace, horizon = cfg.grace_ms, cfg.dedup_horizon_ms
        late_detail = f"ts is more than {grace} ms behind the watermark"
        future_limit = INT64_MAX if now_ms is None else now_ms + cfg.max_future_ms
        unknown_is_follower = cfg.unknown_is_follower
        threshold = cfg.influencer_threshold
        validator = self._validator
        hours, campaigns, platforms = validator.hours, validator.campaigns, validator.platforms
        accounts, unsettled = self.accounts, self._unsettled
        loads, decode_error = orjson.loads, orjson.JSONDecodeError
        dead: list[DeadLetter] = []
        applied = duplicates = late = 0
        hour_prefix, hour_ms = "\0", 0  # the last valid `YYYY-MM-DDTHH:` seen, and its epoch ms
        max_ts = self.max_ts if self.max_ts is not None else BEFORE_ALL
        next_tick = _NEVER  # beyond every valid ts: no tick without a callback
        if on_tick is not None:
            next_tick = self._next_tick if self._next_tick is not None else BEFORE_ALL

        # Checked per batch: a record of more than 64 KiB is rare, and the fast path would accept a valid one.
        oversize = max(map(len, lines), default=0) > MAX_RECORD_BYTES
        for index, raw in enumerate(lines):
            if oversize and len(raw) > MAX_RECORD_BYTES:
                dead.append(DeadLetter("too_large", f"{len(raw)} bytes > {MAX_RECORD_BYTES}", raw, index))
                continue
            try:
                if not raw.isascii():
                    raw.decode("utf-8")
                ident, ts, platform, account, type_name, actor, follower, reach, campaign, _ = astuple(
                    decode_record(raw))
                code = _FAST_TYPE_CODE[type_name]
                gate = accounts[account]
                stream = gate.streams.get(platform)
                # No stream yet, or none to be had past the stream budget: still fast once the name is known valid.
                if stream is None and platform not in platforms:
                    raise _SlowPath
                if type(ts) is str:
                    # Records come roughly in time order: most share the previous record's hour.
                    if not ts.startswith(hour_prefix):
                        hour_ms = hours[ts[:14]]
                        hour_prefix = ts[:14]
                    tail = FRACTION_MS.get(ts[19:])
                    if tail is None:
                        tail = tail_ms(ts[19:])
                        if tail is None:
                            raise _SlowPath
                    ts = hour_ms + MINUTE_SECOND_MS[ts[14:19]] + tail
                if actor is None or campaign is not None and campaign not in campaigns:
                    raise _SlowPath
            except Exception:
                try:
                    rec = loads(raw)
                except decode_error as e:
                    rec = decode_beyond_double(raw)
                    if rec is None:
                        if raw.strip():  # a blank line holds no record
                            dead.append(_undecodable(raw, index, e))
                        continue
                if type(rec) is not dict:
                    dead.append(DeadLetter("not_object", "the record is not a JSON object", raw, index))
                    continue
                ts = validator.check(rec)
                if type(ts) is not int:
                    dead.append(DeadLetter(ts.reason, ts.detail, raw, index))
                    continue
                get = rec.get
                type_name, account, platform, ident, actor = (
                    get("type"), get("account"), get("platform"), get("id"), get("actor"))
                follower, reach, campaign = get("follower"), get("actor_followers"), get("campaign")
                code = TYPE_CODE[type_name]
                gate = accounts.get(account)
                if gate is None:
                    gate = accounts[account] = AccountGate()
                stream = gate.streams.get(platform)

            if ts > future_limit:
                dead.append(DeadLetter("future", f"ts is more than {cfg.max_future_ms} ms ahead of now", raw, index))
                continue
            wm = gate.watermark
            if ts < wm - grace:
                late += 1
                dead.append(DeadLetter("late", late_detail, raw, index))
                continue
            seen = gate.ids.get(ident)
            if seen is None:
                seen = gate.old_ids.get(ident)
            if seen is not None and seen >= wm - horizon:
                duplicates += 1
                continue
            if ts > wm:
                gate.watermark = ts
                if ts >= gate.rotate_at:
                    gate.rotate(horizon)
            gate.ids[ident] = ts
            applied += 1
            if ts > max_ts:
                max_ts = ts
                if ts >= next_tick:
                    next_tick = self._ticks(on_tick, next_tick, ts, tick_ms)

            if stream is None:
                stream = self._new_stream(gate, account, platform)
                if stream is None:
                    continue
            if ts > stream.last_ts:
                stream.last_ts = ts
            if code < VIEW:
                if campaign is not None and campaign not in gate.campaigns:
                    campaign = self._campaign_label(gate, account, campaign, max_ts)
                stream.engage(actor, ts, follower, unknown_is_follower, reach is not None and reach >= threshold,
                              campaign)
            elif code == FOLLOW:
                stream.follow(actor, ts)
                unsettled.add(stream)
            elif code == UNFOLLOW:
                stream.unfollow(actor, ts)
                unsettled.add(stream)
            elif code == AUDIENCE:
                stream.audience.snapshot(ts, rec["followers"])
                continue
            stream.engagements[code] += 1

        self.applied += applied
        self.duplicates += duplicates
        self.late += late
        self.invalid += len(dead) - late
        counts = self.dead_letter_counts
        for d in dead:
            counts[d.reason] = counts.get(d.reason, 0) + 1
        if max_ts != BEFORE_ALL:
            self.max_ts = max_ts
        if on_tick is not None:
            self._next_tick = next_tick
        self._maybe_sweep()
        return dead

    @staticmethod
    def _ticks(on_tick: Callable[[int], None], next_tick: int, ts: int, tick_ms: int) -> int:
        """Call `on_tick` for each tick up to `ts`; returns the next tick. A gap longer than a week of ticks
        is reported from its last week only: detectors need no finer view of a long outage."""
        last = ts - ts % tick_ms
        if next_tick == BEFORE_ALL:
            next_tick = last
        elif (last - next_tick) // tick_ms > 2016:
            next_tick = last - 2016 * tick_ms
        while next_tick <= ts:
            on_tick(next_tick)
            next_tick += tick_ms
        return next_tick

    def _new_stream(self, gate: AccountGate, account: str, platform: str) -> Stream | None:
        if self.stream_count >= self.config.max_streams:
            self.overflow["streams"] += 1
            return None
        self.stream_count += 1
        stream = gate.streams[platform] = Stream(
            account, platform, self.config.bucket_ms, self._spans, self._cohort_span
        )
        return stream

    def _campaign_label(self, gate: AccountGate, account: str, campaign: str, max_ts: int) -> str:
        budget = self.config.max_campaigns_per_account
        if len(gate.campaigns) >= budget:
            self._free_ended_campaigns(gate, account, max_ts)
        if len(gate.campaigns) < budget:
            gate.campaigns.add(campaign)
            return campaign
        self.overflow["campaigns"] += 1
        return OTHER_CAMPAIGN

    def _free_ended_campaigns(self, gate: AccountGate, account: str, max_ts: int) -> None:
        """Give up the labels of campaigns without an engaged actor in any window, at any evaluation still to come.

        A service that runs for years sees more campaigns than its budget, one after the other: without this,
        every campaign after the first hundred would fold into `_other` for good. Their series, at 0 from now on,
        leave the exposition. Only a full budget frees labels, so within the budget every series stays; and the
        check depends on the records in order, not on how they were batched.
        """
        now_b = self._earliest_evaluation_bucket(max_ts)
        if self._labels_checked_at.get(account) == now_b:
            return  # a campaign's latest bucket only grows: none has ended since
        self._labels_checked_at[account] = now_b
        horizon = now_b - max(self._spans)
        streams = gate.streams.values()
        ended = [c for c in gate.campaigns
                 if all(c not in s.campaigns or s.campaigns[c][1].top <= horizon for s in streams)]
        for c in ended:
            gate.campaigns.remove(c)
            for s in streams:
                s.campaigns.pop(c, None)

    def _earliest_evaluation_bucket(self, max_ts: int) -> int:
        """The bucket of the earliest evaluation still possible once `max_ts` is applied: what may be dropped is
        judged from there. On the wall clock a record may be up to the future allowance ahead of now; on the event
        clock evaluation is at the largest applied ts itself, later still."""
        return (max_ts - self.config.max_future_ms) // self.config.bucket_ms

    def _maybe_sweep(self) -> None:
        """Now and then drop state that can never count again, so memory follows the active population.

        Follows kept for a future audience snapshot are folded once per bucket (a heap pop each, paid once per
        follow): on a stream that never sends snapshots they would otherwise pile up between sweeps of idle actors,
        which scan every actor and so run only every quarter of the retention (an hour at the least).
        """
        if self.max_ts is None:
            return
        cfg = self.config
        tb = self._earliest_evaluation_bucket(self.max_ts)
        if tb == self._settled_at:
            return
        self._settled_at = tb
        retention = cfg.retention_buckets
        forget = self._swept_at is None or tb - self._swept_at >= max(retention // 4, 60)
        accounts, grace = self.accounts, cfg.grace_ms
        settled = []
        for stream in self._unsettled:
            audience = stream.audience
            audience.settle(accounts[stream.account].watermark - grace)
            if not audience.pending:
                settled.append(stream)
        self._unsettled.difference_update(settled)
        if forget:
            self._swept_at = tb
            for gate in accounts.values():
                for stream in gate.streams.values():
                    if stream.sweep_due:
                        stream.forget_idle(tb, retention, cfg.unknown_is_follower)

    # -- evaluation ---------------------------------------------------------------------------------------

    def event_time(self) -> int | None:
        """The largest applied ts: the evaluation time on the event clock."""
        return self.max_ts

    def outcomes(self) -> dict[str, int]:
        """Records by outcome so far."""
        return {"applied": self.applied, "duplicate": self.duplicates, "late": self.late, "invalid": self.invalid}

    def snapshot(self, at_ms: int) -> Snapshot:
        """Every metric evaluated at `at_ms`. Successive evaluation times must not decrease."""
        tb = at_ms // self.config.bucket_ms
        streams = []
        for gate in self.accounts.values():
            for s in gate.streams.values():
                streams.append(
                    StreamSnapshot(
                        account=s.account,
                        platform=s.platform,
                        audience_followers=s.audience.followers(),
                        active_followers=s.active.counts(tb),
                        engaged_actors=s.engaged.counts(tb),
                        influencer_active_followers=s.influencer.counts(tb),
                        campaign_engaged_actors={c: counts.counts(tb) for c, (_, counts) in s.campaigns.items()},
                        new_followers=s.new_followers.counts(tb)[0],
                        new_followers_activated=s.activated.counts(tb)[0],
                        engagements={TYPES[code]: n for code, n in enumerate(s.engagements) if n},
                        engaging_events=s.engaging_events,
                        follower_engaging_events=s.follower_engaging_events,
                        follows=s.follows,
                        unfollows=s.unfollows,
                        last_ts=None if s.last_ts == BEFORE_ALL else s.last_ts,
                        actors=len(s),
                    )
                )
        return Snapshot(
            at_ms=at_ms,
            windows=self.config.window_labels,
            streams=tuple(streams),
            outcomes=self.outcomes(),
            dead_letters=dict(self.dead_letter_counts),
            overflow=dict(self.overflow),
            watermark_ms=self.max_ts,
        )

    # -- checkpoints --------------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The whole state, for a checkpoint. Only ever load bytes this engine wrote (it is a pickle)."""
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def from_bytes(config: EngineConfig, data: bytes) -> "Engine":
        engine = pickle.loads(data)
        if not isinstance(engine, Engine) or engine.config != config:
            raise ValueError("checkpoint was written with other engine settings")
        return engine

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_validator"]  # a memo, rebuilt on demand
        return state

    def __setstate__(self, state: dict) -> None:
        self._settled_at = None  # absent from checkpoints written before it existed
        self._labels_checked_at = {}  # likewise
        self.__dict__.update(state)
        if "_unsettled" not in state:  # nor was this
            self._unsettled = {s for g in self.accounts.values() for s in g.streams.values() if s.audience.pending}
        self._validator = Validator()


_NEVER = 1 << 64
# Audience snapshots are rare and must carry `followers`, which `Record` leaves optional: they take the thorough path.
_FAST_TYPE_CODE = {name: code for name, code in TYPE_CODE.items() if code != AUDIENCE}


class _SlowPath(Exception):
    """The fast path cannot vouch for this record: validate it thoroughly."""


def _undecodable(raw: bytes, index: int, error: Exception) -> DeadLetter:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return DeadLetter("not_utf8", f"not valid UTF-8 at byte {e.start}", raw, index)
    return DeadLetter("bad_json", str(error), raw, index)


__all__ = ["DeadLetter", "Engine", "OUTCOMES"]
