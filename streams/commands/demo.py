"""`engagewatch demo`: a simulated live campaign, processed as it happens, served on /metrics and shown.

The simulated clock starts `--warmup` before now, replays that history at once so every window has data,
then runs `--speed` times faster than real time. The engine evaluates on that simulated clock.
"""

from __future__ import annotations

import argparse
import sys
import time

from rich.console import Console
from rich.live import Live

from processors.config import format_duration
from processors.engine import Engine
from streams import logs
from streams.arguments import (
    duration_ms, output_file, parsed, port_number, positive_int, positive_number, share,
)
from streams.exporter import serve
from streams.runner import Batch, EmbeddedRunner, start_detection
from streams.settings import add_engine_arguments, settings_from_args
from streams.simulator import Decay, SimSpec, timeline
from streams.view import stream_table

HELP = "simulate a live campaign, process it as it happens and show it"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--speed", type=positive_number, default=60.0, help="simulated seconds per real second (default 60)")
    p.add_argument("--warmup", type=duration_ms, default="8d",
                   help="simulated history replayed at start, so that windows are full and the detectors have "
                        "learned their baselines (default 8d; they need 7 days before they report a decay)")
    p.add_argument("--for", dest="run_for", type=duration_ms, default=None, metavar="DURATION",
                   help="stop after this much real time, e.g. 30s (default: until Ctrl-C)")
    p.add_argument("--accounts", type=positive_int, default=3, help="simulated brand accounts (default 3)")
    p.add_argument("--platforms", default="instagram,tiktok,x", help="comma-separated platforms")
    p.add_argument("--rate", type=positive_number, default=400.0, help="mean events per stream per simulated hour")
    p.add_argument("--decay", type=parsed(Decay.parse), action="append", default=None, metavar="SPEC",
                   help="inject a decay, as for `simulate` (default: acme/instagram=0.5 from 1 simulated hour "
                        "after the warm-up)")
    p.add_argument("--dirt", type=share, default=0.01, help="share of dirty records (default 0.01)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--alerts-out", type=output_file, metavar="FILE",
                   help="also write the detectors' alerts here as JSON lines")
    p.add_argument("--metrics-port", type=port_number, default=None, metavar="N",
                   help="serve /metrics here (default ENGAGEWATCH_METRICS_PORT, 9464; 0 disables)")
    add_engine_arguments(p)


def main(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    logs.configure(settings.log_level, settings.log_format)
    log = logs.get("engagewatch.demo")
    warmup_ms = args.warmup
    run_for_s = args.run_for / 1000 if args.run_for is not None else None

    started_wall = time.time()
    start_ms = int(started_wall * 1000) - warmup_ms
    decays = args.decay
    if decays is None:  # acme/instagram halves an hour into the live part
        decays = [Decay.parse(f"acme/instagram=0.5@{warmup_ms // 1000 + 3600}s")]
    try:
        spec = SimSpec(
            seed=args.seed, accounts=args.accounts, platforms=tuple(args.platforms.split(",")), start_ms=start_ms,
            duration_ms=None, rate=args.rate, dirt=args.dirt, decays=tuple(decays),
        )
    except ValueError as e:  # a platform name the wire format refuses, say
        print(f"engagewatch demo: {e}", file=sys.stderr)
        return 2
    events = timeline(spec)

    def sim_now() -> int:
        return start_ms + warmup_ms + int((time.monotonic() - started) * args.speed * 1000)

    runner = EmbeddedRunner(Engine(settings.engine_config()), "wall", now_ms=sim_now)
    start_detection(runner, settings, alerts_out=args.alerts_out)
    started = time.monotonic()
    port = settings.metrics_port if args.metrics_port is None else args.metrics_port
    server = serve(runner.collector, settings.metrics_host, port,
                   settings.metrics_tls_certfile, settings.metrics_tls_keyfile) if port else None
    log.info("demo started", metrics=f"http://{settings.metrics_host}:{port}/metrics" if port else None,
             speed=args.speed, streams=len(spec.streams()))

    console = Console(stderr=False)
    live = Live(console=console, auto_refresh=False) if console.is_terminal else None
    try:  # Ctrl-C stops the demo cleanly, in the warm-up too
        history: list[bytes] = []
        with console.status(f"replaying {format_duration(warmup_ms)} of simulated history so that windows and "
                            "baselines are full…"):
            for emitted, line in events:
                if emitted > start_ms + warmup_ms:
                    break
                history.append(line)
            runner.feed(Batch(history, 1), history=True)
        line_no = len(history) + 1
        pending: tuple[int, bytes] | None = (emitted, line)
        log.info("warm-up replayed", records=len(history))

        last_shown, shown_records, rate = 0.0, 0, 0.0
        if live:
            live.start()
        while run_for_s is None or time.monotonic() - started < run_for_s:
            now = sim_now()
            batch = []
            if pending is not None and pending[0] <= now:
                batch.append(pending[1])
                pending = None
            if pending is None:
                for emitted, line in events:
                    if emitted > now:
                        pending = (emitted, line)
                        break
                    batch.append(line)
            if batch:
                runner.feed(Batch(batch, line_no))
                line_no += len(batch)
            else:
                runner.idle()
            mono = time.monotonic()
            if mono - last_shown >= 1.0:
                rate = (runner.records - shown_records) / (mono - last_shown) if last_shown else 0.0
                last_shown, shown_records = mono, runner.records
                snap = runner.snapshot()
                if live:
                    live.update(stream_table(snap, rate, _states(runner)), refresh=True)
                else:
                    log.info("progress", records=runner.records, events_per_s=round(rate), **snap.outcomes)
            # Pacing the simulated source against the clock; nothing is awaited here.
            time.sleep(0.05)
    except KeyboardInterrupt:
        pass
    finally:
        if live:
            live.stop()
        runner.close()
        if server is not None:
            server.shutdown()
    log.info("demo stopped", records=runner.records)
    return 0



_STATE_NAMES = ("ok", "warning", "critical")


def _states(runner: EmbeddedRunner) -> dict[tuple[str, str], str]:
    """The worst detector state of each stream, for the view."""
    out = {}
    for h in runner.detection.monitor.state().streams:
        worst = max((w.state or 0 for w in h.windows), default=0)
        out[(h.account, h.platform)] = "silent" if h.silent else _STATE_NAMES[worst]
    return out
