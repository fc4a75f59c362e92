"""Per-account admission: the watermark that makes records late, and the ids that make them duplicates."""

from __future__ import annotations

from processors.wire import BEFORE_ALL


class AccountGate:
    """Decides late / duplicate / applied for one account's records, in arrival order.

    The watermark is the largest `ts` applied for the account on any platform. Ids are remembered with the
    `ts` they were applied at, and count as seen while that `ts` is within the dedup horizon behind the
    watermark. They are kept in two generations, swapped each time the watermark has moved on by a horizon:
    whatever the older generation drops is already behind the horizon, so forgetting costs nothing per event
    and outcomes never depend on when it happens.
    """

    __slots__ = ("watermark", "ids", "old_ids", "rotate_at", "streams", "campaigns")

    def __init__(self) -> None:
        self.watermark = BEFORE_ALL  # nothing applied yet: no record is late, none a duplicate
        self.ids: dict[str, int] = {}
        self.old_ids: dict[str, int] = {}
        self.rotate_at = BEFORE_ALL
        self.streams: dict = {}  # platform -> Stream
        self.campaigns: set[str] = set()  # campaign labels given to this account, within its budget

    def rotate(self, horizon_ms: int) -> None:
        """Start a new id generation; due once the watermark reaches `rotate_at`."""
        self.old_ids = self.ids
        self.ids = {}
        self.rotate_at = self.watermark + horizon_ms
