"""Frozen views of the engine's metrics at one evaluation time; what exporters and detectors read."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StreamSnapshot:
    """One (account, platform) stream. Per-window tuples are aligned with `Snapshot.windows`."""

    account: str
    platform: str
    audience_followers: int
    active_followers: tuple[int, ...]
    engaged_actors: tuple[int, ...]
    influencer_active_followers: tuple[int, ...]
    campaign_engaged_actors: dict[str, tuple[int, ...]]
    new_followers: int
    new_followers_activated: int
    engagements: dict[str, int]
    """Applied events by type (every type but `audience`), cumulative."""
    engaging_events: int
    """Applied engaging events, cumulative: detectors take rates from differences between snapshots."""
    follower_engaging_events: int
    """Applied engaging events whose actor was a follower at the time, cumulative."""
    follows: int
    unfollows: int
    last_ts: int | None
    """Largest applied ts on this stream, epoch ms."""
    actors: int
    """Actors currently held in state (not a metric of the contract: a measure of memory)."""

    def active_follower_ratio(self) -> tuple[float | None, ...]:
        """Active followers over audience per window; None while the audience is 0."""
        audience = self.audience_followers
        return tuple(None if audience == 0 else n / audience for n in self.active_followers)


@dataclass(frozen=True, slots=True)
class Snapshot:
    at_ms: int
    """The evaluation time T, epoch ms."""
    windows: tuple[str, ...]
    streams: tuple[StreamSnapshot, ...]
    outcomes: dict[str, int]
    dead_letters: dict[str, int]
    overflow: dict[str, int]
    """Events that exceeded a label budget, by budget (`streams`, `campaigns`)."""
    watermark_ms: int | None
    """Largest applied ts across all accounts."""
