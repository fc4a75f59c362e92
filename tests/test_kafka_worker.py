"""The Faust worker on the real local broker gives what `engagewatch run` gives on the same file."""

from __future__ import annotations

import collections
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from kafka_harness import (
    ROOT, Worker, add_partitions, assert_same_series, create_topics, engagewatch, expected_dead_letters, families,
    read_dead_letters, records_in, replay, value,
)
from ports import free_port

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def dirty_file(tmp_path_factory) -> Path:
    """A simulated campaign with 5 % dirt (invalid, late, duplicate records), plus a blank line and a non-object."""
    path = tmp_path_factory.mktemp("replay") / "dirty.jsonl"
    out = engagewatch(None, "simulate", "--seed", "7", "--accounts", "5", "--platforms", "instagram,x",
                      "--events", "12000", "--actors", "3000", "--dirt", "0.05", "--out", str(path))
    assert out.returncode == 0, out.stderr
    with path.open("ab") as f:
        f.write(b"\n[1,2]\n")
    return path


@pytest.fixture(scope="module")
def reference(dirty_file, tmp_path_factory):
    """`engagewatch run --clock event` on the file: the exposition and the dead-letter file."""
    d = tmp_path_factory.mktemp("run")
    prom, dead = d / "out.prom", d / "dead.jsonl"
    out = engagewatch(None, "run", "--source", str(dirty_file), "--clock", "event", "--metrics-out", str(prom),
                      "--dead-letter", str(dead))
    assert out.returncode == 0, out.stderr
    return prom.read_text(), [orjson.loads(line) for line in dead.read_bytes().splitlines()]


class TestEquivalence:
    def test_one_worker_gives_the_series_of_run(self, kafka_env, dirty_file, reference):
        """Replayed and processed by one worker with --clock event: the same series and outcome counts as run."""
        create_topics(kafka_env)
        replay(kafka_env, dirty_file)
        worker = Worker(kafka_env)
        try:
            text = worker.drained(records_in(dirty_file))
        finally:
            worker.stop()
        assert_same_series(text, reference[0])

    @pytest.mark.parametrize("interval", ["0s", "1h"], ids=["checkpoint-every-batch", "no-checkpoint"])
    def test_restarted_worker_recovers_exact_state(self, kafka_env, dirty_file, reference, tmp_path, interval):
        """Half the file, a stop, the other half and a new worker: still exactly the series of run."""
        lines = dirty_file.read_bytes().split(b"\n")
        half = len(lines) // 2
        first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
        first.write_bytes(b"\n".join(lines[:half]) + b"\n")
        second.write_bytes(b"\n".join(lines[half:]))
        create_topics(kafka_env)
        replay(kafka_env, first)
        worker = Worker(kafka_env, "--checkpoint-interval", interval)
        try:
            worker.drained(records_in(first))
        finally:
            worker.stop()
        assert worker.proc.returncode == 0
        replay(kafka_env, second)
        worker = Worker(kafka_env, "--checkpoint-interval", interval)
        try:
            text = worker.drained(records_in(dirty_file))
        finally:
            worker.stop()
        assert_same_series(text, reference[0])
        reread = value(text, "engagewatch_worker_recovered_records_total")
        if interval == "0s":  # recovered from the first worker's checkpoints: only the second half re-read
            assert reread == records_in(second)
        else:  # never checkpointed: rebuilt from the first record
            assert reread == records_in(dirty_file)


class TestDeadLetters:
    # kafka-python 3.0 loads its protocol schemas with importlib.resources.read_text/open_text, deprecated in 3.11.
    @pytest.mark.filterwarnings("ignore::DeprecationWarning")
    def test_every_invalid_record_is_dead_lettered_with_reason_and_bytes(self, kafka_env, dirty_file, reference):
        """The dead-letter topic holds each rejected record once: original bytes, reason and source headers."""
        create_topics(kafka_env)
        replay(kafka_env, dirty_file)
        worker = Worker(kafka_env)
        try:
            worker.drained(records_in(dirty_file))
        finally:
            worker.stop()
        expected = expected_dead_letters(reference[1])
        assert expected, "the dirty file should have dead letters"
        got = read_dead_letters(kafka_env, sum(expected.values()))
        assert all(partition >= 0 and offset >= 0 for _, _, partition, offset in got)
        assert collections.Counter((reason, raw) for reason, raw, _, _ in got) == expected


class TestUnreachable:
    def test_worker_fails_clearly_instead_of_hanging(self, kafka_env):
        """A worker pointed at a closed port exits 1 with a message naming the address."""
        env = kafka_env | {"ENGAGEWATCH_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
                           "ENGAGEWATCH_KAFKA__CONNECT_TIMEOUT": "3s"}
        started = time.monotonic()
        out = engagewatch(env, "worker", "--metrics-port", "0", timeout=60)
        assert out.returncode == 1
        assert "cannot reach Kafka at 127.0.0.1:" in out.stderr
        assert time.monotonic() - started < 30

    def test_worker_fails_clearly_without_topics(self, kafka_env):
        """Before `topics create`, the worker says which topic is missing."""
        out = engagewatch(kafka_env, "worker", "--metrics-port", "0", timeout=60)
        assert out.returncode == 1
        assert "run `engagewatch topics create`" in out.stderr

    def test_worker_refuses_checkpoints_made_for_another_partition_count(self, kafka_env):
        """Partitions added to the interactions topic after its checkpoint changelog was made: the worker exits 2
        naming both topics and the setting, where Faust would fail on every checkpoint and never exit."""
        create_topics(kafka_env)
        topic, app = kafka_env["ENGAGEWATCH_KAFKA__INTERACTIONS_TOPIC"], kafka_env["ENGAGEWATCH_KAFKA__APP_ID"]
        add_partitions(kafka_env, topic, 6)
        out = engagewatch(kafka_env, "worker", "--metrics-port", "0", timeout=60)
        assert out.returncode == 2
        assert f"{topic} has 6 partitions but its checkpoint changelog {app}-checkpoints-changelog has 4" in out.stderr
        assert "ENGAGEWATCH_KAFKA__APP_ID" in out.stderr

    def test_a_mismatch_met_while_running_stops_the_worker(self, kafka_env, tmp_path):
        """The same mismatch met by a running worker (partitions added under it; here the start-up check is
        skipped) ends it with status 1 at its first checkpoint, instead of a retry every second forever."""
        out = self.worker_after_partitions_added(kafka_env, tmp_path)
        assert out.returncode == 1
        assert "checkpoints no longer fit the topic" in out.stderr

    def test_a_mismatch_met_by_the_agent_stops_the_worker(self, kafka_env, tmp_path):
        """The same, when Faust's agent writes the first checkpoint (here the live reader never takes a partition
        over): the worker exits 1 rather than running on without its agent."""
        out = self.worker_after_partitions_added(
            kafka_env, tmp_path, "import streams.faust_app as f; f.WorkerRuntime._take_over = lambda self: None; ")
        assert out.returncode == 1
        assert "checkpoints no longer fit the topic" in out.stderr

    @staticmethod
    def worker_after_partitions_added(kafka_env, tmp_path, patch: str = "") -> subprocess.CompletedProcess:
        """A worker, its start-up check skipped and `patch` run, on records of an interactions topic grown to 6
        partitions after its checkpoint changelog was made with 4; checkpointing at every batch."""
        create_topics(kafka_env)
        add_partitions(kafka_env, kafka_env["ENGAGEWATCH_KAFKA__INTERACTIONS_TOPIC"], 6)
        events = tmp_path / "events.jsonl"
        out = engagewatch(None, "simulate", "--seed", "3", "--events", "2000", "--out", str(events))
        assert out.returncode == 0, out.stderr
        replay(kafka_env, events)
        unchecked = ("import sys; import streams.commands.worker as w; w.interactions_partitions = lambda s: 6; "
                     f"{patch}from streams.cli import main; sys.exit(main(sys.argv[1:]))")
        return subprocess.run([sys.executable, "-c", unchecked, "worker", "--metrics-port", "0",
                               "--checkpoint-interval", "0s"], env=kafka_env, capture_output=True, text=True,
                              timeout=120, cwd=ROOT)


class TestWorkerMetrics:
    def test_consumer_lag_per_partition_is_zero_once_drained(self, kafka_env, dirty_file):
        """`engagewatch_consumer_lag{topic,partition}` is exported for every owned partition, 0 when drained."""
        create_topics(kafka_env)
        replay(kafka_env, dirty_file)
        worker = Worker(kafka_env)
        try:
            worker.drained(records_in(dirty_file))
            topic = kafka_env["ENGAGEWATCH_KAFKA__INTERACTIONS_TOPIC"]
            # the high watermark is as last fetched: wait for the fetch after the last record
            text = worker.wait_for(lambda t: all(value(t, "engagewatch_consumer_lag", topic=topic, partition=str(p))
                                                 == 0 for p in range(4)), "zero lag")
        finally:
            worker.stop()
        assert {s.labels["partition"] for s in families(text)["engagewatch_consumer_lag"]} == {"0", "1", "2", "3"}


class TestAlerts:
    # kafka-python 3.0 loads its protocol schemas with importlib.resources.read_text/open_text, deprecated in 3.11.
    @pytest.mark.filterwarnings("ignore::DeprecationWarning")
    def test_decay_alerts_reach_the_alerts_topic_as_run_writes_them(self, kafka_env, tmp_path):
        """Ten days with an engagement drop on day nine: the worker's detectors publish to the alerts topic
        (key = account) the alerts `engagewatch run --alerts-out` writes, and export their gauges."""
        from kafka import KafkaConsumer

        path = tmp_path / "decay.jsonl"
        out = engagewatch(None, "simulate", "--seed", "3", "--accounts", "2", "--platforms", "instagram",
                          "--duration", "10d", "--decay", "acme/instagram=0.6@198h", "--actors", "3000",
                          "--rate", "200", "--out", str(path))
        assert out.returncode == 0, out.stderr
        alerts_file = tmp_path / "alerts.jsonl"
        out = engagewatch(None, "run", "--source", str(path), "--clock", "event", "--metrics-out",
                          str(tmp_path / "run.prom"), "--alerts-out", str(alerts_file))
        assert out.returncode == 0, out.stderr
        expected = [orjson.loads(line) for line in alerts_file.read_bytes().splitlines()]
        assert any(a["labels"]["alertname"] == "EngagementDecay" for a in expected)

        create_topics(kafka_env)
        replay(kafka_env, path)
        worker = Worker(kafka_env)
        try:
            text = worker.drained(records_in(path))
        finally:
            worker.stop()
        assert value(text, "engagewatch_decay_state", account="acme", platform="instagram", window="1h") == 2
        assert value(text, "engagewatch_alert_notifications_total", sink="kafka", outcome="sent") == len(expected)

        consumer = KafkaConsumer(kafka_env["ENGAGEWATCH_KAFKA__ALERTS_TOPIC"],
                                 bootstrap_servers=kafka_env["ENGAGEWATCH_KAFKA__BOOTSTRAP_SERVERS"],
                                 auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=5000)
        try:
            got = []
            for m in consumer:
                alert = orjson.loads(m.value)
                assert m.key.decode() == alert["labels"]["account"]
                got.append(alert)
                if len(got) >= len(expected):
                    break
        finally:
            consumer.close()

        def key(a: dict) -> tuple:
            return a["status"], tuple(sorted(a["labels"].items())), a["startsAt"]

        assert sorted(map(key, got)) == sorted(map(key, expected))
