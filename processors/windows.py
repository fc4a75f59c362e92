"""Exact distinct counts over nested sliding windows, at O(1) amortised cost per change.

Each tracked member (an actor, say) sits at one bucket: the last bucket at which it qualified. A window of
`span` buckets evaluated at bucket `tb` holds the members at buckets `b` with `tb - span < b <= tb`.

Rather than scanning members, `WindowedCount` keeps a histogram of members per bucket and, for the edges it
was last evaluated at, how many members lie in each band between consecutive window edges. A member moving
within the newest band (the usual case: an actor active again in the last hour) costs two dictionary updates.
Evaluation only walks the buckets that crossed an edge since the previous evaluation, so live scraping and a
single final evaluation are both linear in what changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import repeat

NEVER = -(1 << 62)  # an edge below every bucket: before the first evaluation every member is in every window


class WindowedCount:
    """Distinct members per window for windows of `spans` buckets (ascending), all ending at the same bucket."""

    __slots__ = ("spans", "hist", "edges", "bands", "top")

    def __init__(self, spans: tuple[int, ...]) -> None:
        self.spans = spans
        self.hist: dict[int, int] = {}
        # edges[j] = tb - spans[j] for the last evaluation bucket tb; descending in j.
        self.edges = [NEVER] * len(spans)
        # bands[j] = members with edges[j] < b <= edges[j-1] (bands[0]: above edges[0]).
        self.bands = [0] * len(spans)
        self.top = NEVER

    def _band(self, b: int) -> int:
        for j, edge in enumerate(self.edges):
            if b > edge:
                return j
        return -1

    def add(self, b: int) -> None:
        hist = self.hist
        hist[b] = hist.get(b, 0) + 1
        if b > self.top:
            self.top = b
        j = 0 if b > self.edges[0] else self._band(b)
        if j >= 0:
            self.bands[j] += 1

    def remove(self, b: int) -> None:
        self.remove_all((b,))

    def remove_all(self, buckets: Iterable[int]) -> None:
        """Remove a member at each of `buckets`, as a sweep does: one loop, no call per member."""
        hist, edges, bands = self.hist, self.edges, self.bands
        top, lowest = edges[0], edges[-1]
        for b in buckets:
            left = hist[b] - 1
            if left:
                hist[b] = left
            else:
                del hist[b]
            if b > top:
                bands[0] -= 1
            elif b > lowest:
                bands[self._band(b)] -= 1

    def move(self, old: int, new: int) -> None:
        hist = self.hist
        n = hist[old]
        if n == 1:
            del hist[old]
        else:
            hist[old] = n - 1
        hist[new] = hist.get(new, 0) + 1
        if new > self.top:
            self.top = new
        newest = self.edges[0]
        if new > newest:
            if old > newest:
                return
            jn = 0  # the usual case under live evaluation: back after more than the shortest window
        else:
            jn = self._band(new)
        jo = self._band(old)
        if jo != jn:
            if jo >= 0:
                self.bands[jo] -= 1
            if jn >= 0:
                self.bands[jn] += 1

    def counts(self, tb: int) -> tuple[int, ...]:
        """Members in each window at evaluation bucket `tb`. Evaluation buckets must not decrease."""
        edges, bands, hist = self.edges, self.bands, self.hist
        if not hist:  # a stream whose actors were all dropped; the edges catch up when members come back
            return tuple(bands)
        last = len(edges) - 1
        for j, span in enumerate(self.spans):
            new_edge = tb - span
            old_edge = edges[j]
            if new_edge > old_edge:
                # Whatever crosses this edge lies in band j by now: an empty band spares the walk.
                crossed = _sum_between(hist, old_edge, new_edge) if bands[j] else 0
                if crossed:
                    bands[j] -= crossed
                    if j < last:
                        bands[j + 1] += crossed
                edges[j] = new_edge
        ahead = _sum_between(hist, tb, self.top) if self.top > tb and bands[0] else 0  # ahead lies in band 0
        out, total = [], -ahead
        for n in bands:
            total += n
            out.append(total)
        return tuple(out)

    def __len__(self) -> int:
        return sum(self.hist.values())


def _sum_between(hist: dict[int, int], lo: int, hi: int) -> int:
    """Members at buckets lo < b <= hi: walk the range or the histogram, whichever is shorter."""
    if hi - lo <= len(hist):
        return sum(map(hist.get, range(lo + 1, hi + 1), repeat(0)))
    return sum(n for b, n in hist.items() if lo < b <= hi)
