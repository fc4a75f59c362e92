"""State of one (account, platform) stream: its actors, windows, cohort, audience and counters.

Actors are stored column-wise (one `array` per field, one dict from actor id to row) because a stream can
hold millions of them: a row costs a few machine words instead of a Python object per actor.
"""

from __future__ import annotations

from array import array
from itertools import compress

from processors.audience import Audience
from processors.windows import WindowedCount
from processors.wire import BEFORE_ALL, TYPES, VIEW

# Bits of a row's state byte: what the actor has done, and its relation to the account from its latest
# follow/unfollow in arrival order (neither bit: no relation known).
ENGAGED, ACTIVE, INFLUENCER, FOLLOWING, UNFOLLOWED = 1, 2, 4, 8, 16
RELATION = FOLLOWING | UNFOLLOWED
FREE = 32  # a row no actor holds, waiting to be reused


def _droppable(kept: int) -> bytes:
    """State byte -> 1 for a row a sweep may drop once idle (not free, no relation but `kept`), else 0.

    `bytes.translate` applies it to every row at C speed: on a long history most rows hold a relation the sweep
    must keep, and testing each of them in Python made every sweep cost the whole history.
    """
    return bytes(int(not state & FREE and not state & RELATION & ~kept) for state in range(256))


# A relation that says what the unknown-actor policy would say anyway needs no keeping, once its follow has left
# the cohort window: the actor's follower status is the same with or without its row.
_DROPPABLE = {True: _droppable(FOLLOWING), False: _droppable(UNFOLLOWED)}


class Stream:
    """Everything the metrics of one stream are computed from.

    Per actor row: a state byte (see the bits above), the greatest engaging ts (activation compares it with
    the follow ts), the greatest bucket of an engaging event as a follower, the same for influencer events,
    and the ts of the follow when following.
    """

    __slots__ = (
        "account", "platform", "bucket_ms", "rows", "used", "free", "state", "eng_ts", "act_b", "inf_b",
        "follow_ts", "engaged", "active", "influencer", "new_followers", "activated", "audience", "campaigns", "buckets",
        "engagements", "follower_engaging_events", "follows", "unfollows", "last_ts",
        "window_spans", "actors", "sweep_due",
    )

    def __init__(self, account: str, platform: str, bucket_ms: int, spans: tuple[int, ...], cohort_span: int):
        self.account, self.platform, self.bucket_ms = account, platform, bucket_ms
        self.window_spans = spans
        self.rows: dict[str, int] = {}
        self.actors: list[str | None] = []  # row -> actor id, the reverse of `rows` (None: a free row)
        self.used = 0  # rows ever handed out; rows freed since are reused first
        self.free: list[int] = []
        self.state = bytearray()
        self.eng_ts = array("q")
        self.act_b = array("q")
        self.inf_b = array("q")
        self.follow_ts = array("q")
        self.engaged = WindowedCount(spans)
        self.active = WindowedCount(spans)
        self.influencer = WindowedCount(spans)
        self.new_followers = WindowedCount((cohort_span,))
        self.activated = WindowedCount((cohort_span,))
        self.audience = Audience()
        # campaign -> (row -> last bucket tagged with it, counts). Keyed by row, not actor id, and with
        # interned bucket numbers, so that a membership costs one dict entry and no new objects.
        self.campaigns: dict[str, tuple[dict[int, int], WindowedCount]] = {}
        self.buckets: dict[int, int] = {}
        self.engagements = [0] * len(TYPES)
        self.follower_engaging_events = self.follows = self.unfollows = 0
        self.last_ts = BEFORE_ALL  # largest applied ts
        # Whether a sweep may find something to drop: a row without relation, or a campaign member. Streams gone
        # quiet are then skipped by the sweeps, which on a long history with many streams would cost more than
        # the records do.
        self.sweep_due = False

    def _new_row(self, actor: str) -> int:
        if self.free:
            row = self.free.pop()
            self.state[row] = 0
        else:
            row = self.used
            if row == len(self.state):
                # Grow every column by an eighth at once: appending five columns per actor costs more.
                more = max(16, row >> 3)
                self.state.extend(bytes(more))
                zeros = array("q", bytes(8 * more))
                for column in (self.eng_ts, self.act_b, self.inf_b, self.follow_ts):
                    column.extend(zeros)
                self.actors.extend([None] * more)
            self.used = row + 1
        self.rows[actor] = row
        self.actors[row] = actor
        self.sweep_due = True
        return row

    def engage(self, actor: str, ts: int, follower: bool | None, unknown_is_follower: bool, influencer: bool,
               campaign: str | None) -> None:
        """An engaging event. `follower` is the event's own field (None when absent)."""
        row = self.rows.get(actor)
        if row is None:
            row = self._new_row(actor)
        g = self.bucket_ms
        b = ts // g
        state = self.state[row]

        if state & ENGAGED:
            eng_ts = self.eng_ts
            old = eng_ts[row]
            if ts > old:
                eng_ts[row] = ts
                ob = old // g
                if b != ob:
                    self.engaged.move(ob, b)
                if state & FOLLOWING:
                    f = self.follow_ts[row]
                    if old < f <= ts:
                        self.activated.add(f // g)
        else:
            self.engaged.add(b)
            self.eng_ts[row] = ts
            state |= ENGAGED
            if state & FOLLOWING and ts >= self.follow_ts[row]:
                self.activated.add(self.follow_ts[row] // g)

        if follower is None:
            follower = state & FOLLOWING if state & RELATION else unknown_is_follower
        if follower:
            self.follower_engaging_events += 1
            if state & ACTIVE:
                act_b = self.act_b
                ob = act_b[row]
                if b > ob:
                    act_b[row] = b
                    self.active.move(ob, b)
            else:
                self.active.add(b)
                self.act_b[row] = b
                state |= ACTIVE
            if influencer:
                if state & INFLUENCER:
                    inf_b = self.inf_b
                    ob = inf_b[row]
                    if b > ob:
                        inf_b[row] = b
                        self.influencer.move(ob, b)
                else:
                    self.influencer.add(b)
                    self.inf_b[row] = b
                    state |= INFLUENCER
        self.state[row] = state

        if campaign is not None:
            entry = self.campaigns.get(campaign)
            if entry is None:
                entry = self.campaigns[campaign] = ({}, WindowedCount(self.window_spans))
            members, counts = entry
            old_b = members.get(row)
            if old_b is None:
                b = self.buckets.setdefault(b, b)
                counts.add(b)
                members[row] = b
                self.sweep_due = True
            elif b > old_b:
                b = self.buckets.setdefault(b, b)
                counts.move(old_b, b)
                members[row] = b

    def follow(self, actor: str, ts: int) -> None:
        row = self.rows.get(actor)
        if row is None:
            row = self._new_row(actor)
        self._leave_cohort(row)
        g = self.bucket_ms
        state = self.state[row] & ~RELATION | FOLLOWING
        self.state[row] = state
        self.follow_ts[row] = ts
        self.new_followers.add(ts // g)
        if state & ENGAGED and self.eng_ts[row] >= ts:
            self.activated.add(ts // g)
        self.audience.follow(ts, 1)
        self.follows += 1

    def unfollow(self, actor: str, ts: int) -> None:
        row = self.rows.get(actor)
        if row is None:
            row = self._new_row(actor)
        self._leave_cohort(row)
        self.state[row] = self.state[row] & ~RELATION | UNFOLLOWED
        self.audience.follow(ts, -1)
        self.unfollows += 1

    def _leave_cohort(self, row: int) -> None:
        state = self.state[row]
        if not state & FOLLOWING:
            return
        f = self.follow_ts[row]
        fb = f // self.bucket_ms
        self.new_followers.remove(fb)
        if state & ENGAGED and self.eng_ts[row] >= f:
            self.activated.remove(fb)

    def forget_idle(self, tb: int, retention: int, unknown_is_follower: bool) -> None:
        """Drop actors that can never count again: engaged only at buckets ≤ tb - retention, and no relation
        other than the one the unknown-actor policy gives (a follow at a bucket ≤ tb - retention, for the
        default policy).

        Their last engagement is outside every window and, being older than any follow that could still land
        in the cohort window, can no longer activate one; their follow, if kept, has left the cohort window.
        """
        g = self.bucket_ms
        state, eng_ts, follow_ts, actors, rows = self.state, self.eng_ts, self.follow_ts, self.actors, self.rows
        loose = list(compress(range(self.used), state[:self.used].translate(_DROPPABLE[unknown_is_follower])))
        before = (tb - retention + 1) * g  # ts // g <= tb - retention
        act_b, inf_b = self.act_b, self.inf_b
        # One pass over the loose rows, collecting the buckets each count loses: a sweep on a long history drops
        # about as many rows as records brought new actors.
        gone, engaged, active, influencer, followed, activated = [], [], [], [], [], []
        for row in loose:
            s = state[row]
            if s & ENGAGED and eng_ts[row] >= before or s & FOLLOWING and follow_ts[row] >= before:
                continue
            gone.append(row)
            if s & ENGAGED:
                engaged.append(eng_ts[row] // g)
            if s & ACTIVE:
                active.append(act_b[row])
            if s & INFLUENCER:
                influencer.append(inf_b[row])
            if s & FOLLOWING:
                fb = follow_ts[row] // g
                followed.append(fb)
                if s & ENGAGED and eng_ts[row] >= follow_ts[row]:
                    activated.append(fb)
            del rows[actors[row]]
            actors[row] = None
            state[row] = FREE
        self.engaged.remove_all(engaged)
        self.active.remove_all(active)
        self.influencer.remove_all(influencer)
        self.new_followers.remove_all(followed)
        self.activated.remove_all(activated)
        self.free.extend(gone)
        # Campaign members leave with their actor (a dropped row is outside every window, so are its
        # campaign buckets) before the row can be reused.
        window_horizon = tb - max(self.window_spans)
        members_left = False
        for members, counts in self.campaigns.values():
            stale = [row for row, b in members.items() if b <= window_horizon]
            counts.remove_all([members.pop(row) for row in stale])
            members_left = members_left or bool(members)
        self.buckets = {b: b for b in self.buckets if b > window_horizon}
        self.sweep_due = len(gone) < len(loose) or members_left

    # Checkpoints leave out the reverse column: it is rebuilt on load, which keeps the checkpoint pause (paid on
    # the worker's event loop, at every interval) 10 % shorter.
    def __getstate__(self) -> tuple[None, dict]:
        return None, {name: getattr(self, name) for name in self.__slots__ if name != "actors"}

    def __setstate__(self, state: tuple[None, dict]) -> None:
        for name, value in state[1].items():
            setattr(self, name, value)
        self.actors = actors = [None] * len(self.state)
        for actor, row in self.rows.items():
            actors[row] = actor
        for row in self.free:  # unmarked in checkpoints written before rows knew their actor
            self.state[row] = FREE
        if "sweep_due" not in state[1]:
            self.sweep_due = True

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def engaging_events(self) -> int:
        return sum(self.engagements[:VIEW])
