"""Resident memory per tracked (stream, actor) pair, at about a million distinct pairs.

    python benchmarks/memory.py [--events 1400000] [--actors 1000000]

Simulates a population large enough that nearly every actor is new, feeds it to one engine batch by batch
as `engagewatch run` does, and divides the growth of the resident set by the pairs held in state. The input
is streamed from a file, so the figure is the engine's state, not the input.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from processors.engine import Engine
from streams.runner import file_batches


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=1_400_000)
    p.add_argument("--actors", type=int, default=1_000_000, help="mean population per stream")
    args = p.parse_args()
    source = Path("var") / f"memory-{args.events}-{args.actors}.jsonl"
    if not source.exists():
        source.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "streams.cli", "simulate", "--events", str(args.events), "--actors",
             str(args.actors), "--rate", "5000", "--out", str(source)],
            check=True,
        )

    engine = Engine()
    gc.collect()
    before = rss_bytes()
    with open(source, "rb") as f:
        for batch in file_batches(f):
            engine.feed(batch.lines)
            gc.freeze()
    snap = engine.snapshot(engine.event_time())
    gc.unfreeze()
    gc.collect()
    grown = rss_bytes() - before
    pairs = sum(s.actors for s in snap.streams)
    print("| date | machine | events | tracked pairs | RSS growth (MiB) | bytes per pair |")
    print("|---|---|---|---|---|---|")
    print(f"| {datetime.now(timezone.utc):%Y-%m-%d} | {platform.machine()}, Python {platform.python_version()} "
          f"| {args.events:,} | {pairs:,} | {grown / 2**20:.0f} | {grown / pairs:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
