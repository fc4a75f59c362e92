"""Kafka end to end: how fast a pre-loaded topic drains, and the event-to-metric latency at a steady rate.

Levels, each draining the same pre-loaded topic (`--events`, default 1M simulated events, 8 partitions):

* L0 — a raw aiokafka consumer that only counts (the ceiling of a Python consumer on this machine);
* L2 — a bare Faust agent that only counts, one event at a time (`async for value in stream`);
* L3 — `engagewatch worker --clock event` (detectors on), with 1, 2 and 4 workers in one consumer group.

Throughput = records / (time the last record is in - time the first record is in) for L0 and L2 (start-up left out,
reported apart); for L3, whose partitions appear in `/metrics` only once caught up, from the processes' start
(start-up and group join included: conservative). L3 is read from `/metrics` (offsets applied), every 100 ms.

Latency: a producer (`kcat` when on PATH, else kafka-python's) is handed events stamped with the current time, at a
steady `--rate` (default: half the L3 rate measured here), for one wall-clock worker; `/metrics` is polled every
100 ms and an event counts as visible at the first poll whose `engagewatch_stream_last_event_timestamp_seconds` for
its stream is at or after its stamp (per stream, records arrive in order). Latency = that poll's time - the stamp: an upper
bound, by at most the poll period.

    python benchmarks/kafka_e2e.py --out var/kafka_e2e.json            # everything
    python benchmarks/kafka_e2e.py --levels L0,L2 --workers 1          # a part

Needs a broker (deploy/local/kafka.sh start). Prints one JSON object per result; --out gets them all.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def env_for(bootstrap: str, topic: str, app_id: str, data_dir: str) -> dict[str, str]:
    return os.environ | {
        "ENGAGEWATCH_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "ENGAGEWATCH_KAFKA__INTERACTIONS_TOPIC": topic,
        "ENGAGEWATCH_KAFKA__ALERTS_TOPIC": f"{topic}-alerts",
        "ENGAGEWATCH_KAFKA__DEAD_LETTER_TOPIC": f"{topic}-dead-letters",
        "ENGAGEWATCH_KAFKA__APP_ID": app_id,
        "ENGAGEWATCH_KAFKA__PARTITIONS": "8",
        "ENGAGEWATCH_KAFKA__DATA_DIR": data_dir,
        "ENGAGEWATCH_LOG_LEVEL": "warning",
    }


def cli(env: dict, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env, check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)


# -- L0 ---------------------------------------------------------------------------------------------------------


async def _l0(bootstrap: str, topic: str, total: int) -> dict:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    started = time.monotonic()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(8)]  # the topics are made with 8 partitions
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        n, first = 0, None
        while n < total:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for msgs in batches.values():
                if first is None and msgs:
                    first = time.monotonic()
                n += len(msgs)
        end = time.monotonic()
    finally:
        await consumer.stop()
    return {"level": "L0", "workers": 1, "records": n, "seconds": round(end - first, 2),
            "rate": round(n / (end - first)), "startup_s": round(first - started, 2)}


# -- L2 ---------------------------------------------------------------------------------------------------------


def l2_child(bootstrap: str, topic: str, total: int, report: str) -> None:
    """A bare Faust app whose agent counts events one by one; writes the timings to `report` when done."""
    import faust

    app = faust.App(f"bench-l2-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}", web_enabled=False,
                    autodiscover=False, consumer_auto_offset_reset="earliest", topic_allow_declare=False,
                    topic_disable_leader=True)
    source = app.topic(topic, key_serializer="raw", value_serializer="raw")
    state = {"n": 0, "first": None, "started": time.monotonic()}

    @app.agent(source)
    async def count(stream):  # noqa: ANN001
        async for _value in stream:
            if state["first"] is None:
                state["first"] = time.monotonic()
            state["n"] += 1
            if state["n"] == total:
                end = time.monotonic()
                Path(report).write_text(json.dumps({
                    "level": "L2", "workers": 1, "records": total, "seconds": round(end - state["first"], 2),
                    "rate": round(total / (end - state["first"])),
                    "startup_s": round(state["first"] - state["started"], 2)}))
                os._exit(0)  # the measurement is done; no clean shutdown needed

    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


def l2(bootstrap: str, topic: str, total: int, tmp: Path) -> dict:
    report = tmp / f"l2-{uuid.uuid4().hex[:6]}.json"
    subprocess.run([sys.executable, __file__, "_l2", bootstrap, topic, str(total), str(report)], cwd=tmp,
                   timeout=1800, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(report.read_text())


# -- L3 ---------------------------------------------------------------------------------------------------------


def scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            return r.read().decode()
    except OSError:
        return None


def applied(text: str) -> int:
    n = 0
    for line in text.splitlines():
        if line.startswith("engagewatch_worker_partition_offset{"):
            n += int(float(line.rsplit(" ", 1)[1])) + 1
    return n


def start_worker(env: dict, port: int, clock: str, log: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "streams.cli", "worker", "--clock", clock, "--metrics-port",
                             str(port), *extra], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=log.open("wb"))


def l3(bootstrap: str, topic: str, total: int, workers: int, tmp: Path, extra: tuple[str, ...] = ()) -> dict:
    app_id = f"bench-l3-{uuid.uuid4().hex[:8]}"
    env = env_for(bootstrap, topic, app_id, str(tmp / app_id))
    ports = [20000 + random.randrange(20000) for _ in range(workers)]
    started = time.monotonic()
    procs = [start_worker(env, port, "event", tmp / f"{app_id}-{i}.log", *extra) for i, port in enumerate(ports)]
    first = None
    try:
        while True:
            texts = [scrape(p) for p in ports]
            n = sum(applied(t) for t in texts if t)
            now = time.monotonic()
            if first is None and n > 0:
                first = now
            if n >= total:
                end = now
                break
            assert all(p.poll() is None for p in procs), "a worker died"
            assert now - started < 1800, "no drain within 30 minutes"
            time.sleep(0.1)  # polling the condition
        rss = [_rss_mib(p.pid) for p in procs]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)
    # A partition appears in /metrics only once recovered (caught up), so the first record's time is not
    # observable here: the rate counts from the processes' start, start-up and group join included (conservative).
    return {"level": "L3", "workers": workers, "records": total, "seconds": round(end - started, 2),
            "rate": round(total / (end - started)), "first_partition_s": round(first - started, 2),
            "rss_mib": rss, "options": list(extra)}


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


# -- latency ----------------------------------------------------------------------------------------------------


def _producer(kind: str, bootstrap: str, topic: str):
    """(send a list of (key, value), flush, close). kcat (librdkafka, C) offers several times what kafka-python's
    producer can from one Python process sharing two cores with the broker and the worker (~23 500/s here)."""
    if kind == "kcat":
        proc = subprocess.Popen(["kcat", "-P", "-b", bootstrap, "-t", topic, "-K", "\t", "-X", "linger.ms=5",
                                 "-X", "acks=1"], stdin=subprocess.PIPE)
        out = proc.stdin

        def send(batch: list[tuple[bytes, bytes]]) -> None:
            out.write(b"".join(b"%s\t%s\n" % kv for kv in batch))
            out.flush()

        def close() -> None:
            if not out.closed:
                out.close()
            proc.wait(60)
        return send, close, close

    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1, batch_size=128 * 1024)

    def send_each(batch: list[tuple[bytes, bytes]]) -> None:
        for key, value in batch:
            producer.send(topic, key=key, value=value)
    return send_each, producer.flush, producer.close


def latency(bootstrap: str, rate: float, seconds: float, tmp: Path, producer: str = "kcat") -> dict:
    import orjson

    run = uuid.uuid4().hex[:8]
    topic = f"bench-lat-{run}"
    env = env_for(bootstrap, topic, f"bench-lat-{run}", str(tmp / run))
    cli(env, "topics", "create")
    port = 20000 + random.randrange(20000)
    proc = start_worker(env, port, "wall", tmp / f"lat-{run}.log")
    streams = [(f"brand{a:02d}", p) for a in range(40) for p in ("instagram", "tiktok", "x")]
    sent: list[tuple[int, int]] = []  # (stream index, stamp ms)
    polls: dict[int, list[tuple[float, int]]] = {i: [] for i in range(len(streams))}  # stream -> (poll s, last ms)
    index = {f'account="{a}",platform="{p}"': i for i, (a, p) in enumerate(streams)}
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            t0 = time.time()
            text = scrape(port)
            t = time.time()
            if text:
                for line in text.splitlines():
                    if line.startswith("engagewatch_stream_last_event_timestamp_seconds{"):
                        labels, v = line.split("{", 1)[1].rsplit("} ", 1)
                        i = index.get(labels)
                        if i is not None:
                            polls[i].append((t, round(float(v) * 1000)))
            time.sleep(max(0.0, 0.1 - (t - t0)))  # the poll period

    # wait for the worker to own its partitions (exports the offsets of all 8)
    deadline = time.monotonic() + 300
    while True:
        text = scrape(port)
        if text and text.count("engagewatch_worker_partition_offset{") == 8:
            break
        assert time.monotonic() < deadline and proc.poll() is None, "latency worker did not start"
        time.sleep(0.2)  # polling the condition
    poller = threading.Thread(target=poll, daemon=True)
    rng = random.Random(2)
    send, flush, close = _producer(producer, bootstrap, topic)
    try:
        poller.start()
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            # Everything due by now, stamped now, handed over in one go: a pacer that slept per record could not
            # offer tens of thousands a second.
            due = int((time.monotonic() - start) * rate) + 1
            stamp = time.time_ns() // 1_000_000
            batch = []
            while n < due:
                i = rng.randrange(len(streams))
                account, plat = streams[i]
                rec = {"id": f"e{n}", "ts": stamp, "platform": plat, "account": account, "type": "like",
                       "actor": f"a{rng.randrange(20000)}", "follower": True}
                batch.append((account.encode(), orjson.dumps(rec)))
                sent.append((i, stamp))
                n += 1
            send(batch)
            time.sleep(0.001)  # pacing: the next batch is due in about a millisecond
        achieved = n / (time.monotonic() - start)
        flush()
        # until every stream shows its last stamp
        last = {}
        for i, stamp in sent:
            last[i] = stamp
        deadline = time.monotonic() + 120
        while any(not polls[i] or polls[i][-1][1] < s for i, s in last.items()) and time.monotonic() < deadline:
            time.sleep(0.2)  # polling the condition
    finally:
        stop.set()
        close()
        proc.terminate()
        proc.wait(60)
    lat = []
    keys = {i: [v for _, v in polls[i]] for i in polls}
    for i, stamp in sent:
        # last-event values are non-decreasing per stream: the first poll at or after the stamp
        j = bisect.bisect_left(keys[i], stamp)
        if j < len(keys[i]):
            lat.append(polls[i][j][0] * 1000 - stamp)
    lat.sort()
    q = lambda f: round(lat[min(len(lat) - 1, int(f * len(lat)))] / 1000, 3)  # noqa: E731
    return {"level": "latency", "target_rate": rate, "achieved_rate": round(achieved), "seconds": seconds,
            "events": len(sent), "measured": len(lat), "p50_s": q(0.50), "p90_s": q(0.90), "p99_s": q(0.99),
            "max_s": round(lat[-1] / 1000, 3), "poll_period_s": 0.1, "producer": producer}


# -- main -------------------------------------------------------------------------------------------------------


def preload(bootstrap: str, events: int, tmp: Path, source: str | None) -> tuple[str, int]:
    run = uuid.uuid4().hex[:8]
    topic = f"bench-{run}"
    env = env_for(bootstrap, topic, f"bench-{run}", str(tmp / run))
    cli(env, "topics", "create")
    path = Path(source) if source else tmp / f"events-{events}.jsonl"
    if not path.exists():
        cli(env, "simulate", "--seed", "5", "--accounts", "40", "--platforms", "instagram,tiktok,x", "--events",
            str(events), "--actors", "20000", "--out", str(path))
    t = time.monotonic()
    cli(env, "replay", str(path), "--topic", topic)
    print(json.dumps({"preloaded": events, "topic": topic, "seconds": round(time.monotonic() - t, 1)}),
          file=sys.stderr)
    return topic, sum(1 for _ in path.open("rb"))


def machine() -> dict:
    import aiokafka
    import faust

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu, "cores": os.cpu_count(),
            "os": platform.platform(), "python": platform.python_version(), "faust": faust.__version__,
            "aiokafka": aiokafka.__version__, "kafka": "3.9.1 (KRaft, single node, deploy/local/kafka.sh)",
            "load_average_at_start": os.getloadavg()}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_l2":
        l2_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", default=os.environ.get("ENGAGEWATCH_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--source", help="a JSON-lines file to pre-load instead of simulating one")
    p.add_argument("--topic", help="an already pre-loaded topic (with --events records) to drain")
    p.add_argument("--levels", default="L0,L2,L3,latency")
    p.add_argument("--workers", default="1,2,4", help="L3 group sizes")
    p.add_argument("--rate", type=float, help="latency run rate (default: half the 1-worker L3 rate)")
    p.add_argument("--latency-seconds", type=float, default=60)
    p.add_argument("--producer", choices=("kcat", "kafka-python"), default="kcat" if shutil.which("kcat") else
                   "kafka-python", help="what offers the latency run's events (default: kcat when on PATH)")
    p.add_argument("--out", help="write every result here as JSON")
    p.add_argument("--tmp", default="/tmp/engagewatch-bench")
    args = p.parse_args()
    tmp = Path(args.tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    levels = args.levels.split(",")
    results: list[dict] = [machine()]
    print(json.dumps(results[0]))
    if args.topic:
        topic, total = args.topic, args.events
    else:
        topic, total = (preload(args.bootstrap, args.events, tmp, args.source)
                        if set(levels) & {"L0", "L2", "L3"} else (None, 0))

    def record(r: dict) -> dict:
        results.append(r)
        print(json.dumps(r), flush=True)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(results, indent=1))
        return r

    l3_rate = None
    if "L0" in levels:
        record(asyncio.run(_l0(args.bootstrap, topic, total)))
    if "L2" in levels:
        record(l2(args.bootstrap, topic, total, tmp))
    if "L3" in levels:
        for n in [int(w) for w in args.workers.split(",")]:
            r = record(l3(args.bootstrap, topic, total, n, tmp))
            if n == 1:
                l3_rate = r["rate"]
    if "latency" in levels:
        rate = args.rate or (l3_rate / 2 if l3_rate else 25_000)
        record(latency(args.bootstrap, rate, args.latency_seconds, tmp, args.producer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
