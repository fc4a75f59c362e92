"""The Faust worker on the real local broker gives what `engagewatch run` gives on the same file."""

from __future__ import annotations

import base64
import collections
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parent.parent
CONTRACT_FAMILIES = {
    "engagewatch_audience_followers", "engagewatch_active_followers", "engagewatch_engaged_actors",
    "engagewatch_influencer_active_followers", "engagewatch_active_follower_ratio",
    "engagewatch_campaign_engaged_actors", "engagewatch_new_followers", "engagewatch_new_followers_activated",
    "engagewatch_engagements", "engagewatch_events", "engagewatch_dead_letters",
}


def engagewatch(env, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def samples(text: str) -> dict[tuple, float]:
    """(sample name, sorted labels) -> value, for every engagewatch sample but the worker's own."""
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("engagewatch_worker_"):
            continue
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def family_names(text: str) -> set[str]:
    return {f.name for f in text_string_to_metric_families(text)}


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


class Worker:
    """An `engagewatch worker` subprocess with its /metrics port."""

    def __init__(self, env, *args: str) -> None:
        self.port = free_port()
        self.log = Path(env["ENGAGEWATCH_KAFKA__DATA_DIR"]).with_name(f"worker-{self.port}.log")
        with self.log.open("wb") as log:  # a file, not a pipe: an unread pipe would block the worker's logging
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", "--clock", "event", "--metrics-port", str(self.port),
                 *args],
                env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log,
            )

    def scrape(self) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                return r.read().decode()
        except OSError:
            return None

    def drained(self, messages: int, timeout: float = 180) -> str:
        """The exposition once the worker's engines include all `messages` records of the topic."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-4000:]
            text = self.scrape()
            if text is not None:
                offsets = [s.value for f in text_string_to_metric_families(text)
                           if f.name == "engagewatch_worker_partition_offset" for s in f.samples]
                consumed = sum(int(o) + 1 for o in offsets)
                if consumed == messages:
                    return text
                assert consumed <= messages, f"more records consumed ({consumed}) than produced ({messages})"
            time.sleep(0.25)  # polling the condition
        raise AssertionError(f"worker did not drain {messages} records within {timeout}s: {self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def replay(env, path: Path) -> None:
    out = engagewatch(env, "replay", str(path))
    assert out.returncode == 0, out.stderr
    assert " 0 failed" in out.stderr


def records_in(path: Path) -> int:
    """Kafka messages `replay` makes of the file: one per line, blank lines included."""
    data = path.read_bytes()
    return len(data.split(b"\n")) - (1 if data.endswith(b"\n") else 0)


def assert_same_series(worker_text: str, run_text: str) -> None:
    assert CONTRACT_FAMILIES <= family_names(worker_text)
    ours, theirs = samples(worker_text), samples(run_text)
    shared = {k for k in theirs if k[0].rsplit("_total", 1)[0] in family_names(worker_text) or k in ours}
    missing = {k: theirs[k] for k in shared if k not in ours}
    differ = {k: (ours[k], theirs[k]) for k in shared if k in ours and ours[k] != theirs[k]}
    extra = {k: ours[k] for k in ours if k not in theirs}
    assert not missing and not differ and not extra, (
        f"missing {list(missing.items())[:5]}, differ {list(differ.items())[:5]}, extra {list(extra.items())[:5]}"
    )


class TestEquivalence:
    def test_one_worker_gives_the_series_of_run(self, kafka_env, dirty_file, reference):
        """Replayed and processed by one worker with --clock event: the same series and outcome counts as run."""
        assert engagewatch(kafka_env, "topics", "create").returncode == 0
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
        assert engagewatch(kafka_env, "topics", "create").returncode == 0
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
        reread = next(s.value for f in text_string_to_metric_families(text) for s in f.samples
                      if s.name == "engagewatch_worker_recovered_records_total")
        if interval == "0s":  # recovered from the first worker's checkpoints: only the second half re-read
            assert reread == records_in(second)
        else:  # never checkpointed: rebuilt from the first record
            assert reread == records_in(dirty_file)


class TestDeadLetters:
    # kafka-python 3.0 loads its protocol schemas with importlib.resources.read_text/open_text, deprecated in 3.11.
    @pytest.mark.filterwarnings("ignore::DeprecationWarning")
    def test_every_invalid_record_is_dead_lettered_with_reason_and_bytes(self, kafka_env, dirty_file, reference):
        """The dead-letter topic holds each rejected record once: original bytes, reason and source headers."""
        from kafka import KafkaConsumer

        assert engagewatch(kafka_env, "topics", "create").returncode == 0
        replay(kafka_env, dirty_file)
        worker = Worker(kafka_env)
        try:
            worker.drained(records_in(dirty_file))
        finally:
            worker.stop()
        expected = collections.Counter(
            (d["reason"], d["record"].encode() if "record" in d else base64.b64decode(d["record_base64"]))
            for d in reference[1]
        )
        assert expected, "the dirty file should have dead letters"
        consumer = KafkaConsumer(
            kafka_env["ENGAGEWATCH_KAFKA__DEAD_LETTER_TOPIC"],
            bootstrap_servers=kafka_env["ENGAGEWATCH_KAFKA__BOOTSTRAP_SERVERS"],
            auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=5000,
        )
        try:
            got = collections.Counter()
            for message in consumer:
                headers = dict(message.headers)
                assert headers["source_topic"].decode() == kafka_env["ENGAGEWATCH_KAFKA__INTERACTIONS_TOPIC"]
                assert int(headers["source_partition"]) >= 0 and int(headers["source_offset"]) >= 0
                got[(headers["reason"].decode(), message.value or b"")] += 1
                if sum(got.values()) >= sum(expected.values()):
                    break
        finally:
            consumer.close()
        assert got == expected


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
