"""`engagewatch backtest`: run the detectors over seeded, labelled scenarios and score them.

Each scenario (`streams.backtest_scenarios`) is one stream observed every tick; a fresh `DecayMonitor` sees its
snapshots exactly as the runtime would feed it, and the alerts it emits are scored against the labels:

* decay recall and detection delay (first `EngagementDecay` firing of any window between onset and 3 h after the
  end), next to the information limit of sudden decays: ln(168)/KL hours, KL = r1·ln(r1/r0) + r0 − r1, r0 the
  true mean rate over the 24 h after onset and r1 = (1 − size)·r0 (Lorden's bound for one false alarm a week);
* false decay alerts per monitored stream-week (after the one-week warm-up, each (stream, window) episode that
  is not within a labelled decay counts);
* silence recall on outages, hollow-growth and onboarding-collapse recall, delay and false alerts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict
from multiprocessing import Pool

from processors.decay import DECAY, HOLLOW, ONBOARDING, SILENT, DecayConfig, DecayMonitor
from streams.arguments import output_file, positive_int, positive_number
from streams.backtest_scenarios import DAY_MS, HOUR_MS, Scenario, scenario_grid, scenario_shape, simulate, true_rate

HELP = "score the decay detectors on labelled simulated scenarios"
SLACK_MS = 3 * HOUR_MS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--per-cell", type=positive_int, default=8, help="streams per scenario cell (default 8)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=positive_int, default=14)
    parser.add_argument("--tick", type=positive_int, default=300, help="evaluation tick in seconds (default 300)")
    parser.add_argument("--min-rate", type=positive_number, default=4.0, help="smallest follower engagements per hour")
    parser.add_argument("--max-rate", type=positive_number, default=100.0, help="largest follower engagements per hour")
    parser.add_argument("--campaigns", action="store_true",
                        help="give every stream tagged campaigns (6–30 h lifts of 1.2–1.6×, like the simulator's)")
    parser.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=output_file, metavar="FILE", help="also write every scenario's outcome as JSON")


def run_scenario(args: tuple[Scenario, int, DecayConfig]) -> dict:
    """Run one scenario through a fresh monitor; returns its labels and the alert transitions."""
    s, tick_ms, cfg = args
    monitor = DecayMonitor(cfg)
    alerts = []
    for T, obs in simulate(s, tick_ms):
        for a in monitor.observe(T, (obs,)):
            alerts.append((T, a.status, a.alertname, a.label("window"), a.severity))
    return {"scenario": s, "alerts": alerts}


def _episodes(alerts: list, name: str) -> list[tuple[int, str | None]]:
    """Start times of alert episodes: firings of `name` that were not an escalation or de-escalation."""
    active: set = set()
    starts = []
    for T, status, alertname, window, _severity in alerts:
        if alertname != name:
            continue
        key = window
        if status == "resolved":
            active.discard(key)
            # a re-firing at the same T (severity change) is the same episode
            continue
        if key not in active and not any(t == T and st == "resolved" and n == name and w == window
                                         for t, st, n, w, _ in alerts):
            starts.append((T, window))
        active.add(key)
    return starts


def information_limit_h(s: Scenario) -> float:
    """Lorden's bound ln(168)/KL for the sudden decay of `s`, r0 the true mean rate over the 24 h after onset."""
    assert s.decay_onset_ms is not None
    shape = scenario_shape(s)
    r0 = statistics.fmean(
        true_rate(s, shape, s.decay_onset_ms + k * 600_000, effects=False) for k in range(144)
    )
    r1 = (1 - s.decay_size) * r0
    kl = r1 * math.log(r1 / r0) + r0 - r1
    return math.log(168) / kl


def score(results: list[dict], cfg: DecayConfig) -> dict:
    """Recall, false alerts per monitored stream-week and delays, per detector and cell."""
    rows: dict = {}
    warm_ms = int(cfg.warmup_h * HOUR_MS)

    def cell(key: str) -> dict:
        return rows.setdefault(key, {"n": 0, "hit": 0, "delays": [], "limits": [], "false": 0, "weeks": 0.0})

    for r in results:
        s: Scenario = r["scenario"]
        alerts = r["alerts"]
        weeks = (s.end_ms - s.start_ms - warm_ms) / (7 * DAY_MS)
        decays = _episodes(alerts, DECAY)
        if s.decay_onset_ms is not None:
            end = (s.decay_end_ms or s.end_ms) + SLACK_MS
            lasting = ((s.decay_end_ms or s.end_ms) - s.decay_onset_ms) / HOUR_MS
            key = f"decay {s.kind} {s.decay_size:.0%}"
            c = cell(key)
            c["n"] += 1
            c["weeks"] += weeks
            hits = [T for T, _ in decays if s.decay_onset_ms <= T <= end]
            if hits:
                c["hit"] += 1
                c["delays"].append((hits[0] - s.decay_onset_ms) / HOUR_MS)
            c["false"] += sum(1 for T, _ in decays if not s.decay_onset_ms <= T <= end)
            if s.kind == "sudden":
                c["limits"].append(information_limit_h(s))
            if s.decay_size >= 0.3 - 1e-9 and lasting >= 12:
                t = cell("decay ≥30 % lasting ≥12 h (target)")
                t["n"] += 1
                t["hit"] += bool(hits)
                if hits:
                    t["delays"].append((hits[0] - s.decay_onset_ms) / HOUR_MS)
        else:
            c = cell(f"decay false alerts on {s.kind}")
            c["weeks"] += weeks
            c["false"] += len(decays)
        if s.kind == "sudden":
            t = cell("decay sudden (all sizes) vs limit")
            t["n"] += 1
            hits = [T for T, _ in decays if s.decay_onset_ms <= T <= (s.decay_end_ms or s.end_ms) + SLACK_MS]
            t["hit"] += bool(hits)
            t["limits"].append(information_limit_h(s))
            if hits:
                t["delays"].append((hits[0] - s.decay_onset_ms) / HOUR_MS)
        silences = _episodes(alerts, SILENT)
        sc = cell("silence")
        sc["weeks"] += weeks
        for a, b in s.outages:
            sc["n"] += 1
            hit = [T for T, _ in silences if a <= T <= b]
            if hit:
                sc["hit"] += 1
                sc["delays"].append((hit[0] - a) / HOUR_MS)
        sc["false"] += sum(1 for T, _ in silences if T >= s.start_ms + warm_ms and not any(a <= T <= b for a, b in s.outages))
        for name, at, kind in ((HOLLOW, s.bought_at_ms, "hollow growth"), (ONBOARDING, s.onboarding_onset_ms, "onboarding collapse")):
            eps = _episodes(alerts, name)
            c = cell(kind)
            c["weeks"] += weeks
            if at is not None:
                c["n"] += 1
                hit = [T for T, _ in eps if T >= at]
                if hit:
                    c["hit"] += 1
                    c["delays"].append((hit[0] - at) / HOUR_MS)
                c["false"] += sum(1 for T, _ in eps if T < at)
            else:
                c["false"] += len(eps)
    return rows


def render_rows(rows: dict) -> str:
    """The markdown table of `score`'s rows."""

    def med(xs: list[float]) -> str:
        return f"{statistics.median(xs):.1f}" if xs else "–"

    lines = [
        "| cell | streams | recall | false alerts / stream-week | median delay (h) | p90 delay (h) | median limit (h) |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in sorted(rows):
        c = rows[key]
        recall = f"{c['hit'] / c['n']:.2f}" if c["n"] else "–"
        fa = f"{c['false'] / c['weeks']:.2f}" if c["weeks"] else "–"
        d = sorted(c["delays"])
        p90 = f"{d[min(len(d) - 1, int(0.9 * len(d)))]:.1f}" if d else "–"
        lines.append(f"| {key} | {c['n'] or '–'} | {recall} | {fa} | {med(d)} | {p90} | {med(c['limits'])} |")
    return "\n".join(lines)


def render(rows: dict, seconds: float, n: int, args: argparse.Namespace) -> str:
    lines = [render_rows(rows), ""]
    lines.append(
        f"{n} streams × {args.days} days, tick {args.tick} s, seed {args.seed}, rates {args.min_rate:g}–{args.max_rate:g}"
        f" follower engagements/h, campaigns {'on' if args.campaigns else 'off'}; {seconds:.0f} s on {os.cpu_count()} cores ({platform.processor() or platform.machine()},"
        f" Python {platform.python_version()}), {time.strftime('%Y-%m-%d')}."
    )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    if args.min_rate > args.max_rate:
        print(f"engagewatch backtest: --min-rate {args.min_rate:g} is above --max-rate {args.max_rate:g}",
              file=sys.stderr)
        return 2
    cfg = DecayConfig()
    grid = scenario_grid(per_cell=args.per_cell, seed=args.seed, rate_range=(args.min_rate, args.max_rate), days=args.days,
                         campaigns=args.campaigns)
    started = time.perf_counter()
    work = [(s, args.tick * 1000, cfg) for s in grid]
    if args.jobs > 1:
        with Pool(args.jobs) as pool:
            results = pool.map(run_scenario, work, chunksize=4)
    else:
        results = [run_scenario(w) for w in work]
    seconds = time.perf_counter() - started
    rows = score(results, cfg)
    print(render(rows, seconds, len(grid), args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                [{"scenario": asdict(r["scenario"]), "alerts": r["alerts"]} for r in results], f, indent=None
            )
    return 0
