"""Whether a run's cost per record stays flat as the history it covers grows.

    python benchmarks/long_history.py [--events 1000000] [--scale 3] [--rounds 2]

The simulator covers days; a log exported from a platform can cover years, thousands of accounts and follows
that are kept for good, which is what makes state (and any pass over it) grow with history. This writes two
such logs at the same density, one `--scale` times longer than the other (a day of history per 1 000 records,
5 000 accounts on two platforms, 2 million possible actors, 10 % follows and 3 % unfollows), and times
`engagewatch run` and the bare read-and-parse loop of `throughput.py` on each, alternately. Prints a Markdown
table for docs/benchmarks.md: the run's ratio to the bare loop and its peak memory should not grow with the length.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson

from throughput import BARE_LOOP

START_MS = 1_546_300_800_000  # 2019-01-01T00:00:00Z
TYPES = ("like", "comment", "share", "reply", "follow", "unfollow", "view")
WEIGHTS = (50, 10, 5, 5, 10, 3, 17)


def write_log(path: Path, events: int, seed: int) -> None:
    """`events` records over `events / 1000` days, in time order, timestamps in whole seconds."""
    rng = random.Random(seed)
    step = 86_400_000 / 1_000
    t = float(START_MS)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        for k in range(events):
            t += rng.expovariate(1 / step)
            ms = int(t) - int(t) % 1_000
            at = datetime.fromtimestamp(ms / 1_000, timezone.utc)
            record = {
                "id": str(10**12 + k),
                # Both ways of writing UTC that exports use.
                "ts": at.isoformat() if k % 2 else at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "platform": "x" if k % 3 else "instagram",
                "account": f"acct{min(4_999, int(rng.paretovariate(1.1)) - 1)}",
                "type": rng.choices(TYPES, WEIGHTS)[0],
                "actor": str(rng.randrange(2_000_000)),
            }
            if rng.random() < 0.3:
                record["actor_followers"] = rng.randrange(100_000)
            out.write(orjson.dumps(record) + b"\n")


def run_measured(cmd: list[str]) -> tuple[float, float]:
    """Seconds and peak resident memory (MiB) of one whole process."""
    started = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd} failed")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=1_000_000, help="records of the shorter log")
    p.add_argument("--scale", type=int, default=3, help="how many times longer the other log is")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.prom")
        for events in (args.events, args.events * args.scale):
            source = Path("var") / f"history-{events}.jsonl"
            if not source.exists():
                write_log(source, events, seed=events)
            bare, run, peak = [], [], 0.0
            for _ in range(args.rounds):
                bare.append(run_measured([sys.executable, "-c", BARE_LOOP, str(source)])[0])
                seconds, rss = run_measured([sys.executable, "-m", "streams.cli", "run", "--source", str(source),
                                             "--clock", "event", "--metrics-out", out])
                run.append(seconds)
                peak = max(peak, rss)
            b, r = statistics.median(bare), statistics.median(run)
            rows.append((events, b, r, peak))
            print(f"{events:,}: bare {', '.join(f'{x:.2f}' for x in bare)}; run {', '.join(f'{x:.2f}' for x in run)}",
                  file=sys.stderr)
    print("| date | machine | records | days | bare loop (s) | engagewatch run (s) | ratio | µs per record "
          "| peak memory (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for events, b, r, peak in rows:
        print(f"| {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC | {platform.machine()}, {os.cpu_count()} cores, "
              f"Python {platform.python_version()} | {events:,} | {events // 1_000:,} | {b:.2f} | {r:.2f} | "
              f"{r / b:.2f}× | {r / events * 1e6:.1f} | {peak:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
