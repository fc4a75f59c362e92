"""Faults and scaling on the real local broker: nothing lost, nothing counted twice.

Each test compares the workers' final series with `engagewatch run --clock event` on the same file, so every
invariant is asserted, not eyeballed. Longer fault runs (bigger inputs, repeated kills) are in
benchmarks/kafka_faults.py, whose results are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import collections
import os
import subprocess
import threading
import time
from pathlib import Path

import orjson
import pytest
from kafka_broker import KAFKA_SH
from kafka_harness import (
    Worker, assert_same_series, create_topics, drained_together, engagewatch, expected_dead_letters, offsets,
    read_dead_letters, records_in, replay, replay_in_background, run_reference, split_file, streams,
    union, value,
)
from ports import free_port

pytestmark = pytest.mark.kafka

SESSION = "8s"
"""Group session timeout of the workers here: a killed worker's partitions move after it."""


@pytest.fixture(scope="module")
def events(tmp_path_factory) -> Path:
    """A simulated campaign with 5 % dirt, on 12 accounts so that 8 partitions all get some."""
    path = tmp_path_factory.mktemp("faults") / "events.jsonl"
    out = engagewatch(None, "simulate", "--seed", "11", "--accounts", "12", "--platforms", "instagram,x",
                      "--events", "16000", "--actors", "3000", "--dirt", "0.05", "--out", str(path))
    assert out.returncode == 0, out.stderr
    return path


@pytest.fixture(scope="module")
def reference(events, tmp_path_factory) -> tuple[str, list[dict]]:
    return run_reference(events, tmp_path_factory.mktemp("faults-run"), "--clock", "event")


def evaluation_time(run_text: str) -> float:
    from kafka_harness import value as sample

    t = sample(run_text, "engagewatch_evaluation_timestamp_seconds")
    assert t is not None
    return t


class TestKilledWorker:
    def test_kill_9_mid_replay_then_restart_loses_and_doubles_nothing(self, kafka_env, events, reference, tmp_path):
        """A worker killed with SIGKILL while records stream in; a new one drains: exactly run's series, and every
        dead letter is in the topic (at least once: once per source offset after deduplication)."""
        create_topics(kafka_env)
        feeder = replay_in_background(kafka_env, events, "--rate", "2500", log=tmp_path / "replay.log")
        first = Worker(kafka_env, "--checkpoint-interval", "1s", "--session-timeout", SESSION)
        try:
            # mid-replay, after at least one checkpoint: the restart must combine a checkpoint and a re-read
            first.wait_for(lambda t: sum(o + 1 for o in offsets(t).values()) >= 3000
                           and (value(t, "engagewatch_worker_checkpoints_total") or 0) >= 1, "progress")
        finally:
            first.kill()
        assert first.scrape() is None, "the killed worker should be gone"
        second = Worker(kafka_env, "--checkpoint-interval", "1s", "--session-timeout", SESSION)
        try:
            assert feeder.wait(timeout=300) == 0, (tmp_path / "replay.log").read_text()
            text = second.drained(records_in(events), at=evaluation_time(reference[0]))
        finally:
            second.stop()
        assert_same_series(text, reference[0])
        recovered = value(text, "engagewatch_worker_recovered_records_total")
        assert 0 < recovered < records_in(events), "recovery should start from checkpoints, not from scratch"

        expected = expected_dead_letters(reference[1])
        got = read_dead_letters(kafka_env, sum(expected.values()))
        once = {(partition, offset): (reason, raw) for reason, raw, partition, offset in got}
        assert collections.Counter(once.values()) == expected


class TestBrokerRestart:
    @pytest.fixture
    def own_broker(self, tmp_path):
        """A broker of our own on free ports (the shared one must not be restarted under other tests)."""
        port = free_port()
        env = os.environ | {"KAFKA_PORT": str(port), "KAFKA_CONTROLLER_PORT": str(free_port()),
                            "KAFKA_HEAP_OPTS": "-Xms128m -Xmx512m"}

        def sh(action: str) -> None:
            out = subprocess.run(["bash", str(KAFKA_SH), action], env=env, capture_output=True, text=True,
                                 timeout=300)
            assert out.returncode == 0, out.stderr[-3000:]

        sh("start")
        try:
            yield f"127.0.0.1:{port}", sh
        finally:
            sh("reset")

    def test_worker_reconnects_by_itself_and_stays_exact(self, kafka_env, own_broker, events, reference, tmp_path):
        """Broker stopped and started again while a worker drains: it reconnects on its own, series are exact."""
        bootstrap, sh = own_broker
        env = kafka_env | {"ENGAGEWATCH_KAFKA__BOOTSTRAP_SERVERS": bootstrap}
        first_half, second_half = split_file(events, 2, tmp_path)
        create_topics(env)
        replay(env, first_half)
        worker = Worker(env, "--checkpoint-interval", "1s")
        try:
            worker.wait_for(lambda t: sum(o + 1 for o in offsets(t).values()) >= 1000, "progress")
            sh("stop")
            assert worker.alive()
            sh("start")
            replay(env, second_half)
            text = worker.drained(records_in(events), at=evaluation_time(reference[0]))
        finally:
            worker.stop()
        assert_same_series(text, reference[0])
        # aiokafka logs every failed connection, fetch and metadata update (hundreds a second): kinds are thinned
        entries = [orjson.loads(line) for line in worker.log.read_bytes().splitlines() if line.startswith(b"{")]
        library = [e for e in entries
                   if e["level"] in ("warning", "error") and not e["logger"].startswith("engagewatch")]
        assert 0 < len(library) <= 40, [e["event"] for e in library]


class TestScaling:
    def test_scale_out_and_in_mid_replay(self, kafka_env, events, reference, tmp_path):
        """8 partitions; a second worker joins mid-replay, both drain, then one stops mid-replay: the union of
        their series is run's at every drained point, and no stream is ever exported by two workers at once."""
        env = kafka_env | {"ENGAGEWATCH_KAFKA__PARTITIONS": "8"}
        parts = split_file(events, 3, tmp_path)
        prefix = tmp_path / "prefix.jsonl"
        prefix.write_bytes(parts[0].read_bytes() + parts[1].read_bytes())
        prefix_run = run_reference(prefix, tmp_path, "--clock", "event")[0]
        create_topics(env)
        replay(env, parts[0])
        a = Worker(env, "--session-timeout", SESSION)
        b = None
        overlaps: list[set] = []
        stop_watching = threading.Event()

        def watch() -> None:
            # A stream seen at A, then at B, then at A again was exported by both at the moment B was scraped.
            while not stop_watching.is_set():
                workers = [w for w in (a, b) if w is not None and w.alive()]
                if len(workers) == 2:
                    x, y = workers
                    first, middle, last = x.scrape(), y.scrape(), x.scrape()
                    if first and middle and last:
                        both = streams(first) & streams(middle) & streams(last)
                        if both:
                            overlaps.append(both)
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            a.wait_for(lambda t: sum(o + 1 for o in offsets(t).values()) > 0, "progress")
            b = Worker(env, "--session-timeout", SESSION)
            replay(env, parts[1])
            texts = drained_together([a, b], records_in(prefix), at=evaluation_time(prefix_run))
            assert all(offsets(t) for t in texts), "both workers should own partitions"
            assert_same_series(union(texts), prefix_run)

            feeder = replay_in_background(env, parts[2], "--rate", "2000", log=tmp_path / "replay.log")
            a.stop()  # scale in, mid-replay
            assert feeder.wait(timeout=300) == 0, (tmp_path / "replay.log").read_text()
            text = b.drained(records_in(events), at=evaluation_time(reference[0]))
        finally:
            stop_watching.set()
            watcher.join()
            for w in (a, b):
                if w is not None:
                    w.stop()
        assert len(offsets(text)) == 8
        assert_same_series(text, reference[0])
        assert not overlaps, f"streams exported by two workers at once: {overlaps[:3]}"


def poisoned(clean: Path, out: Path, share: float = 0.03) -> Path:
    """`clean` (already 5 % dirty from the simulator) with `share` more records of every class the contract
    rejects, cycled: oversized (70 KiB to 5 MiB, the largest ones once), far-future (RFC 3339 and epoch ms), not UTF-8, not JSON, not an
    object, missing and invalid fields, unknown type."""
    import random

    rng = random.Random(3)
    lines = clean.read_bytes().splitlines()
    sample = orjson.loads(lines[0])
    sizes = [5 * 1024 * 1024, 1536 * 1024] + [70 * 1024, 200 * 1024] * 100  # two big ones, then moderate

    def bad(i: int) -> bytes:
        rec = dict(sample, id=f"poison-{i}")
        kind = i % 9
        if kind == 0:
            return orjson.dumps(dict(rec, note="x" * sizes[(i // 9) % len(sizes)]))
        if kind == 1:
            return orjson.dumps(dict(rec, ts="2100-01-01T00:00:00Z"))
        if kind == 2:
            return orjson.dumps(dict(rec, ts=4_102_444_800_000 + i))
        if kind == 3:
            return b'{"id":"\xff\xfe' + str(i).encode() + b'"}'
        if kind == 4:
            return b'{"id": "broken' + str(i).encode()
        if kind == 5:
            return orjson.dumps([rec])
        if kind == 6:
            return orjson.dumps({k: v for k, v in rec.items() if k != "actor"})
        if kind == 7:
            return orjson.dumps(dict(rec, platform="Insta Gram"))
        return orjson.dumps(dict(rec, type="poke"))

    out_lines, n = [], 0
    for line in lines:
        out_lines.append(line)
        if rng.random() < share:
            out_lines.append(bad(n))
            n += 1
    out.write_bytes(b"\n".join(out_lines) + b"\n")
    return out


class TestPoison:
    def test_dirty_input_at_volume_is_dead_lettered_and_counted(self, kafka_env, tmp_path):
        """40 000 records, 5 % dirty and 3 % more poison of every class, on the wall clock: the worker survives,
        every rejected record is in the dead-letter topic once with its reason and original bytes (as `run` rejects
        them), and consumed = applied + duplicate + late + invalid."""
        clean = tmp_path / "clean.jsonl"
        out = engagewatch(None, "simulate", "--seed", "19", "--accounts", "8", "--platforms", "instagram,x",
                          "--events", "40000", "--actors", "3000", "--dirt", "0.05", "--out", str(clean))
        assert out.returncode == 0, out.stderr
        path = poisoned(clean, tmp_path / "poisoned.jsonl")
        run_text, run_dead = run_reference(path, tmp_path, "--clock", "wall")
        create_topics(kafka_env)
        replay(kafka_env, path)
        worker = Worker(kafka_env, clock="wall")
        try:
            text = worker.drained(records_in(path))
            assert worker.alive()
        finally:
            worker.stop()
        outcomes = {o: value(text, "engagewatch_events_total", outcome=o) for o in
                    ("applied", "duplicate", "late", "invalid")}
        assert sum(outcomes.values()) == records_in(path)
        assert outcomes == {o: value(run_text, "engagewatch_events_total", outcome=o) for o in outcomes}

        expected = expected_dead_letters(run_dead)
        reasons = {reason for reason, _ in expected}
        assert {"too_large", "future", "not_utf8", "bad_json", "not_object", "unknown_type", "late"} <= reasons
        assert any(r.startswith("missing_") for r in reasons) and any(r.startswith("invalid_") for r in reasons)
        assert sum(expected.values()) == outcomes["late"] + outcomes["invalid"]
        got = read_dead_letters(kafka_env, sum(expected.values()))
        assert len({(p, o) for _, _, p, o in got}) == len(got), "a dead letter was published twice"
        assert collections.Counter((reason, raw) for reason, raw, _, _ in got) == expected
