"""`engagewatch simulate`: write a seeded synthetic stream of interaction events (wire format v1) as JSON lines."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from contextlib import nullcontext
from itertools import islice
from typing import BinaryIO

import orjson

from streams.arguments import count, duration_ms, output_file, parsed, same_file, share
from streams.simulator import BoughtFollowers, Decay, SimSpec, generate, parse_time

HELP = "write realistic synthetic interaction events (wire format v1)"
_BATCH = 10_000  # lines per write: few syscalls without holding the whole file in memory


def _platforms(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SimSpec()
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default %(default)s)")
    parser.add_argument("--accounts", type=count, default=defaults.accounts,
                        help="number of brand accounts: acme, globex, initech, … (default %(default)s)")
    parser.add_argument("--platforms", type=_platforms, default=defaults.platforms, metavar="LIST",
                        help="comma-separated platforms, each account is on all (default instagram,tiktok,x)")
    parser.add_argument("--start", type=parsed(parse_time), default=defaults.start_ms, metavar="TIME",
                        help="RFC 3339 time or epoch ms of the first event (default 2026-01-01T00:00:00Z)")
    parser.add_argument("--duration", type=duration_ms, default=None, metavar="DUR",
                        help="simulated time, e.g. 2d (default 1d, or unbounded when --events is given)")
    parser.add_argument("--events", type=count, default=None, metavar="N",
                        help="stop after exactly N lines, dirt included")
    parser.add_argument("--actors", type=count, default=defaults.actors, metavar="N",
                        help="mean population (followers and outsiders) per stream (default %(default)s)")
    parser.add_argument("--rate", type=float, default=defaults.rate, metavar="PER_HOUR",
                        help="mean events per stream per hour before seasonality (default %(default)s)")
    parser.add_argument("--active-share", type=share, default=defaults.active_share, metavar="SHARE",
                        help="share of followers who ever engage (default %(default)s)")
    parser.add_argument("--no-campaigns", dest="campaigns", action="store_false", help="run no campaigns")
    parser.add_argument("--decay", type=parsed(Decay.parse), action="append", default=[], metavar="SPEC",
                        help="drop of the followers' engagement rate, repeatable: "
                             "[ACCOUNT[/PLATFORM]=]DROP@AT[:sudden|:gradual:RAMP], e.g. 0.4@36h")
    parser.add_argument("--bought-followers", type=parsed(BoughtFollowers.parse), action="append", default=[],
                        metavar="SPEC", help="spike of follows that never engage, repeatable: "
                                             "[ACCOUNT[/PLATFORM]=]N@AT[:OVER], e.g. 5000@30h")
    parser.add_argument("--dirt", type=share, default=defaults.dirt, metavar="SHARE",
                        help="share of records made dirty: duplicates, reordering, late, invalid (default 0)")
    parser.add_argument("--out", type=output_file, default="-", metavar="FILE",
                        help="output file, - for stdout (default)")
    parser.add_argument("--labels", type=output_file, default=None, metavar="FILE",
                        help="also write the injected anomalies' ground truth, one JSON object per line")


def spec_from_args(args: argparse.Namespace) -> SimSpec:
    """The SimSpec the parsed flags describe."""
    duration = args.duration
    if duration is None and args.events is None:
        duration = SimSpec().duration_ms
    return SimSpec(
        seed=args.seed, accounts=args.accounts, platforms=args.platforms, start_ms=args.start, duration_ms=duration,
        events=args.events, actors=args.actors, rate=args.rate, active_share=args.active_share,
        campaigns=args.campaigns, decays=tuple(args.decay), bought=tuple(args.bought_followers), dirt=args.dirt,
    )


def write_lines(spec: SimSpec, out: BinaryIO) -> int:
    """Write the simulated stream to `out`, newline-terminated; returns the number of lines."""
    lines = generate(spec)
    count = 0
    while batch := list(islice(lines, _BATCH)):
        out.write(b"\n".join(batch) + b"\n")
        count += len(batch)
    return count


def main(args: argparse.Namespace) -> int:
    try:
        spec = spec_from_args(args)
    except ValueError as e:
        print(f"engagewatch simulate: {e}", file=sys.stderr)
        return 2
    clash = same_file({"--out": args.out, "--labels": args.labels})
    if clash:
        print(f"engagewatch simulate: {clash}", file=sys.stderr)
        return 2
    if args.labels:
        with open(args.labels, "wb") as f:
            f.writelines(orjson.dumps(dataclasses.asdict(a)) + b"\n" for a in spec.anomalies())
    target = nullcontext(sys.stdout.buffer) if args.out == "-" else open(args.out, "wb")
    try:
        with target as out:
            write_lines(spec, out)
            out.flush()
    except BrokenPipeError:
        # `simulate | head` closed the pipe: not an error; keep the interpreter's final flush quiet too.
        sys.stdout = open(os.devnull, "w")
    return 0
