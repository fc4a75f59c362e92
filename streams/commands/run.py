"""`engagewatch run`: process a file (to its end) or stdin (until EOF) with the embedded runner."""

from __future__ import annotations

import argparse
import gzip
import sys
import time
import zlib

from processors.engine import Engine
from streams import logs
from streams.arguments import output_file, port_number, same_file
from streams.exporter import serve
from streams.progress import Progress
from streams.runner import (
    DeadLetterFile, EmbeddedRunner, file_batches, follow_batches, open_source, start_detection,
)
from streams.settings import add_engine_arguments, settings_from_args
from streams.stopping import stop_between_batches

HELP = "process a file or stdin with the embedded runner (no broker)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", required=True, metavar="PATH|-",
                   help="a .jsonl file (read through gzip when its name ends in .gz), or - for stdin")
    p.add_argument("--clock", choices=("event", "wall"),
                   help="evaluation time: the largest applied ts (event) or now (wall); "
                        "default event for a file, wall for stdin")
    p.add_argument("--metrics-out", type=output_file, metavar="FILE", help="write the final Prometheus exposition here")
    p.add_argument("--metrics-port", type=port_number, metavar="N",
                   help="serve /metrics on this port while running (default: ENGAGEWATCH_METRICS_PORT for "
                        "stdin; not served for a file unless given; 0 disables)")
    p.add_argument("--dead-letter", type=output_file, metavar="FILE", help="write rejected records here as JSON lines")
    p.add_argument("--alerts-out", type=output_file, metavar="FILE",
                   help="run the decay detectors and write their alerts here, one JSON object per line")
    p.add_argument("--detect", action="store_true",
                   help="run the decay detectors (implied by --alerts-out, and when following stdin)")
    add_engine_arguments(p)


def main(args: argparse.Namespace) -> int:
    clash = same_file({"--source": args.source, "--metrics-out": args.metrics_out, "--dead-letter": args.dead_letter,
                       "--alerts-out": args.alerts_out})
    if clash:
        print(f"engagewatch run: {clash}", file=sys.stderr)
        return 2
    settings = settings_from_args(args)
    logs.configure(settings.log_level, settings.log_format)
    log = logs.get("engagewatch.run")
    live = args.source == "-"
    clock = args.clock or ("wall" if live else "event")
    runner = EmbeddedRunner(Engine(settings.engine_config()), clock)
    if args.detect or args.alerts_out or live:
        start_detection(runner, settings, alerts_out=args.alerts_out)

    port = args.metrics_port if args.metrics_port is not None else (settings.metrics_port if live else 0)
    server = None
    if port:
        server = serve(runner.collector, settings.metrics_host, port,
                       settings.metrics_tls_certfile, settings.metrics_tls_keyfile)
        log.info("serving metrics", host=settings.metrics_host, port=port)

    try:
        source = sys.stdin.buffer if live else open_source(args.source)
    except OSError as e:
        print(f"engagewatch run: cannot read --source {args.source}: {e.strerror}", file=sys.stderr)
        return 2
    batches = follow_batches(source.fileno()) if live else file_batches(source)
    dead_letters = DeadLetterFile(args.dead_letter, args.source) if args.dead_letter else None
    progress = Progress(runner)
    started = time.perf_counter()
    try:
        with stop_between_batches() as stop:
            for batch in batches:
                if batch is None:
                    runner.idle()
                else:
                    dead = runner.feed(batch)
                    if dead and dead_letters:
                        try:
                            dead_letters.write(batch, dead)
                        except OSError as e:
                            return _cannot_write("--dead-letter", args.dead_letter, e, runner)
                progress.update()
                if stop:
                    log.info("stopping", signal=stop.signal_name)
                    break
    except KeyboardInterrupt:
        log.info("interrupted")
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:  # a .gz source that is not gzip, truncated or corrupt
        print(f"engagewatch run: cannot read --source {args.source}: {e}", file=sys.stderr)
        return 2
    finally:
        progress.close()
        if dead_letters:
            dead_letters.close()
        if not live:  # stdin may still be blocked in the reader thread's read, holding the buffer's lock
            source.close()

    runner.close()
    if args.metrics_out:
        try:
            runner.write_exposition(args.metrics_out)
        except OSError as e:
            return _cannot_write("--metrics-out", args.metrics_out, e, runner)
    if server is not None:
        server.shutdown()
    log.info("done", records=runner.records, seconds=round(time.perf_counter() - started, 3),
             streams=runner.engine.stream_count, **runner.engine.outcomes())
    return 0


def _cannot_write(option: str, path: str, error: OSError, runner: EmbeddedRunner) -> int:
    """An output failed (a full disk): stop, since nothing lost can no longer be promised, and say where."""
    print(f"engagewatch run: cannot write {option} {path}: {error.strerror or error}; stopped after "
          f"{runner.records} records", file=sys.stderr)
    return 1
