"""How close to the bare loop an exact engine can get in Python: a ladder of loops, each doing a little more of
what every record needs, against the engine's own `feed`, alternated in one process.

    python benchmarks/floor.py [--file var/bench-1000000.jsonl] [--rounds 7]

Steps, each including the ones above it:
  bare       `orjson.loads` on each line (the throughput benchmark's baseline, without its start-up)
  decode     msgspec decoding into the engine's typed `Record`, unpacked into locals
  timestamp  `ts` to epoch milliseconds, with the engine's own tables and hour memo
  dedup      the account's state, and its ids remembered for two generations of about an hour's records each
  actor      one look-up of the actor's row on its stream, and one write of its ts into a column
  engine     `Engine.feed`: everything the contract asks (windows, follower status, cohorts, audience, campaigns)

The ladder leaves out what a whole run pays besides: start-up, reading the file and the final exposition. Its
`actor` step is a lower bound for any exact engine written as a per-record Python loop: each record must be
decoded, timed, deduplicated and attributed to an actor. Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from array import array
from datetime import datetime, timezone
from pathlib import Path

import orjson
from msgspec.structs import astuple

from processors.engine import Engine
from processors.wire import FRACTION_MS, MINUTE_SECOND_MS, Validator, decode_record
from streams.runner import file_batches

GENERATION = 1_500  # records of one account per id generation: about an hour of the benchmark file, the horizon


def bare(batches: list[list[bytes]]) -> None:
    loads, error = orjson.loads, orjson.JSONDecodeError
    for lines in batches:
        for raw in lines:
            try:
                loads(raw)
            except error:
                pass


class _Account:
    __slots__ = ("ids", "old_ids", "count", "streams")

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.old_ids: dict[str, int] = {}
        self.count = 0
        self.streams: dict[str, dict[str, int]] = {}


def ladder(batches: list[list[bytes]], steps: int) -> None:
    """The first `steps` steps after `bare`; records that do not decode are skipped."""
    validator = Validator()
    hours = validator.hours
    hour_prefix, hour_ms = "\0", 0
    accounts: dict[str, _Account] = {}
    column = array("q", bytes(8 * 4_000_000))
    for lines in batches:
        for raw in lines:
            try:
                ident, ts, platform_, account, _, actor, _, _, _, _ = astuple(decode_record(raw))
            except Exception:
                continue
            if steps < 2:
                continue
            if type(ts) is str:
                if not ts.startswith(hour_prefix):
                    if ts[:14] not in hours and type(validator._epoch_ms(ts)) is not int:
                        continue  # the validator remembers a valid hour
                    hour_prefix = ts[:14]
                    hour_ms = hours[hour_prefix]
                tail = FRACTION_MS.get(ts[19:])
                minute_second = MINUTE_SECOND_MS.get(ts[14:19])
                if tail is None or minute_second is None:
                    continue
                ts = hour_ms + minute_second + tail
            if steps < 3:
                continue
            gate = accounts.get(account)
            if gate is None:
                gate = accounts[account] = _Account()
            if ident in gate.ids or ident in gate.old_ids:
                continue
            gate.ids[ident] = ts
            gate.count += 1
            if gate.count == GENERATION:
                gate.old_ids, gate.ids, gate.count = gate.ids, {}, 0
            if steps < 4 or actor is None:
                continue
            rows = gate.streams.get(platform_)
            if rows is None:
                rows = gate.streams[platform_] = {}
            row = rows.get(actor)
            if row is None:
                row = rows[actor] = len(rows)
            column[row] = ts


def engine(batches: list[list[bytes]]) -> None:
    e = Engine()
    for lines in batches:
        e.feed(lines)
        gc.freeze()  # as the runner does after each batch
    gc.unfreeze()


STEPS = {
    "bare": bare,
    "decode": lambda b: ladder(b, 1),
    "timestamp": lambda b: ladder(b, 2),
    "dedup": lambda b: ladder(b, 3),
    "actor": lambda b: ladder(b, 4),
    "engine": engine,
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--file", type=Path, default=Path("var/bench-1000000.jsonl"),
                   help="input (make it with benchmarks/throughput.py)")
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()
    with open(args.file, "rb") as f:
        batches = [batch.lines for batch in file_batches(f)]
    records = sum(map(len, batches))
    gc.freeze()
    seconds: dict[str, list[float]] = {name: [] for name in STEPS}
    for _ in range(args.rounds):
        for name, step in STEPS.items():
            gc.collect()
            started = time.process_time()
            step(batches)
            seconds[name].append(time.process_time() - started)
    # The least of the rounds as well as their median: on a shared machine, noise only ever adds time.
    base, base_min = statistics.median(seconds["bare"]), min(seconds["bare"])
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, Python {platform.python_version()}, "
          f"{records:,} records, CPU seconds of {args.rounds} alternated rounds\n")
    print("| step | median (s) | × bare | least (s) | × bare | ns per record (least) |")
    print("|---|---|---|---|---|---|")
    for name, times in seconds.items():
        median, least = statistics.median(times), min(times)
        print(f"| {name} | {median:.2f} | {median / base:.2f}× | {least:.2f} | {least / base_min:.2f}× "
              f"| {least / records * 1e9:.0f} |")
    for name, times in seconds.items():
        print(f"rounds, {name}: {', '.join(f'{t:.2f}' for t in times)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
