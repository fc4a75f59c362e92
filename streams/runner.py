"""The embedded runner: the engine fed from files or stdin in one process, no broker.

It owns the I/O the pure engine must not do: reading batches, choosing the evaluation time (event or wall
clock), writing dead letters, serving `/metrics`, and handing snapshots to detectors.
"""

from __future__ import annotations

import base64
import gc
import gzip
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import orjson

from prometheus_client.core import Metric

from processors.decay import DecayConfig, DecayMonitor
from processors.engine import DeadLetter, Engine
from processors.snapshot import Snapshot
from streams import logs
from streams.alerts import FanoutSink, monitor_metric_families, sink_metric_families, sinks_from_settings
from streams.exporter import BudgetWarnings, EngineCollector, exposition
from streams.settings import Settings

CHUNK_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Batch:
    lines: list[bytes]
    first_line: int
    """1-based line number of lines[0] in its source."""


def complete_lines(chunks: Iterable[bytes]) -> Iterator[list[bytes]]:
    """The lines of a stream of byte chunks, without their `\n`, as soon as each chunk completes some; a last
    line without `\n` comes at the end. The pieces of a line that spans chunks are joined once, so a very long
    line costs its length, not its length times the chunks it spans."""
    partial: list[bytes] = []
    for chunk in chunks:
        *lines, rest = chunk.split(b"\n")
        if lines:
            lines[0] = b"".join(partial) + lines[0]
            partial.clear()
            yield lines
        partial.append(rest)
    if last := b"".join(partial):
        yield [last]


def file_batches(f: BinaryIO, chunk_bytes: int = CHUNK_BYTES) -> Iterator[Batch]:
    """Whole lines from a binary file, about `chunk_bytes` at a time."""
    line_no = 1
    for lines in complete_lines(iter(lambda: f.read(chunk_bytes), b"")):
        yield Batch(lines, line_no)
        line_no += len(lines)


def open_source(path: str) -> BinaryIO:
    """A file of records, decompressed on the fly when its name ends in `.gz`."""
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def follow_batches(fd: int, max_lines: int = 2_000, max_wait_s: float = 0.2) -> Iterator[Batch | None]:
    """Lines from a pipe (a file descriptor) as they come: a batch at most every `max_wait_s`, None when nothing
    arrived.

    A reader thread blocks on the pipe so that the caller can keep evaluating (wall clock) while it is idle. It
    reads the descriptor itself: a buffered reader holds its lock while blocked, and a run stopped before EOF
    could then not shut down.
    """
    lines_q: queue.Queue[bytes | None] = queue.Queue(maxsize=100_000)

    def reader() -> None:
        for lines in complete_lines(iter(lambda: os.read(fd, 1 << 16), b"")):
            for line in lines:
                lines_q.put(line.rstrip(b"\r"))
        lines_q.put(None)

    threading.Thread(target=reader, name="stdin-reader", daemon=True).start()
    line_no = 1
    done = False
    while not done:
        batch: list[bytes] = []
        deadline = time.monotonic() + max_wait_s
        while len(batch) < max_lines:
            try:
                line = lines_q.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                done = True
                break
            batch.append(line)
        if batch:
            yield Batch(batch, line_no)
            line_no += len(batch)
        elif not done:
            yield None


class DeadLetterFile:
    """Dead letters as JSON lines: reason, detail, where the record came from, and the record itself.

    Written through batch by batch, not left in a buffer: someone may be following the file, and a process
    killed outright must not lose dead letters it has already counted. A write that fails (a full disk) raises
    OSError, and nothing of it is left pending.
    """

    def __init__(self, path: str, source: str) -> None:
        self._f = open(path, "wb", buffering=0)
        self._source = source

    def write(self, batch: Batch, dead: list[DeadLetter]) -> None:
        out = []
        for d in dead:
            entry = {"reason": d.reason, "detail": d.detail, "source": self._source, "line": batch.first_line + d.index}
            try:
                entry["record"] = d.raw.decode("utf-8")
            except UnicodeDecodeError:
                entry["record_base64"] = base64.b64encode(d.raw).decode("ascii")
            out.append(orjson.dumps(entry))
        if out:
            data = memoryview(b"\n".join(out) + b"\n")
            while data:
                data = data[self._f.write(data):]

    def close(self) -> None:
        self._f.close()


class Detection:
    """The decay detectors and their alert sinks, observed at every tick of the evaluation clock."""

    def __init__(self, engine: Engine, monitor: DecayMonitor, sink: FanoutSink, tick_ms: int) -> None:
        self.engine, self.monitor, self.sink, self.tick_ms = engine, monitor, sink, tick_ms
        self._next_wall_tick: int | None = None

    def on_tick(self, at_ms: int) -> None:
        alerts = self.monitor.observe(at_ms, self.engine.snapshot(at_ms).streams)
        if alerts:
            self.sink.send(alerts)

    def maybe_tick(self, now_ms: int) -> None:
        """Wall clock: observe once per tick of real time."""
        if self._next_wall_tick is None or now_ms >= self._next_wall_tick:
            self.on_tick(now_ms)
            self._next_wall_tick = now_ms + self.tick_ms

    def families(self) -> list[Metric]:
        return [*monitor_metric_families(self.monitor.state()), *sink_metric_families(self.sink.sinks)]


class EmbeddedRunner:
    """One engine, fed batch by batch, evaluated on the event or the wall clock."""

    def __init__(self, engine: Engine, clock: str, now_ms: Callable[[], int] | None = None) -> None:
        if clock not in ("event", "wall"):
            raise ValueError(f"clock must be event or wall, not {clock!r}")
        self.engine = engine
        self.clock = clock
        self.now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)
        self.lock = threading.Lock()
        self.records = 0
        self.collector = EngineCollector(lambda: [self._snapshot_locked()], self.lock)
        self.detection: Detection | None = None
        self._budgets = BudgetWarnings(logs.get("engagewatch.run"), engine.config)

    def detect(self, monitor: DecayMonitor, sink: FanoutSink, tick_ms: int) -> None:
        """Run the decay detectors alongside, and export their gauges."""
        self.detection = Detection(self.engine, monitor, sink, tick_ms)
        self.collector.add_source(self.detection.families)

    def feed(self, batch: Batch, history: bool = False) -> list[DeadLetter]:
        """Apply a batch. `history` is a backlog fed ahead of a live run: whatever the clock, the detectors
        observe it tick by tick of event time, as they would a replayed file."""
        d = self.detection
        with self.lock:
            if self.clock == "wall" and not history:
                now = self.now_ms()
                dead = self.engine.feed(batch.lines, now)
                if d:
                    d.maybe_tick(now)
            elif d:
                dead = self.engine.feed(batch.lines, on_tick=d.on_tick, tick_ms=d.tick_ms)
            else:
                dead = self.engine.feed(batch.lines)
            self.records += len(batch.lines)
        self._budgets.check(self.engine.overflow)
        # The engine's long-lived dicts hold millions of entries and no reference cycles: move them out of
        # the cyclic collector's reach, or its full collections rescan them and cost a quarter of the run.
        gc.freeze()
        return dead

    def idle(self) -> None:
        """Nothing arrived: on the wall clock time still passes for the detectors."""
        if self.detection and self.clock == "wall":
            with self.lock:
                self.detection.maybe_tick(self.now_ms())

    def close(self) -> None:
        """Final evaluation for the detectors, then flush the alert sinks."""
        if self.detection:
            with self.lock:
                self.detection.on_tick(self.evaluation_time())
            self.detection.sink.close()

    def evaluation_time(self) -> int:
        if self.clock == "wall":
            return self.now_ms()
        t = self.engine.event_time()
        return 0 if t is None else t

    def _snapshot_locked(self) -> Snapshot:
        return self.engine.snapshot(self.evaluation_time())

    def snapshot(self) -> Snapshot:
        with self.lock:
            return self._snapshot_locked()

    def write_exposition(self, path: str) -> None:
        """The final exposition, written whole or not at all (to a file; a pipe or a device such as /dev/stdout
        is written to directly, never replaced)."""
        data = exposition(self.collector)
        if os.path.exists(path) and not os.path.isfile(path):
            with open(path, "wb") as f:
                f.write(data)
            return
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError:
            if os.path.exists(tmp):  # a full disk, say: leave no half-written file behind
                os.remove(tmp)
            raise


def start_detection(runner: EmbeddedRunner, settings: Settings, alerts_out: str | None = None) -> None:
    """Detectors configured from the settings, alerts to `alerts_out` and the configured Alertmanager/webhook."""
    engine_config = settings.engine_config()
    monitor = DecayMonitor(DecayConfig.from_engine(engine_config))
    runner.detect(monitor, sinks_from_settings(settings.alerts, alerts_out=alerts_out), settings.detect_tick_ms())
