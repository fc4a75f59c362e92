"""`engagewatch replay FILE|- [--rate N]`: produce a file of events into the interactions topic.

Keyed by account, idempotent, `acks=all`. A progress bar when stderr is a terminal; a summary line always;
exit status 1 when any record was not delivered, 130 when stopped by Ctrl-C or SIGTERM (the summary says how far
it got).
"""

from __future__ import annotations

import argparse
import os
import sys

HELP = "produce a file of events into the interactions topic"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE|-", help="JSON lines (wire format v1); - reads stdin")
    parser.add_argument("--rate", type=float, help="at most N records per second (default: as fast as possible)")
    parser.add_argument("--topic", help="target topic (default: ENGAGEWATCH_KAFKA__INTERACTIONS_TOPIC)")
    parser.add_argument("--bootstrap-servers", help="host:port[,host:port] (ENGAGEWATCH_KAFKA__BOOTSTRAP_SERVERS)")


def main(args: argparse.Namespace) -> int:
    from streams.kafka_clients import Unreachable
    from streams.kafka_replay import read_records, replay
    from streams.settings import load_settings

    if args.rate is not None and args.rate <= 0:
        print("engagewatch replay: --rate must be positive", file=sys.stderr)
        return 2
    settings = load_settings()
    if args.bootstrap_servers:
        settings = load_settings(kafka=settings.kafka.model_dump() | {"bootstrap_servers": args.bootstrap_servers})

    if args.file == "-":
        source, size = sys.stdin.buffer, None
    else:
        try:
            source = open(args.file, "rb")  # noqa: SIM115 - closed below
        except OSError as e:
            print(f"engagewatch replay: cannot read {args.file}: {e.strerror}", file=sys.stderr)
            return 2
        size = os.fstat(source.fileno()).st_size
    try:
        with _progress(size) as advance:
            report = replay(settings, read_records(source), rate=args.rate, progress=advance, topic=args.topic)
    except Unreachable as e:
        print(f"engagewatch replay: {e}", file=sys.stderr)
        return 1
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    print(report.summary(), file=sys.stderr)
    return 1 if report.failed else 130 if report.interrupted else 0


class _progress:
    """A rich progress bar over the input bytes when stderr is a terminal; a no-op otherwise."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.bar = None

    def __enter__(self):
        if not sys.stderr.isatty():
            return None
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

        self.bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.bar.start()
        task = self.bar.add_task("replaying", total=self.total)
        bar = self.bar
        return lambda n: bar.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
