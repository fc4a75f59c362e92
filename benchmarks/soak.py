"""Soak: one worker on the wall clock for a long steady run with a fixed active population; memory must level off.

A producer thread sends `--rate` events per second, stamped now, from a fixed population (`--accounts` ×
`--platforms` streams, `--actors` actors each), with unique ids. Every `--sample` seconds the worker's resident
memory (/proc/PID/status VmRSS) and its state (sum of `engagewatch_stream_actors`, checkpoint bytes) are recorded.
The engine's horizons are scaled down (windows, grace, dedup horizon, cohort window: minutes, not days) so that a
30-minute run passes every retention horizon several times: the state must then stop growing.

    python benchmarks/soak.py --minutes 30 --rate 1000 --out var/soak.json

Needs a broker (deploy/local/kafka.sh start). Prints a summary table; the JSON holds every sample.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
ENGINE = {"ENGAGEWATCH_WINDOWS": "5m,15m", "ENGAGEWATCH_GRACE": "1m", "ENGAGEWATCH_DEDUP_HORIZON": "2m",
          "ENGAGEWATCH_COHORT_WINDOW": "15m", "ENGAGEWATCH_DETECT_TICK": "30s"}
TYPES = ["like"] * 5 + ["comment", "share", "view", "view", "click", "follow", "unfollow"]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def scrape(port: int) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {"actors": 0.0, "checkpoint_bytes": 0.0, "consumed": 0.0, "lag": 0.0, "streams": 0.0}
    for f in text_string_to_metric_families(text):
        for s in f.samples:
            if s.name == "engagewatch_stream_actors":
                out["actors"] += s.value
            elif s.name == "engagewatch_worker_checkpoint_bytes":
                out["checkpoint_bytes"] += s.value
            elif s.name == "engagewatch_worker_partition_offset":
                out["consumed"] += s.value + 1
            elif s.name == "engagewatch_consumer_lag":
                out["lag"] += s.value
            elif s.name == "engagewatch_streams":
                out["streams"] = s.value
    return out


def produce(env: dict, args, stop: threading.Event, sent: list[int]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=env["ENGAGEWATCH_KAFKA__BOOTSTRAP_SERVERS"], linger_ms=20,
                             acks=1, batch_size=256 * 1024)
    topic = env["ENGAGEWATCH_KAFKA__INTERACTIONS_TOPIC"]
    rng = random.Random(1)
    accounts = [f"brand{i:02d}" for i in range(args.accounts)]
    platforms = ["instagram", "tiktok", "x"][: args.platforms]
    start = time.monotonic()
    n = 0
    while not stop.is_set():
        due = start + n / args.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(min(delay, 0.05))  # pacing to the rate
            continue
        now = time.time_ns() // 1_000_000
        account = rng.choice(accounts)
        rec = {"id": f"e{n}", "ts": now, "platform": rng.choice(platforms), "account": account,
               "type": rng.choice(TYPES), "actor": f"a{rng.randrange(args.actors)}", "follower": rng.random() < 0.7}
        producer.send(topic, key=account.encode(), value=orjson.dumps(rec))
        n += 1
        sent[0] = n
    producer.flush()
    producer.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--rate", type=float, default=1000)
    p.add_argument("--accounts", type=int, default=20)
    p.add_argument("--platforms", type=int, default=3)
    p.add_argument("--actors", type=int, default=5000, help="actors per stream (the fixed population)")
    p.add_argument("--sample", type=float, default=30)
    p.add_argument("--bootstrap", default=os.environ.get("ENGAGEWATCH_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    p.add_argument("--out", default="var/soak.json")
    args = p.parse_args()

    run = uuid.uuid4().hex[:8]
    env = os.environ | ENGINE | {
        "ENGAGEWATCH_KAFKA__BOOTSTRAP_SERVERS": args.bootstrap,
        "ENGAGEWATCH_KAFKA__INTERACTIONS_TOPIC": f"soak-{run}-interactions",
        "ENGAGEWATCH_KAFKA__ALERTS_TOPIC": f"soak-{run}-alerts",
        "ENGAGEWATCH_KAFKA__DEAD_LETTER_TOPIC": f"soak-{run}-dead-letters",
        "ENGAGEWATCH_KAFKA__APP_ID": f"soak-{run}", "ENGAGEWATCH_KAFKA__PARTITIONS": "8",
        "ENGAGEWATCH_KAFKA__DATA_DIR": f"/tmp/soak-{run}", "ENGAGEWATCH_LOG_LEVEL": "warning",
    }
    subprocess.run([sys.executable, "-m", "streams.cli", "topics", "create"], env=env, check=True, cwd=ROOT,
                   capture_output=True)
    port = 19464 + os.getpid() % 1000
    worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker", "--clock", "wall", "--metrics-port",
                               str(port)], env=env, cwd=ROOT, stderr=open(f"/tmp/soak-{run}.log", "wb"))
    stop, sent = threading.Event(), [0]
    producer = threading.Thread(target=produce, args=(env, args, stop, sent), daemon=True)
    started = time.monotonic()
    producer.start()
    rows = []
    try:
        while time.monotonic() - started < args.minutes * 60:
            time.sleep(args.sample)  # the sampling period of the soak, not a wait for a condition
            try:
                m = scrape(port)
            except OSError:
                continue
            row = {"t_s": round(time.monotonic() - started), "rss_mib": round(rss_kib(worker.pid) / 1024, 1),
                   "sent": sent[0], **m}
            rows.append(row)
            print(json.dumps(row), flush=True)
            assert worker.poll() is None, "worker died"
    finally:
        stop.set()
        producer.join(30)
        worker.terminate()
        worker.wait(60)
    half = [r for r in rows if r["t_s"] >= args.minutes * 30]
    summary = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": f"{platform.node()} "
        f"{os.cpu_count()} cores, {platform.platform()}", "python": platform.python_version(), "args": vars(args),
        "engine": ENGINE,
        "rss_mib_first_half_max": max((r["rss_mib"] for r in rows if r not in half), default=None),
        "rss_mib_second_half_min": min((r["rss_mib"] for r in half), default=None),
        "rss_mib_second_half_max": max((r["rss_mib"] for r in half), default=None),
        "actors_second_half_min": min((r["actors"] for r in half), default=None),
        "actors_second_half_max": max((r["actors"] for r in half), default=None),
        "checkpoint_bytes_second_half_max": max((r["checkpoint_bytes"] for r in half), default=None),
        "max_lag": max((r["lag"] for r in rows), default=None),
        "samples": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "samples"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
