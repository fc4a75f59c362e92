"""Per-account admission: the watermark that makes records late, and the ids that make them duplicates."""

from __future__ import annotations


class AccountGate:
    """Decides late / duplicate / applied for one account's records, in arrival order.

    The watermark is the largest `ts` applied for the account on any platform. Ids are remembered with the
    `ts` they were applied at, and count as seen while that `ts` is within the dedup horizon behind the
    watermark; the check compares times rather than relying on when old ids were purged, so outcomes do not
    depend on purge timing.
    """

    __slots__ = ("watermark", "ids", "purged_at", "streams", "campaigns")

    def __init__(self) -> None:
        self.watermark: int | None = None
        self.ids: dict[str, int] = {}
        self.purged_at: int | None = None
        self.streams: dict = {}  # platform -> Stream
        self.campaigns: set[str] = set()  # campaign labels given to this account, within its budget

    def purge(self, horizon_ms: int) -> None:
        """Forget ids that fell behind the horizon; called once the watermark has moved on by half a horizon."""
        floor = self.watermark - horizon_ms
        self.ids = {i: ts for i, ts in self.ids.items() if ts >= floor}
        self.purged_at = self.watermark
