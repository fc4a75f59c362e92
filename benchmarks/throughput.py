"""End-to-end throughput of `engagewatch run` against a bare read-and-parse loop, measured alternately.

    python benchmarks/throughput.py [--events 1000000] [--rounds 3] [--file var/bench-1m.jsonl] [--detect]

Both sides run as whole processes (start-up included) on the same simulated file (2 % dirt): the baseline
only reads the lines and calls `orjson.loads` on each; the pipeline decodes, validates, applies and writes
the final exposition. Rounds alternate the two so that a busy machine slows both alike; the figures are the
medians. Each side's CPU time (user + system, from the kernel's accounting of the child) is reported beside
the wall clock: it leaves out time spent waiting for a core, though not a core slowed by its neighbours. With
`--detect`, each round also times `run --detect` (the decay detectors fed every 5 minutes of event time, as a
replay of history is). Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

BARE_LOOP = """
import sys, orjson
loads, error = orjson.loads, orjson.JSONDecodeError
with open(sys.argv[1], "rb") as f:
    for line in f:
        try:
            loads(line)
        except error:
            pass
"""


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system) of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def ensure_file(path: Path, events: int) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "streams.cli", "simulate", "--events", str(events), "--dirt", "0.02",
         "--out", str(path)],
        check=True,
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--file", type=Path, default=None, help="input file (simulated and kept if absent)")
    p.add_argument("--detect", action="store_true", help="also time the run with the decay detectors")
    args = p.parse_args()
    source = args.file or Path("var") / f"bench-{args.events}.jsonl"
    ensure_file(source, args.events)
    lines = sum(1 for _ in open(source, "rb"))

    sides: dict[str, list[tuple[float, float]]] = {"bare": [], "run": []}
    if args.detect:
        sides["run --detect"] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.prom")
        run = [sys.executable, "-m", "streams.cli", "run", "--source", str(source), "--clock", "event",
               "--metrics-out", out]
        bare = [sys.executable, "-c", BARE_LOOP, str(source)]
        commands = {"bare": bare, "run": run, "run --detect": run + ["--detect"]}
        for _ in range(args.rounds):
            for side, times in sides.items():
                times.append(timed(commands[side]))
    wall = {side: statistics.median(w for w, _ in times) for side, times in sides.items()}
    cpu = {side: statistics.median(c for _, c in times) for side, times in sides.items()}
    print("| date | machine | events | command | bare loop (s) | engagewatch (s) | ratio | CPU ratio | events/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for side in sides:
        if side != "bare":
            r = wall[side]
            print(f"| {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC | {platform.machine()}, {os.cpu_count()} cores, "
                  f"Python {platform.python_version()} | {lines:,} | `{side}` | {wall['bare']:.2f} | {r:.2f} "
                  f"| {r / wall['bare']:.2f}× | {cpu[side] / cpu['bare']:.2f}× | {lines / r:,.0f} |")
    for side, times in sides.items():
        print(f"rounds, {side}: wall {', '.join(f'{w:.2f}' for w, _ in times)} s; "
              f"CPU {', '.join(f'{c:.2f}' for _, c in times)} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
