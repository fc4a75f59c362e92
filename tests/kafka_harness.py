"""Helpers for the broker tests: engagewatch commands, worker subprocesses scraped over /metrics, and comparisons
of their series with `engagewatch run`'s. Every wait is on a condition with a generous deadline (the machine may be
busy), never a fixed sleep standing in for one."""

from __future__ import annotations

import base64
import collections
import os
import signal
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import orjson
from ports import free_port
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
DRAIN_TIMEOUT = float(os.environ.get("ENGAGEWATCH_TEST_DRAIN_TIMEOUT", "300"))

CONTRACT_FAMILIES = {
    "engagewatch_audience_followers", "engagewatch_active_followers", "engagewatch_engaged_actors",
    "engagewatch_influencer_active_followers", "engagewatch_active_follower_ratio",
    "engagewatch_campaign_engaged_actors", "engagewatch_new_followers", "engagewatch_new_followers_activated",
    "engagewatch_engagements", "engagewatch_events", "engagewatch_dead_letters",
}
WORKER_ONLY = {
    # the worker's own health
    "engagewatch_consumer_lag",
    # the decay detectors (`engagewatch run` runs them only with --detect/--alerts-out)
    "engagewatch_active_follower_ratio_baseline", "engagewatch_decay_state", "engagewatch_decay_evidence_nats",
    "engagewatch_stream_silent", "engagewatch_hollow_growth", "engagewatch_onboarding_collapse",
    "engagewatch_alerts", "engagewatch_alert_notifications",
}
SUMMED = {"engagewatch_events_total", "engagewatch_dead_letters_total", "engagewatch_label_overflow_total",
          "engagewatch_streams"}
"""Samples that are totals over partitions: the union of several workers adds them up."""
LATEST = {"engagewatch_watermark_timestamp_seconds", "engagewatch_evaluation_timestamp_seconds"}


def engagewatch(env, *args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def create_topics(env) -> None:
    """`engagewatch topics create`, retried: it is idempotent, and a busy broker may time a request out."""
    for attempt in range(3):
        out = engagewatch(env, "topics", "create")
        if out.returncode == 0:
            return
    raise AssertionError(f"topics create failed 3 times: {out.stdout}\n{out.stderr}")


def replay(env, path: Path, *args: str) -> None:
    out = engagewatch(env, "replay", str(path), *args)
    assert out.returncode == 0 and " 0 failed" in out.stderr, out.stderr


def replay_in_background(env, path: Path, *args: str, log: Path) -> subprocess.Popen:
    with log.open("wb") as f:
        return subprocess.Popen([sys.executable, "-m", "streams.cli", "replay", str(path), *args], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=f)


def records_in(path: Path) -> int:
    """Kafka messages `replay` makes of the file: one per line, blank lines included."""
    data = path.read_bytes()
    return len(data.split(b"\n")) - (1 if data.endswith(b"\n") else 0)


def split_file(path: Path, parts: int, out_dir: Path) -> list[Path]:
    """`path` cut into `parts` consecutive files of whole lines; replayed in order they make the same messages."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    size = -(-len(lines) // parts)
    out = []
    for i in range(parts):
        p = out_dir / f"{path.stem}-part{i}.jsonl"
        chunk = lines[i * size:(i + 1) * size]
        p.write_bytes(b"".join(line + b"\n" for line in chunk))
        out.append(p)
    return out


def run_reference(path: Path, out_dir: Path, *args: str) -> tuple[str, list[dict]]:
    """`engagewatch run` on the file: its exposition and its dead letters."""
    prom, dead = out_dir / f"{path.stem}.prom", out_dir / f"{path.stem}.dead.jsonl"
    out = engagewatch(None, "run", "--source", str(path), "--metrics-out", str(prom), "--dead-letter", str(dead),
                      *args)
    assert out.returncode == 0, out.stderr
    return prom.read_text(), [orjson.loads(line) for line in dead.read_bytes().splitlines()]


def expected_dead_letters(dead: list[dict]) -> collections.Counter:
    """(reason, original bytes) of `run`'s dead-letter file."""
    return collections.Counter(
        (d["reason"], d["record"].encode() if "record" in d else base64.b64decode(d["record_base64"])) for d in dead
    )


def messages_in(env, topic: str, expected: int, timeout_s: float = 60) -> int:
    """How many messages `topic` holds, read until there are `expected` or time runs out."""
    with warnings.catch_warnings():  # see read_dead_letters
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(topic, bootstrap_servers=env["ENGAGEWATCH_KAFKA__BOOTSTRAP_SERVERS"],
                                 auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=1000)
        seen = 0
        deadline = time.monotonic() + timeout_s
        try:
            while seen < expected and time.monotonic() < deadline:
                seen += sum(1 for _ in consumer)
        finally:
            consumer.close()
    return seen


def add_partitions(env, topic: str, total: int) -> None:
    """Grow `topic` to `total` partitions, as an operator scaling up would."""
    with warnings.catch_warnings():  # see read_dead_letters
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka.admin import KafkaAdminClient, NewPartitions

        admin = KafkaAdminClient(bootstrap_servers=env["ENGAGEWATCH_KAFKA__BOOTSTRAP_SERVERS"])
        try:
            admin.create_partitions({topic: NewPartitions(total_count=total)})
        finally:
            admin.close()


def read_dead_letters(env, expected: int, timeout_s: float = 60) -> list[tuple[str, bytes, int, int]]:
    """(reason, bytes, source partition, source offset) of every dead letter in the topic (at least `expected`)."""
    # kafka-python 3.0 loads its protocol schemas with importlib.resources.read_text/open_text, deprecated in 3.11.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return _read_dead_letters(env, expected, timeout_s)


def _read_dead_letters(env, expected: int, timeout_s: float) -> list[tuple[str, bytes, int, int]]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        env["ENGAGEWATCH_KAFKA__DEAD_LETTER_TOPIC"], bootstrap_servers=env["ENGAGEWATCH_KAFKA__BOOTSTRAP_SERVERS"],
        auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=5000,
        fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    got = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for m in consumer:
                h = dict(m.headers)
                assert h["source_topic"].decode() == env["ENGAGEWATCH_KAFKA__INTERACTIONS_TOPIC"]
                got.append((h["reason"].decode(), m.value or b"", int(h["source_partition"]), int(h["source_offset"])))
            if len(got) >= expected:
                break
    finally:
        consumer.close()
    return got


# -- metrics ----------------------------------------------------------------------------------------------------


def families(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def samples(text: str) -> dict[tuple, float]:
    """(sample name, sorted labels) -> value, for every sample of the contract (not the worker's own, not the
    detectors')."""
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("engagewatch_worker_") or family.name in WORKER_ONLY:
            continue
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def family_names(text: str) -> set[str]:
    return {f.name for f in text_string_to_metric_families(text)}


def union(texts: Iterable[str]) -> dict[tuple, float]:
    """The samples of several workers as one: per-stream series must not appear twice; totals add up."""
    out: dict[tuple, float] = {}
    for text in texts:
        for key, value in samples(text).items():
            name = key[0]
            if name in SUMMED:
                out[key] = out.get(key, 0) + value
            elif name in LATEST:
                out[key] = max(out.get(key, value), value)
            else:
                assert key not in out, f"{key} exported by two workers"
                out[key] = value
    return out


def assert_same_series(ours: dict[tuple, float] | str, run_text: str) -> None:
    """The workers' samples are exactly those `run` writes (within the families a worker exports)."""
    if isinstance(ours, str):
        assert CONTRACT_FAMILIES <= family_names(ours)
        ours = samples(ours)
    theirs = samples(run_text)
    names = {k[0] for k in ours}
    shared = {k for k in theirs if k[0] in names or k in ours}
    missing = {k: theirs[k] for k in shared if k not in ours}
    differ = {k: (ours[k], theirs[k]) for k in shared if k in ours and ours[k] != theirs[k]}
    extra = {k: ours[k] for k in ours if k not in theirs}
    assert not missing and not differ and not extra, (
        f"missing {list(missing.items())[:5]}, differ {list(differ.items())[:5]}, extra {list(extra.items())[:5]}"
    )


def value(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def offsets(text: str) -> dict[int, int]:
    """Partition -> offset of the last record applied, for the partitions the worker exports."""
    return {int(s.labels["partition"]): int(s.value) for f in text_string_to_metric_families(text)
            if f.name == "engagewatch_worker_partition_offset" for s in f.samples}


def streams(text: str) -> set[tuple[str, str]]:
    """(account, platform) of every stream the worker exports."""
    return {(s.labels["account"], s.labels["platform"]) for f in text_string_to_metric_families(text)
            if f.name == "engagewatch_stream_actors" for s in f.samples}


class Worker:
    """An `engagewatch worker` subprocess with its /metrics port."""

    def __init__(self, env, *args: str, clock: str = "event") -> None:
        self.port = free_port()
        self.log = Path(env["ENGAGEWATCH_KAFKA__DATA_DIR"]).with_name(f"worker-{self.port}.log")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as log:  # a file, not a pipe: an unread pipe would block the worker's logging
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", "--clock", clock, "--metrics-port", str(self.port),
                 *args],
                env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log,
            )

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def scrape(self) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
                return r.read().decode()
        except OSError:
            return None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def consumed(self) -> int:
        text = self.scrape()
        return 0 if text is None else sum(o + 1 for o in offsets(text).values())

    def wait_for(self, condition: Callable[[str], bool], what: str, timeout: float = DRAIN_TIMEOUT) -> str:
        """The first exposition for which `condition` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.alive(), f"worker died: {self.tail()}"
            text = self.scrape()
            if text is not None and condition(text):
                return text
            time.sleep(0.25)  # polling the condition
        raise AssertionError(f"worker: no {what} within {timeout}s: {self.tail()}")

    def drained(self, messages: int, timeout: float = DRAIN_TIMEOUT, at: float | None = None) -> str:
        """The exposition once the worker's engines include all `messages` records of the topic (and, given `at`,
        it evaluates at that time, in seconds)."""
        def done(text: str) -> bool:
            consumed = sum(o + 1 for o in offsets(text).values())
            assert consumed <= messages, f"more records consumed ({consumed}) than produced ({messages})"
            return consumed == messages and (at is None or value(
                text, "engagewatch_evaluation_timestamp_seconds") == at)
        return self.wait_for(done, f"drain of {messages} records", timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """kill -9: no clean shutdown, no leaving the group, no last commit or checkpoint."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def drained_together(workers: list[Worker], messages: int, at: float | None,
                     timeout: float = DRAIN_TIMEOUT) -> list[str]:
    """Expositions of every worker once, together, they include all `messages` records, own disjoint partitions,
    and (given `at`) all evaluate at `at`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        texts = []
        for w in workers:
            assert w.alive(), f"worker died: {w.tail()}"
            texts.append(w.scrape())
        if all(t is not None for t in texts):
            owned = [offsets(t) for t in texts]
            consumed = sum(o + 1 for parts in owned for o in parts.values())
            disjoint = sum(len(p) for p in owned) == len(set().union(*owned))
            clocks = {value(t, "engagewatch_evaluation_timestamp_seconds") for t in texts}
            last = (consumed, [sorted(p) for p in owned], clocks)
            if consumed == messages and disjoint and (at is None or clocks == {at}):
                return texts
        time.sleep(0.25)  # polling the condition
    raise AssertionError(f"workers did not drain {messages} records together within {timeout}s: {last}")
