"""A stream's follower count: the latest platform snapshot plus the follows and unfollows seen after it."""

from __future__ import annotations

import heapq


class Audience:
    """`followers()` = S.followers + net follows with ts > S.ts for the snapshot S of greatest ts
    (ties: the later arrival), or the net follows alone before any snapshot; floored at 0.

    A later snapshot supersedes the follows it already includes, so each follow is kept, with its ts, only
    while a future snapshot could still supersede it; see `settle`.
    """

    __slots__ = ("snapshot_ts", "snapshot_followers", "after", "pending", "settled")

    def __init__(self) -> None:
        self.snapshot_ts: int | None = None
        self.snapshot_followers = 0
        self.after = 0  # net follows counted on top of the snapshot
        self.pending: list[tuple[int, int]] = []  # (ts, ±1) heap of follows a new snapshot may supersede
        self.settled = 0  # part of `after` from follows older than any snapshot still to come

    def snapshot(self, ts: int, followers: int) -> None:
        if self.snapshot_ts is not None and ts < self.snapshot_ts:
            return
        self.snapshot_ts, self.snapshot_followers = ts, followers
        # A snapshot that is not late is newer than every settled follow: it includes them all.
        self.after -= self.settled
        self.settled = 0
        pending = self.pending
        while pending and pending[0][0] <= ts:
            self.after -= heapq.heappop(pending)[1]

    def follow(self, ts: int, delta: int) -> None:
        if self.snapshot_ts is not None and ts <= self.snapshot_ts:
            return
        self.after += delta
        heapq.heappush(self.pending, (ts, delta))

    def settle(self, oldest_admissible_ts: int) -> None:
        """Fold follows older than any record still admissible: no future snapshot can fall before them."""
        pending = self.pending
        while pending and pending[0][0] < oldest_admissible_ts:
            self.settled += heapq.heappop(pending)[1]

    def followers(self) -> int:
        return max(0, self.snapshot_followers + self.after)
