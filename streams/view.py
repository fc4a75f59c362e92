"""The terminal view of the demo: one row per stream, built from a snapshot."""

from __future__ import annotations

from datetime import datetime, timezone

from rich import box
from rich.table import Table

from processors.snapshot import Snapshot


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def stream_table(snap: Snapshot, events_per_s: float, states: dict[tuple[str, str], str] | None = None) -> Table:
    """Audience quality per stream: audience, active ratio per window, activation, influencer share."""
    at = datetime.fromtimestamp(snap.at_ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M")
    o = snap.outcomes
    table = Table(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
        title=f"engagewatch demo — simulated time {at} UTC",
        caption=f"{events_per_s:,.0f} events/s · applied {o['applied']:,} · duplicate {o['duplicate']:,} · "
                f"late {o['late']:,} · invalid {o['invalid']:,} · Ctrl-C to stop",
    )
    table.add_column("stream", no_wrap=True)
    table.add_column("audience", justify="right", no_wrap=True)
    for w in snap.windows:
        table.add_column(f"active\n{w}", justify="right", no_wrap=True)
    table.add_column("new\nfollow", justify="right", no_wrap=True)
    table.add_column("acti-\nvated", justify="right", no_wrap=True)
    table.add_column("influ-\nencers", justify="right", no_wrap=True)
    if states is not None:
        table.add_column("decay", no_wrap=True)
    for s in sorted(snap.streams, key=lambda s: (s.account, s.platform)):
        ratios = s.active_follower_ratio()
        activation = s.new_followers_activated / s.new_followers if s.new_followers else None
        influencer_share = (
            s.influencer_active_followers[-1] / s.active_followers[-1] if s.active_followers[-1] else None
        )
        row = [f"{s.account}/{s.platform}", f"{s.audience_followers:,}", *map(_pct, ratios),
               f"{s.new_followers:,}", _pct(activation), _pct(influencer_share)]
        if states is not None:
            row.append(states.get((s.account, s.platform), "ok"))
        table.add_row(*row)
    return table
