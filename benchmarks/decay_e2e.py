"""End-to-end check of the decay detectors: simulator → wire-format file → `engagewatch run` → alerts → score.

Unlike `engagewatch backtest` (which simulates the engine's snapshots directly), every scenario here is a
`streams.simulator` world in wire format v1 — tagged campaigns on (`--campaigns off`: none, the issue's shape),
daily and weekly seasonality in the account's local time, a little dirt — replayed through the real engine and runtime with
`engagewatch run --source X.jsonl --clock event --alerts-out alerts.jsonl` (in-process through `streams.cli.main`).
The alerts written are scored with the backtest's metrics:

* decay recall and delay (first `EngagementDecay` firing of any window from the onset to the end of the run),
  with Lorden's information limit ln(168)/KL for sudden decays, r0 the stream's follower engagements per hour
  over the 24 h after onset in the organic world (counted in the file, divided by the kept share);
* false decay alerts per monitored stream-week (after the week of warm-up) on stable, outage and
  bought-follower streams, and on decayed streams before their onset;
* silence recall on 3 h outages (every record of the stream cut from the file), hollow growth on bought
  followers.

Each spec is one simulated world of `accounts` × 3 platforms over two weeks; streams get labels round-robin:
stable, outage, sudden and gradual (6 h) decays of 15–60 % starting on days 8–12, bought followers. Three rate
levels (`rate` events per stream-hour, about 0.4 of them follower engagements): a few, ~25 and ~100 follower
engagements an hour.

    python benchmarks/decay_e2e.py                # all specs, 2 processes, prints the table
    python benchmarks/decay_e2e.py --seeds 1 2 3  # more worlds
    python benchmarks/decay_e2e.py --campaigns off  # worlds without campaigns
    python benchmarks/decay_e2e.py --record DIR   # also keep the engine's snapshots per tick (for tuning)
    python benchmarks/decay_e2e.py --replay DIR   # score a fresh DecayMonitor on recorded snapshots (seconds)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import platform
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing import Pool

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import orjson  # noqa: E402

from processors.alert_event import rfc3339  # noqa: E402,F401
from processors.decay import DECAY, HOLLOW, SILENT, DecayConfig, DecayMonitor  # noqa: E402
from streams.backtest_scenarios import ObservedStream  # noqa: E402
from streams.commands.backtest import _episodes, render_rows  # noqa: E402
from streams.simulator import DAY_MS, HOUR_MS, BoughtFollowers, Decay, SimSpec, account_name, timeline  # noqa: E402

PLATFORMS = ("instagram", "tiktok", "x")
KINDS = ("stable", "outage", "sudden", "gradual", "stable", "bought")
SIZES = (0.15, 0.3, 0.45, 0.6)
TICK_MS = 300_000
WEEK_MS = 7 * DAY_MS


@dataclass(frozen=True)
class Label:
    account: str
    platform: str
    kind: str
    size: float = 0.0
    onset_ms: int | None = None
    ramp_ms: int = 0
    outages: tuple[tuple[int, int], ...] = ()
    bought_at_ms: int | None = None
    r0: float | None = None
    """Organic follower engagements per hour over the 24 h after onset (sudden decays)."""


@dataclass(frozen=True)
class World:
    name: str
    spec: SimSpec
    labels: tuple[Label, ...]
    outages: dict = field(default_factory=dict)


def make_world(name: str, seed: int, rate: float, actors: int, active_share: float, accounts: int = 10,
               days: int = 14, dirt: float = 0.005, campaigns: bool = True) -> World:
    """One world; stream i gets kind KINDS[(i + seed) % 6], sizes and times drawn from the seed."""
    rng = random.Random(f"e2e:{name}:{seed}")
    start = SimSpec().start_ms
    decays, bought, labels, outages = [], [], [], {}
    n = 0
    for a in range(accounts):
        account = account_name(a)
        for p in PLATFORMS:
            kind = KINDS[(n + seed) % len(KINDS)]
            n += 1
            if kind in ("sudden", "gradual"):
                size = SIZES[(n // len(KINDS) + seed) % len(SIZES)]
                at = int(rng.uniform(8, 12) * DAY_MS) // TICK_MS * TICK_MS
                ramp = 6 * HOUR_MS if kind == "gradual" else 0
                decays.append(Decay(size, at, ramp, account, p))
                labels.append(Label(account, p, kind, size, start + at, ramp))
            elif kind == "outage":
                o = []
                for lo, hi in ((8.0, 10.5), (11.0, 13.5)):
                    t = start + int(rng.uniform(lo, hi) * DAY_MS) // TICK_MS * TICK_MS
                    o.append((t, t + 3 * HOUR_MS))
                outages[(account, p)] = tuple(o)
                labels.append(Label(account, p, kind, outages=tuple(o)))
            elif kind == "bought":
                at = int(rng.uniform(8, 12) * DAY_MS)
                count = int(actors * 0.6 * rng.uniform(0.05, 0.3))
                bought.append(BoughtFollowers(count, at, int(rng.uniform(0.5, 3) * HOUR_MS), account, p))
                labels.append(Label(account, p, kind, bought_at_ms=start + at))
            else:
                labels.append(Label(account, p, kind))
    spec = SimSpec(seed=seed, accounts=accounts, platforms=PLATFORMS, duration_ms=days * DAY_MS, rate=rate,
                   actors=actors, active_share=active_share, decays=tuple(decays), bought=tuple(bought), dirt=dirt,
                   campaigns=campaigns)
    return World(name, spec, tuple(labels), outages)


def worlds(seeds: list[int], campaigns: bool = True) -> list[World]:
    out = []
    for seed in seeds:
        out.append(make_world("low", seed, rate=12.0, actors=4_000, active_share=0.15, campaigns=campaigns))
        out.append(make_world("mid", seed, rate=60.0, actors=20_000, active_share=0.1, campaigns=campaigns))
        out.append(make_world("high", seed, rate=250.0, actors=40_000, active_share=0.1, campaigns=campaigns))
    return out


def write_world(w: World, path: str) -> tuple[World, int]:
    """Write the world's lines (outages cut) to `path`; fills r0 of the sudden decays; returns (world, lines)."""
    onsets = {(lb.account, lb.platform): lb for lb in w.labels if lb.onset_ms is not None}
    kept_fe = dict.fromkeys(onsets, 0)
    lines = 0
    with open(path, "wb") as f:
        buf = []
        for _, line in timeline(w.spec):
            try:
                ev = orjson.loads(line)
                key = (ev["account"], ev["platform"])
                ts = ev["ts"]
                hash(key)
            except Exception:  # dirt: an invalid twin; keep it
                buf.append(line)
                continue
            if key in w.outages or key in onsets:
                if not isinstance(ts, int):
                    try:
                        from streams.simulator import parse_time

                        ts = parse_time(ts)
                    except Exception:
                        buf.append(line)
                        continue
                if key in w.outages and any(a <= ts < b for a, b in w.outages[key]):
                    continue
                lb = onsets.get(key)
                if (lb is not None and lb.onset_ms <= ts < lb.onset_ms + DAY_MS and ev.get("type") not in
                        ("view", "follow", "unfollow", "audience") and ev.get("follower") is not False):
                    kept_fe[key] += 1
            buf.append(line)
            if len(buf) >= 50_000:
                f.write(b"\n".join(buf) + b"\n")
                lines += len(buf)
                buf = []
        if buf:
            f.write(b"\n".join(buf) + b"\n")
            lines += len(buf)
    labels = []
    for lb in w.labels:
        key = (lb.account, lb.platform)
        if key in onsets and lb.ramp_ms == 0:
            lb = Label(**{**lb.__dict__, "r0": kept_fe[key] / 24.0 / (1.0 - lb.size)})
        labels.append(lb)
    return World(w.name, w.spec, tuple(labels), w.outages), lines


# The snapshot fields the detectors read, kept per tick by `--record`: the backtest's own observation type.
Obs = ObservedStream


def run_world(args: tuple[World, str | None]) -> dict:
    """Simulate, run through `engagewatch run`, read the alerts back; optionally record the snapshots."""
    w, record = args
    from streams.cli import main as cli

    os.environ.setdefault("ENGAGEWATCH_LOG_LEVEL", "warning")

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="decay-e2e-") as tmp:
        src, out = os.path.join(tmp, "events.jsonl"), os.path.join(tmp, "alerts.jsonl")
        w, lines = write_world(w, src)
        t1 = time.perf_counter()
        rc = cli(["run", "--source", src, "--clock", "event", "--alerts-out", out])
        assert rc == 0, rc
        t2 = time.perf_counter()
        alerts = []
        with open(out, "rb") as f:
            for raw in f:
                a = orjson.loads(raw)
                lab = a["labels"]
                from streams.simulator import parse_time

                T = parse_time(a["endsAt"] if a["status"] == "resolved" else a["startsAt"])
                alerts.append((lab["account"], lab["platform"], T, a["status"], lab["alertname"], lab.get("window"),
                               lab["severity"]))
        if record:
            _record(src, os.path.join(record, f"{w.name}-{w.spec.seed}.pkl"))
    return {"world": w, "alerts": alerts, "lines": lines, "sim_s": t1 - t0, "run_s": t2 - t1}


def _record(src: str, path: str) -> None:
    from processors.engine import Engine
    from streams.runner import file_batches
    from streams.settings import load_settings

    engine = Engine(load_settings().engine_config())
    ticks: list[tuple[int, list[Obs]]] = []

    def on_tick(T: int) -> None:
        snap = engine.snapshot(T)
        ticks.append((T, [Obs(s.account, s.platform, s.audience_followers, s.active_followers, s.engaged_actors,
                              s.new_followers, s.new_followers_activated, s.engaging_events,
                              s.follower_engaging_events, s.follows, s.unfollows, s.last_ts,
                              {c: v[0] for c, v in s.campaign_engaged_actors.items() if v[0]})
                          for s in snap.streams]))

    with open(src, "rb") as f:
        for batch in file_batches(f):
            engine.feed(batch.lines, on_tick=on_tick, tick_ms=TICK_MS)
    on_tick(engine.event_time())
    with open(path, "wb") as f:
        pickle.dump(ticks, f)


def replay(path: str, cfg: DecayConfig) -> list[tuple]:
    """A fresh monitor over recorded snapshots: the alerts `engagewatch run` would have written."""
    with open(path, "rb") as f:
        ticks = pickle.load(f)
    m = DecayMonitor(cfg)
    out = []
    for T, streams in ticks:
        for a in m.observe(T, streams):
            T_a = a.ends_at_ms if a.status == "resolved" else a.starts_at_ms
            out.append((a.label("account"), a.label("platform"), T_a, a.status, a.alertname, a.label("window"),
                        a.severity))
    return out


def limit_h(r0: float, size: float) -> float:
    r1 = (1 - size) * r0
    kl = r1 * math.log(r1 / r0) + r0 - r1
    return math.log(168) / kl if kl > 0 else float("inf")


def score(results: list[dict], cfg: DecayConfig) -> dict:
    rows: dict = {}
    warm = int(cfg.warmup_h * HOUR_MS)

    def cell(key: str) -> dict:
        return rows.setdefault(key, {"n": 0, "hit": 0, "delays": [], "limits": [], "false": 0, "weeks": 0.0})

    for r in results:
        w: World = r["world"]
        start, end = w.spec.start_ms, w.spec.end_ms
        weeks = (end - start - warm) / WEEK_MS
        by_stream: dict = {}
        for acc, plat, *rest in r["alerts"]:
            by_stream.setdefault((acc, plat), []).append(tuple(rest))
        for lb in w.labels:
            alerts = by_stream.get((lb.account, lb.platform), [])
            decays = _episodes(alerts, DECAY)
            if lb.onset_ms is not None:
                c = cell(f"decay {lb.kind} {lb.size:.0%}")
                c["n"] += 1
                c["weeks"] += weeks
                hits = [T for T, _ in decays if T >= lb.onset_ms]
                if hits:
                    c["hit"] += 1
                    c["delays"].append((hits[0] - lb.onset_ms) / HOUR_MS)
                c["false"] += sum(1 for T, _ in decays if T < lb.onset_ms)
                if lb.r0 is not None:
                    c["limits"].append(limit_h(lb.r0, lb.size))
                    t = cell("decay sudden (all sizes) vs limit")
                    t["n"] += 1
                    t["hit"] += bool(hits)
                    t["limits"].append(limit_h(lb.r0, lb.size))
                    if hits:
                        t["delays"].append((hits[0] - lb.onset_ms) / HOUR_MS)
                if lb.size >= 0.3 - 1e-9 and (end - lb.onset_ms) >= 12 * HOUR_MS:
                    t = cell("decay ≥30 % lasting ≥12 h (target)")
                    t["n"] += 1
                    t["hit"] += bool(hits)
                    if hits:
                        t["delays"].append((hits[0] - lb.onset_ms) / HOUR_MS)
            else:
                c = cell(f"decay false alerts on {lb.kind}")
                c["weeks"] += weeks
                c["false"] += len(decays)
            silences = _episodes(alerts, SILENT)
            sc = cell("silence")
            sc["weeks"] += weeks
            for a, b in lb.outages:
                sc["n"] += 1
                hit = [T for T, _ in silences if a <= T <= b]
                if hit:
                    sc["hit"] += 1
                    sc["delays"].append((hit[0] - a) / HOUR_MS)
            sc["false"] += sum(1 for T, _ in silences
                               if T >= start + warm and not any(a <= T <= b for a, b in lb.outages))
            eps = _episodes(alerts, HOLLOW)
            c = cell("hollow growth")
            c["weeks"] += weeks
            if lb.bought_at_ms is not None:
                c["n"] += 1
                hit = [T for T, _ in eps if T >= lb.bought_at_ms]
                if hit:
                    c["hit"] += 1
                    c["delays"].append((hit[0] - lb.bought_at_ms) / HOUR_MS)
                c["false"] += sum(1 for T, _ in eps if T < lb.bought_at_ms)
            else:
                c["false"] += len(eps)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--campaigns", choices=("on", "off"), default="on",
                   help="simulate tagged campaigns (on, the default) or not (off: the issue's scenario shape)")
    p.add_argument("--only", nargs="*", help="world names to run (low, mid, high)")
    p.add_argument("--record", metavar="DIR", help="also keep the engine's snapshots per tick here")
    p.add_argument("--replay", metavar="DIR", help="score a fresh monitor on snapshots recorded with --record")
    p.add_argument("--json", metavar="FILE", help="write the alerts and labels here")
    args = p.parse_args(argv)
    cfg = DecayConfig()
    ws = [w for w in worlds(args.seeds, args.campaigns == "on") if not args.only or w.name in args.only]
    started = time.perf_counter()
    if args.replay:
        results = []
        for w in ws:
            path = os.path.join(args.replay, f"{w.name}-{w.spec.seed}.pkl")
            with open(path + ".labels", "rb") as f:
                w = pickle.load(f)
            results.append({"world": w, "alerts": replay(path, cfg), "lines": 0, "sim_s": 0.0, "run_s": 0.0})
    else:
        if args.record:
            os.makedirs(args.record, exist_ok=True)
        work = [(w, args.record) for w in ws]
        if args.jobs > 1:
            with Pool(args.jobs) as pool:
                results = pool.map(run_world, work, chunksize=1)
        else:
            results = [run_world(x) for x in work]
        if args.record:
            for r in results:
                w = r["world"]
                with open(os.path.join(args.record, f"{w.name}-{w.spec.seed}.pkl.labels"), "wb") as f:
                    pickle.dump(w, f)
    seconds = time.perf_counter() - started
    rows = score(results, cfg)
    streams = sum(len(r["world"].labels) for r in results)
    lines = sum(r["lines"] for r in results)
    rates = ", ".join(f"{x:g}" for x in sorted({r["world"].spec.rate for r in results}))
    print(render_rows(rows))
    print()
    print(f"{streams} streams × 14 days in {len(results)} worlds (campaigns {args.campaigns}; seeds {' '.join(map(str, args.seeds))}; rates "
          f"{rates} events/stream-h), {lines} lines; "
          f"{seconds:.0f} s wall ({sum(r['sim_s'] for r in results):.0f} s simulating, "
          f"{sum(r['run_s'] for r in results):.0f} s in `engagewatch run`) on {os.cpu_count()} cores "
          f"({platform.processor() or platform.machine()}, Python {platform.python_version()}), "
          f"{time.strftime('%Y-%m-%d')}.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"world": r["world"].name, "seed": r["world"].spec.seed, "labels": [lb.__dict__ for lb in
                        r["world"].labels], "alerts": r["alerts"]} for r in results], f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
