"""The distributed runtime: a Faust worker running the pure engine on the interactions topic.

Design (see docs/kafka.md for the operator's view):

- One `Engine` per assigned interactions partition. The Kafka key is the account and all engine state is per
  account, so a partition's engine is exactly the state of the accounts on it.
- Records are read in batches with aiokafka `getmany` and fed to the partition's engine in one call per
  partition: at assignment by the catch-up reader (up to the end of the partition), then by the live reader, one
  group-less consumer that follows every partition the worker owns from the offset after the engine's. Faust keeps
  the group membership, the assignment, the checkpoint table and the commits: once Faust has recovered a
  partition's table (it resumes the partition), the worker pauses the partition in Faust's consumer (Faust no
  longer delivers its records) and the live reader takes it over. After each batch the producer is flushed; every
  `broker_commit_interval` the offset after the last record applied is committed through Faust's consumer (so
  the group's committed offset covers only records whose dead letters are durable). Records Faust's own stream
  still delivers (in the moment between its resuming a partition and the worker pausing it) go through the agent
  (`stream.take_events`) and are filtered by offset like the reader's, so each record is applied once.
- Every `checkpoint_interval`, a partition's engine state and the offset of the last record it includes are
  written to the `checkpoints` table (changelog-backed, compacted; memory or RocksDB store). On assignment the
  engine is rebuilt from the checkpoint and fed the records after its offset with a side reader up to the end of
  the partition; records the stream then delivers at or below the engine's offset are skipped. The state is
  therefore exact after a restart or a rebalance, whatever offset the consumer group had committed.
- Invalid and late records go to the dead-letter topic, value = the original bytes, headers = reason, detail,
  source topic, partition and offset. The producer is flushed before a batch is acknowledged, so a dead letter is
  durable before its record's offset can be committed (at least once).
- Per-stream series are exported only for owned partitions; a revoked partition's engine is dropped at once.
- The event clock is shared: after each batch a worker publishes, per partition it owns, the largest applied ts
  to the compacted `<app_id>-event-clock` topic (key = partition), and every worker follows that topic with a
  group-less reader. On the event clock T = the largest value over all partitions, so every worker of a group
  evaluates at the T of `engagewatch run` on the whole input, whatever partitions it owns.
- The decay detectors run per partition (their state is in the partition's checkpoint and moves with it): on the
  event clock at every tick of the partition's event time (`Engine.feed(on_tick=...)`), on the wall clock every
  `detect_tick` of real time. Alerts go to the alerts topic (key = account) and the configured HTTP sinks.
- `engagewatch_consumer_lag{topic,partition}` = the partition's high watermark as last fetched (by the live
  reader) minus the offset after the last record the engine includes.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from processors.config import EngineConfig, parse_duration
from processors.decay import DecayConfig, DecayMonitor, MonitorState
from processors.engine import DeadLetter, Engine
from processors.snapshot import Snapshot
from streams import logs
from streams.alerts import FanoutSink, monitor_metric_families, sink_metric_families, sinks_from_settings
from streams.exporter import BudgetWarnings, EngineCollector
from streams.kafka_checkpoint import decode, encode
from streams.kafka_clients import (
    CHECKPOINT_TABLE, MAX_CHECKPOINT_BYTES, aiokafka_config, event_clock_topic, faust_credentials,
)
from streams.settings import Settings

CATCH_UP_FETCH_MS = 500
LIVE_FETCH_MS = 100
"""Longest wait of the live reader for records (it returns as soon as any arrive); also how soon it notices a
partition taken over or given up."""
LIVE_FETCH_BYTES = 8 * 1024 * 1024
"""Per partition and fetch: the interactions topic's `max.message.bytes`, so that any record can be read."""

log = logs.get("engagewatch.worker")


@dataclass
class PartitionState:
    """What the worker holds for one owned interactions partition."""

    engine: Engine
    offset: int
    """Offset of the last record the engine includes; -1 when none."""
    checkpointed_offset: int
    """Offset of the last checkpoint written (or recovered)."""
    checkpointed_at: float
    """time.monotonic() of that checkpoint."""
    monitor: DecayMonitor | None = None
    """The decay detectors of the partition's streams; None when detection is off."""
    published_ts: int | None = None
    """Largest applied ts last published to the event-clock topic."""
    next_wall_tick: int = 0
    """Wall clock: when the detectors observe next (epoch ms)."""
    checkpoint_bytes: int = 0
    """Size of the last checkpoint written or recovered (a measure of the state)."""


class WorkerRuntime:
    """Engines per partition, their recovery and checkpoints, and the metrics view over them.

    Kafka-free apart from the side reader used for catch-up, so the processing can be reasoned about on its own.
    All mutation happens on the event loop; the metrics thread reads under `lock`.
    """

    def __init__(self, settings: Settings, clock: str, now_ms: Any = None, detect: bool = True) -> None:
        if clock not in ("event", "wall"):
            raise ValueError(f"clock must be event or wall, not {clock!r}")
        self.settings = settings
        self.kafka = settings.kafka
        self.config: EngineConfig = settings.engine_config()
        self.clock = clock
        self.now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)
        self.checkpoint_every_s = parse_duration(self.kafka.checkpoint_interval, "kafka.checkpoint_interval") / 1000
        self.partitions: dict[int, PartitionState] = {}
        self.lock = threading.Lock()
        self._loading: dict[int, asyncio.Future] = {}
        self._evaluated_ms = 0
        self.records = 0
        self.skipped = 0
        self.caught_up = 0
        self.checkpoints_written = 0
        self._last_checkpoint_at = 0.0
        self.dead_letters_sent = 0
        self.clock_ts: dict[int, int] = {}
        """Partition -> largest applied ts, as published by whichever worker owns (or owned) it."""
        self.detect = detect
        self.tick_ms = settings.detect_tick_ms()
        self.decay_config = DecayConfig.from_engine(self.config)
        self._mute_alerts = False
        self._budgets = BudgetWarnings(log, self.config)
        self.exporting = True
        """False from the moment the worker starts stopping: its partitions are about to move to other workers."""
        self.collector = EngineCollector(self._snapshots_locked, self.lock,
                                         extra=[self._pipeline_families, self._detector_families])
        # Wired by build_app:
        self.app: Any = None
        self.table: Any = None
        self.dead_letter_topic: Any = None
        self.clock_topic: Any = None
        self.alerts_topic: Any = None
        self.sink: FanoutSink = FanoutSink([])
        # The live reader (see run_live):
        self.live: set[int] = set()
        """Partitions the live reader follows: Faust has recovered their table and no longer delivers them."""
        self.reader: Any = None
        self.commit_every_s = 2.8
        self._live_stop = False
        self._live_exited: asyncio.Event | None = None
        self._last_commit = time.monotonic()
        self.failure: Exception | None = None
        """What stopped the worker with an error (the command then exits 1), or None."""

    # -- evaluation ---------------------------------------------------------------------------------------

    def evaluation_time(self) -> int:
        """Now on the wall clock; on the event clock the largest applied ts over every partition of the topic
        (the owned engines, and what the event-clock topic says of the others).

        Never decreases, since an engine must not be evaluated at an earlier time than before."""
        if self.clock == "wall":
            t = self.now_ms()
        else:
            t = max((s.engine.event_time() or 0 for s in self.partitions.values()), default=0)
            t = max(t, max(self.clock_ts.values(), default=0))
        self._evaluated_ms = max(self._evaluated_ms, t)
        return self._evaluated_ms

    def _snapshots_locked(self) -> list[Snapshot]:
        t = self.evaluation_time()
        return [s.engine.snapshot(t) for _, s in sorted(self._exported().items())]

    def _exported(self) -> dict[int, PartitionState]:
        return self.partitions if self.exporting else {}

    def stop_exporting(self) -> None:
        """Before the consumer leaves the group: export no partition any more, so that no stream is exported by
        this worker and the partition's next owner at once."""
        with self.lock:
            self.exporting = False

    def _pipeline_families(self) -> Iterator[Metric]:
        owned = GaugeMetricFamily("engagewatch_worker_partitions", "Interactions partitions this worker owns.",
                                  value=len(self._exported()))
        offset = GaugeMetricFamily("engagewatch_worker_partition_offset",
                                   "Offset of the last interactions record applied, per owned partition.",
                                   labels=["partition"])
        for p, s in sorted(self._exported().items()):
            offset.add_metric([str(p)], s.offset)
        checkpoints = CounterMetricFamily("engagewatch_worker_checkpoints", "Partition checkpoints written.",
                                          value=self.checkpoints_written)
        sizes = GaugeMetricFamily("engagewatch_worker_checkpoint_bytes",
                                  "Size of the last checkpoint written or recovered, per owned partition.",
                                  labels=["partition"])
        for p, st in sorted(self._exported().items()):
            if st.checkpoint_bytes:
                sizes.add_metric([str(p)], st.checkpoint_bytes)
        replayed = CounterMetricFamily("engagewatch_worker_recovered_records",
                                       "Records re-read after a checkpoint while recovering partitions.",
                                       value=self.caught_up)
        lag = GaugeMetricFamily("engagewatch_consumer_lag",
                                "Records of the interactions partition not yet applied (log end minus position).",
                                labels=["topic", "partition"])
        topic = self.kafka.interactions_topic
        for p, n in sorted(self._lags().items()):
            lag.add_metric([topic, str(p)], n)
        return iter([owned, offset, checkpoints, sizes, replayed, lag])

    def _lags(self) -> dict[int, int]:
        """Per owned partition: high watermark (as last fetched by the consumer) minus the next offset to apply."""
        from faust.types import TP

        exported = self._exported()
        if not exported or self.app is None:
            # Not `app.consumer` before a partition is assigned: Faust creates its consumer on first access, and
            # created from this scrape thread it would bind its thread service to this thread's event loop; the
            # worker's start then fails ("Future attached to a different loop") and the worker never consumes.
            return {}
        consumer = self.app.consumer
        reader = self.reader
        out = {}
        for p, s in exported.items():
            try:
                if reader is not None and p in self.live:
                    # Faust's consumer no longer fetches a partition the live reader follows
                    from aiokafka import TopicPartition

                    hw = reader.highwater(TopicPartition(self.kafka.interactions_topic, p))
                else:
                    hw = consumer.highwater(TP(self.kafka.interactions_topic, p))
            except Exception:  # noqa: BLE001 - not fetched yet, or the consumer is restarting: no value
                continue
            if hw is not None:
                out[p] = max(0, hw - (s.offset + 1))
        return out

    def _detector_families(self) -> Iterator[Metric]:
        """The detectors' gauges over every owned partition (alert counters summed), and the sinks' counters."""
        if not self.detect:
            return iter(())
        states = [s.monitor.state() for _, s in sorted(self._exported().items()) if s.monitor is not None]
        fired: dict[tuple[str, str], int] = {}
        for st in states:
            for name, severity, n in st.alerts_total:
                fired[(name, severity)] = fired.get((name, severity), 0) + n
        merged = MonitorState(
            at_ms=max((st.at_ms for st in states), default=0),
            streams=tuple(h for st in states for h in st.streams),
            alerts_total=tuple((name, sev, n) for (name, sev), n in sorted(fired.items())),
            hollow_window=self.decay_config.hollow_window,
            cohort_window=self.decay_config.cohort_label,
        )
        return iter([*monitor_metric_families(merged), *sink_metric_families(self.sink.sinks)])

    # -- assignment -------------------------------------------------------------------------------------------

    async def ensure(self, partition: int) -> PartitionState:
        """The partition's state, recovering it (once, even when asked concurrently) when it is not loaded."""
        state = self.partitions.get(partition)
        if state is not None:
            return state
        fut = self._loading.get(partition)
        if fut is None:
            fut = self._loading[partition] = asyncio.ensure_future(self._recover(partition))
        try:
            return await asyncio.shield(fut)
        finally:
            if fut.done():
                self._loading.pop(partition, None)

    async def _recover(self, partition: int) -> PartitionState:
        stored = self.table.get(partition) if self.table is not None else None
        blob = base64.b64decode(stored) if stored else None
        engine, offset, detectors = Engine(self.config), -1, None
        if blob:
            try:
                offset, engine, detectors = decode(self.config, blob)
                monitor = self._new_monitor(detectors)
            except Exception as e:  # noqa: BLE001 - any unreadable checkpoint means: rebuild from the log
                log.warning("checkpoint unusable, rebuilding the partition from its first record",
                            partition=partition, error=str(e))
                engine, offset = Engine(self.config), -1
                monitor = self._new_monitor(None)
        else:
            monitor = self._new_monitor(None)
        checkpointed = offset
        state = PartitionState(engine, offset, checkpointed, time.monotonic(), monitor)
        state.checkpoint_bytes = len(blob or b"")
        state.offset = await self._catch_up(partition, state)
        with self.lock:
            self.partitions[partition] = state
        self._publish_event_time(partition, state)
        log.info("partition recovered", partition=partition, checkpoint_offset=checkpointed, offset=state.offset,
                 streams=engine.stream_count)
        return state

    def _new_monitor(self, detectors: bytes | None) -> DecayMonitor | None:
        if not self.detect:
            return None
        if detectors:
            return DecayMonitor.from_bytes(self.decay_config, detectors)
        return DecayMonitor(self.decay_config)

    async def _catch_up(self, partition: int, state: PartitionState) -> int:
        """Feed the partition's engine the records after its offset up to the current end; returns the new offset.

        Dead letters and alerts are re-published only for records at or after the group's committed offset: those
        before it were published (and flushed) before that offset was committed."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        tp = TopicPartition(self.kafka.interactions_topic, partition)
        offset = state.offset
        reader = AIOKafkaConsumer(
            **aiokafka_config(self.kafka),
            group_id=self.kafka.app_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await reader.start()
        try:
            reader.assign([tp])
            end = (await reader.end_offsets([tp]))[tp]
            start = (await reader.beginning_offsets([tp]))[tp]
            if offset + 1 < start:
                log.warning("records after the checkpoint were deleted by retention; state misses them",
                            partition=partition, checkpoint_offset=offset, first_available=start)
            if max(offset + 1, start) >= end:
                return offset
            committed = await reader.committed(tp)
            committed = -1 if committed is None else committed
            reader.seek(tp, max(offset + 1, start))
            while offset + 1 < end:
                batches = await reader.getmany(tp, timeout_ms=CATCH_UP_FETCH_MS)
                messages = [m for m in batches.get(tp, ()) if m.offset < end]
                if not messages:
                    if (await reader.position(tp)) >= end:
                        break
                    continue
                # Alerts of records the group had committed were sent before: observe, but do not send again.
                split = next((i for i, m in enumerate(messages) if m.offset >= committed), len(messages))
                for part, mute in ((messages[:split], True), (messages[split:], False)):
                    if not part:
                        continue
                    lines = [m.value if m.value is not None else b"" for m in part]
                    self._mute_alerts = mute
                    try:
                        with self.lock:
                            dead = self._feed_engine(partition, state, lines)
                    finally:
                        self._mute_alerts = False
                    offset = part[-1].offset
                    self.caught_up += len(part)
                    self._send_dead_letters(
                        partition,
                        ((d, part[d.index].key, part[d.index].offset) for d in dead if part[d.index].offset >= committed),
                    )
            await self._flush()
            return offset
        finally:
            await reader.stop()

    def owned(self) -> set[int]:
        """Interactions partitions Faust is consuming now (assigned and, for tables, recovered)."""
        consumer = self.app.consumer
        active = getattr(consumer, "_active_partitions", None) or set()
        topic = self.kafka.interactions_topic
        return {tp.partition for tp in active if tp.topic == topic} | self.live

    async def load_idle(self) -> None:
        """Recover owned partitions that have had no record yet, so their series are exported too."""
        if self.app.rebalancing:
            return
        for partition in sorted(self.owned() - set(self.partitions)):
            await self.ensure(partition)

    def revoke(self, partitions: Iterable[int]) -> None:
        """Drop the engines (and so the series) of partitions this worker no longer owns."""
        partitions = list(partitions)
        self.live.difference_update(partitions)
        gone = [p for p in partitions if p in self.partitions]
        with self.lock:
            for p in gone:
                del self.partitions[p]
        for p in partitions:
            fut = self._loading.pop(p, None)
            if fut is not None:
                fut.cancel()
        if gone:
            log.info("partitions revoked", partitions=sorted(gone))

    # -- processing ---------------------------------------------------------------------------------------

    def _now_for_feed(self) -> int | None:
        return self.now_ms() if self.clock == "wall" else None

    def _feed_engine(self, partition: int, state: PartitionState, lines: list[bytes]) -> list[DeadLetter]:
        """Engine.feed on the worker's clock; on the event clock the detectors observe every tick. Under `lock`."""
        engine, monitor = state.engine, state.monitor
        if self.clock == "wall":
            dead = engine.feed(lines, self.now_ms())
        elif monitor is None:
            dead = engine.feed(lines)
        else:
            def on_tick(at_ms: int) -> None:
                self._alerts(monitor.observe(at_ms, engine.snapshot(at_ms).streams))

            dead = engine.feed(lines, on_tick=on_tick, tick_ms=self.tick_ms)
        self._budgets.check(engine.overflow)
        return dead

    def _alerts(self, alerts: list[Any]) -> None:
        if alerts and not self._mute_alerts:
            self.sink.send(alerts)

    def wall_ticks(self) -> None:
        """Wall clock: the detectors of each owned partition observe once per `detect_tick` of real time."""
        if self.clock != "wall" or not self.detect:
            return
        now = self.now_ms()
        with self.lock:
            for _, state in sorted(self.partitions.items()):
                if state.monitor is not None and now >= state.next_wall_tick:
                    self._alerts(state.monitor.observe(now, state.engine.snapshot(now).streams))
                    state.next_wall_tick = now + self.tick_ms

    def _publish_event_time(self, partition: int, state: PartitionState) -> None:
        """Tell every worker (through the event-clock topic) how far this partition's event time has come."""
        if self.clock != "event" or self.clock_topic is None:
            return
        ts = state.engine.event_time()
        if ts is None or ts == state.published_ts:
            return
        self.clock_topic.send_soon(key=str(partition).encode(), value=str(ts).encode())
        state.published_ts = ts
        self.clock_ts[partition] = max(ts, self.clock_ts.get(partition, ts))

    def on_event_clock(self, key: bytes | None, value: bytes | None) -> None:
        """A record of the event-clock topic: partition -> largest applied ts (only ever raises the value)."""
        try:
            partition, ts = int(key or b""), int(value or b"")
        except ValueError:
            return
        if ts > self.clock_ts.get(partition, ts - 1):
            self.clock_ts[partition] = ts

    async def follow_event_clock(self) -> None:
        """Read the event-clock topic from its beginning, forever (reconnecting when the cluster goes away)."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        tp = TopicPartition(event_clock_topic(self.kafka), 0)
        while True:
            reader = AIOKafkaConsumer(**aiokafka_config(self.kafka), group_id=None, enable_auto_commit=False,
                                      auto_offset_reset="earliest")
            try:
                await reader.start()
                reader.assign([tp])
                await reader.seek_to_beginning(tp)
                while True:
                    batches = await reader.getmany(tp, timeout_ms=500)
                    for m in batches.get(tp, ()):
                        self.on_event_clock(m.key, m.value)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - keep following; the worker must not die of a broker outage
                log.warning("event-clock reader failed; retrying", error=f"{type(e).__name__}: {e}")
                await asyncio.sleep(1.0)
            finally:
                await reader.stop()

    async def process(self, events: list[Any]) -> None:
        """One batch from the stream: fed per partition in arrival order, dead letters sent, checkpoints due."""
        groups: dict[int, list[Any]] = {}
        for event in events:
            groups.setdefault(event.message.partition, []).append(event)
        assigned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.kafka.interactions_topic}
        for partition, group in groups.items():
            if partition not in assigned:
                continue  # revoked while the batch was buffered: its new owner processes these
            state = await self.ensure(partition)
            # In offset order, once each: a batch can hold a record twice (delivered again after a seek or a
            # rebalance), so the filter follows the last offset kept, not only the engine's.
            fresh, last = [], state.offset
            for e in group:
                if e.message.offset > last:
                    fresh.append(e)
                    last = e.message.offset
            self.skipped += len(group) - len(fresh)
            if fresh:
                self._feed(partition, state, [e.message for e in fresh])
                self._publish_event_time(partition, state)
            if self._checkpoint_is_due(state, time.monotonic()):
                # Any event of the partition (even a skipped one) tells the table where to write.
                self.checkpoint(partition, state, group[-1])
        await self._flush()

    def _feed(self, partition: int, state: PartitionState, fresh: list[Any]) -> None:
        """Apply records (anything with offset, key and value: Faust messages, aiokafka records) the engine does not
        include yet, in offset order; queue their dead letters."""
        lines = [m.value if m.value is not None else b"" for m in fresh]
        with self.lock:
            dead = self._feed_engine(partition, state, lines)
            state.offset = fresh[-1].offset
        self.records += len(fresh)
        if dead:
            self._send_dead_letters(partition, ((d, fresh[d.index].key, fresh[d.index].offset) for d in dead))

    # -- the live reader ----------------------------------------------------------------------------------------

    def _take_over(self) -> None:
        """Partitions Faust has recovered (it has resumed them) are paused in Faust's consumer, so that Faust stops
        delivering their records, and followed by the live reader from now on; their engines are recovered in the
        background. Faust resumes its partitions after every rebalance: this runs before every fetch."""
        consumer = self.app.consumer
        if self.app.rebalancing:
            return
        topic = self.kafka.interactions_topic
        active = {tp for tp in (getattr(consumer, "_active_partitions", None) or ()) if tp.topic == topic}
        if active:
            consumer.pause_partitions(active)
            self.live.update(tp.partition for tp in active)
        for partition in sorted(self.live - set(self.partitions) - set(self._loading)):
            future = asyncio.ensure_future(self.ensure(partition))
            future.add_done_callback(lambda f, p=partition: self._recovered(p, f))

    def _recovered(self, partition: int, future: asyncio.Future) -> None:
        if future.cancelled():
            return  # revoked meanwhile, or the worker stops
        error = future.exception()
        if error is not None:  # e.g. the cluster went away during the catch-up: tried again before the next fetch
            log.warning("partition recovery failed; retrying", partition=partition,
                        error=f"{type(error).__name__}: {error}")

    async def run_live(self) -> None:
        """Follow the partitions taken over (see `_take_over`) with one group-less consumer, in batches: feed each
        partition's records after the engine's offset, publish the event time, flush the producer, checkpoint and
        commit when due. Reconnects by itself after a broker outage."""
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from faust.exceptions import PartitionsMismatch

        self._live_exited = asyncio.Event()
        topic = self.kafka.interactions_topic
        max_records = max(self.kafka.batch_size, 1) * 4
        try:
            while not self._live_stop:
                reader = AIOKafkaConsumer(
                    **aiokafka_config(self.kafka), group_id=None, enable_auto_commit=False,
                    auto_offset_reset="earliest", max_partition_fetch_bytes=LIVE_FETCH_BYTES,
                    fetch_max_wait_ms=LIVE_FETCH_MS,
                )
                try:
                    await reader.start()
                    self.reader = reader
                    reading: dict[int, PartitionState] = {}
                    while not self._live_stop:
                        self._take_over()
                        current = {p: s for p, s in self.partitions.items() if p in self.live}
                        if current.keys() != reading.keys() or any(current[p] is not s for p, s in reading.items()):
                            reader.assign([TopicPartition(topic, p) for p in sorted(current)])
                            for p, s in current.items():
                                reader.seek(TopicPartition(topic, p), s.offset + 1)
                            reading = current
                        if reading:
                            batches = await reader.getmany(timeout_ms=LIVE_FETCH_MS, max_records=max_records)
                            if self._live_stop:
                                break
                            self._apply_live(batches, reading)
                            await self._flush()
                        else:
                            await asyncio.sleep(LIVE_FETCH_MS / 1000)
                        if time.monotonic() - self._last_commit >= self.commit_every_s:
                            await self.commit_live()
                except asyncio.CancelledError:
                    raise
                except PartitionsMismatch as e:
                    self.stop_on_mismatch(e)
                    return
                except Exception as e:  # noqa: BLE001 - keep reading; the worker must not die of a broker outage
                    log.warning("live reader failed; retrying", error=f"{type(e).__name__}: {e}")
                    await asyncio.sleep(1.0)
                finally:
                    self.reader = None
                    await reader.stop()
        finally:
            self._live_exited.set()

    def stop_on_mismatch(self, error: Exception) -> None:
        """Partitions were added under the running worker: its checkpoints no longer fit the topic, and no retry
        can help. Met by the live reader or by the agent, whichever checkpoints first.

        The worker stops as on SIGTERM, not by crashing the app: a crash stops Faust's services at once, and its
        final producer flush could then wait forever. Nor does the stop wait for Faust's stream to take every
        message delivered to it, which right after start-up may never happen: recovery reads them again after
        the last checkpoint's offset.
        """
        log.error("checkpoints no longer fit the topic; stopping", error=str(error))
        if self.failure is None:
            self.failure = error
            self.app.conf.stream_wait_empty = False
            os.kill(os.getpid(), signal.SIGTERM)

    def _apply_live(self, batches: dict[Any, list[Any]], reading: dict[int, PartitionState]) -> None:
        """One fetch of the live reader: per partition still followed, the records after the engine's offset."""
        for tp, messages in batches.items():
            partition = tp.partition
            state = self.partitions.get(partition)
            if not messages or state is None or state is not reading.get(partition) or partition not in self.live:
                continue  # given up (revoked) since the fetch: its next owner applies these
            fresh = [m for m in messages if m.offset > state.offset]
            self.skipped += len(messages) - len(fresh)
            if fresh:
                self._feed(partition, state, fresh)
                self._publish_event_time(partition, state)
        # The most overdue checkpoint of the partitions followed, fed now or not (the catch-up may have fed it
        # last), and no sooner than an even share of the interval after the previous one: pickling a partition's
        # state holds the event loop, and partitions started together fall due together. Spread out, each pause
        # is caught up before the next; stacked, they add up to seconds of delay for every partition's records.
        if time.monotonic() - self._last_checkpoint_at >= self.checkpoint_every_s / max(1, len(reading)):
            self._checkpoint_due(reading, most=1)

    def _checkpoint_due(self, reading: dict[int, PartitionState], most: int | None = None) -> None:
        """Write the checkpoints that are due, the most overdue first, at most `most` of them."""
        now = time.monotonic()
        due = sorted(
            (state.checkpointed_at, partition, state) for partition, state in reading.items()
            if state is self.partitions.get(partition) and partition in self.live
            and self._checkpoint_is_due(state, now)
        )
        for _, partition, state in due[:most]:
            self.checkpoint(partition, state, _TableWrite(self.kafka.interactions_topic, partition))

    def _checkpoint_is_due(self, state: PartitionState, now: float) -> bool:
        """Records were applied since the last checkpoint, which is at least an interval old."""
        return state.offset > state.checkpointed_offset and now - state.checkpointed_at >= self.checkpoint_every_s

    async def commit_live(self, partitions: Iterable[int] | None = None) -> None:
        """Commit, through Faust's consumer (it holds the group), the offset after the last record applied of each
        partition the live reader follows; after a flush, so the dead letters of those records are durable."""
        from faust.types import TP
        from mode.utils.futures import notify

        self._last_commit = time.monotonic()
        consumer = self.app.consumer
        topic = self.kafka.interactions_topic
        offsets = {}
        for p in sorted(self.live if partitions is None else partitions):
            state = self.partitions.get(p)
            if state is None or state.offset < 0:
                continue
            tp = TP(topic, p)
            committed = consumer._committed_offset[tp]
            if committed is None or state.offset + 1 > committed:
                offsets[tp] = state.offset + 1
        if not offsets:
            return
        await self._flush()
        # One commit at a time, as Faust's own commits do: one computed earlier must not land after ours.
        await consumer.maybe_wait_for_commit_to_finish()
        consumer._commit_fut = asyncio.get_running_loop().create_future()
        try:
            await consumer._commit_offsets(offsets)
        finally:
            fut, consumer._commit_fut = consumer._commit_fut, None
            notify(fut)

    async def on_revoked(self, partitions: Iterable[int]) -> None:
        """Faust is giving partitions up: stop reading them, commit how far they were applied, drop their engines."""
        partitions = list(partitions)
        followed = [p for p in partitions if p in self.live]
        self.live.difference_update(partitions)
        if followed:
            try:
                await self.commit_live(followed)
            except Exception as e:  # noqa: BLE001 - at least once: the next owner re-publishes these dead letters
                log.warning("commit of revoked partitions failed", partitions=followed, error=str(e))
        self.revoke(partitions)

    async def stop_live(self) -> None:
        """Before the consumer leaves the group: stop the live reader, then commit how far each partition came."""
        self._live_stop = True
        if self._live_exited is not None:
            try:
                await asyncio.wait_for(self._live_exited.wait(), timeout=30)
            except asyncio.TimeoutError:
                log.warning("live reader did not stop within 30s")
        if self.live and self.app is not None:
            # A stop can come before the reader's next pass: write what is due now (flushed by the commit).
            self._checkpoint_due(dict(self.partitions))
            try:
                await self.commit_live()
            except Exception as e:  # noqa: BLE001 - at least once: the next owner re-publishes these dead letters
                log.warning("final commit failed", error=str(e))

    def checkpoint(self, partition: int, state: PartitionState, event: Any) -> None:
        """Write the partition's state to the checkpoint table (its changelog partition = `partition`)."""
        blob = encode(state.engine, state.offset, state.monitor)
        if (len(blob) + 2) // 3 * 4 + 64 > MAX_CHECKPOINT_BYTES:  # base64 text, plus the JSON quotes
            log.error("checkpoint too large to write; recovery will re-read from the previous one",
                      partition=partition, bytes=len(blob))
            state.checkpointed_at = time.monotonic()
            return
        with _current_event(event):
            self.table[partition] = base64.b64encode(blob).decode("ascii")
        state.checkpointed_offset = state.offset
        state.checkpointed_at = self._last_checkpoint_at = time.monotonic()
        self.checkpoints_written += 1
        state.checkpoint_bytes = len(blob)

    def _send_dead_letters(self, partition: int, items: Iterable[tuple[DeadLetter, bytes | None, int]]) -> None:
        """Queue dead letters on the producer: the original bytes, keyed as the record was, with headers."""
        topic = self.kafka.interactions_topic.encode()
        where = str(partition).encode()
        for dead, key, offset in items:
            headers = [
                ("reason", dead.reason.encode()),
                ("detail", dead.detail.encode("utf-8", "replace")),
                ("source_topic", topic),
                ("source_partition", where),
                ("source_offset", str(offset).encode()),
            ]
            self.dead_letter_topic.send_soon(key=key, value=dead.raw, headers=headers)
            self.dead_letters_sent += 1

    async def _flush(self) -> None:
        await self.app.producer.flush()


class _TableWrite:
    """Stands in for a Faust event when the live reader writes a checkpoint: all the table needs of the current
    event is the source topic and partition (its changelog partition)."""

    def __init__(self, topic: str, partition: int) -> None:
        self.message = self
        self.topic = topic
        self.partition = partition


@contextmanager
def _current_event(event: Any) -> Iterator[None]:
    """Make `event` Faust's current event, which tells the table which changelog partition to write."""
    from faust.streams import _current_event as var

    token = var.set(weakref.ref(event))
    try:
        yield
    finally:
        var.reset(token)


def build_app(runtime: WorkerRuntime, partitions: int, session_timeout_s: float | None = None) -> Any:
    """The Faust app: the interactions agent, the checkpoint table, the dead-letter, alerts and event-clock topics,
    the event-clock reader and the timer for idle partitions and wall-clock detector ticks."""
    import faust
    from faust.exceptions import PartitionsMismatch

    kafka = runtime.kafka
    timeouts: dict[str, float] = {}
    if session_timeout_s:
        # How soon a killed worker's partitions move; heartbeats must come several times per session timeout.
        timeouts = {"broker_session_timeout": session_timeout_s,
                    "broker_heartbeat_interval": min(3.0, session_timeout_s / 4)}
    app = faust.App(
        kafka.app_id,
        broker=[f"kafka://{server.strip()}" for server in kafka.bootstrap_servers.split(",")],
        broker_credentials=faust_credentials(kafka),
        store=kafka.store,
        datadir=kafka.data_dir,
        autodiscover=False,
        web_enabled=False,
        topic_partitions=partitions,
        topic_replication_factor=kafka.replication_factor,
        topic_allow_declare=True,
        producer_acks=-1,
        producer_max_request_size=MAX_CHECKPOINT_BYTES,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        processing_guarantee="at_least_once",
        **timeouts,
    )
    source = app.topic(kafka.interactions_topic, key_serializer="raw", value_serializer="raw", partitions=partitions)
    runtime.dead_letter_topic = app.topic(kafka.dead_letter_topic, key_serializer="raw", value_serializer="raw")
    runtime.clock_topic = app.topic(event_clock_topic(kafka), key_serializer="raw", value_serializer="raw")
    runtime.alerts_topic = app.topic(kafka.alerts_topic, key_serializer="raw", value_serializer="raw")
    runtime.sink = sinks_from_settings(
        runtime.settings.alerts, produce=lambda key, value: runtime.alerts_topic.send_soon(key=key, value=value)
    )
    runtime.table = app.Table(
        CHECKPOINT_TABLE,
        partitions=partitions,
        # Faust's table recovery decodes changelog values with the app's JSON codec whatever the table's schema
        # says, so checkpoints are stored as base64 text.
        key_type=int,
        value_type=str,
        extra_topic_configs={"max.message.bytes": str(MAX_CHECKPOINT_BYTES)},
    )
    runtime.app = app
    batch_within = parse_duration(kafka.batch_within, "kafka.batch_within")

    @app.agent(source, concurrency=1, name="engagewatch.process")
    async def process(stream):  # noqa: ANN001 - Faust's stream
        try:
            async for events in stream.take_events(kafka.batch_size, within=batch_within / 1000):
                await runtime.process(events)
        except PartitionsMismatch as e:  # left to Faust, the agent would die and the worker run on without it
            runtime.stop_on_mismatch(e)

    stop_consumer = app._stop_consumer  # Faust's first step when stopping: leave the group

    async def stop_exporting_then_leave() -> None:
        runtime.stop_exporting()
        try:
            await runtime.stop_live()
        except Exception as e:  # noqa: BLE001 - the rest of the stop must run, or Faust's threads keep the process
            # A lost last checkpoint costs a longer catch-up at the next start, nothing else.
            log.error("last checkpoint failed while stopping", error=f"{type(e).__name__}: {e}")
        await stop_consumer()

    app._stop_consumer = stop_exporting_then_leave

    runtime.commit_every_s = float(app.conf.broker_commit_interval)

    @app.task
    async def live_reader() -> None:
        await runtime.run_live()

    @app.task
    async def quiet_livelock_checks() -> None:
        # Faust's livelock detector expects its own consumer to fetch and its stream to process every assigned
        # partition; the interactions partitions are read by the live reader, so only the others are checked.
        consumer = app.consumer
        verify = consumer.verify_event_path

        def verify_others(now: float, tp: Any) -> None:
            if tp.topic != kafka.interactions_topic:
                verify(now, tp)

        consumer.verify_event_path = verify_others

    @app.timer(1.0, name="engagewatch.load_idle")
    async def load_idle() -> None:
        await runtime.load_idle()
        runtime.wall_ticks()

    if runtime.clock == "event":
        @app.task
        async def follow_event_clock() -> None:
            await runtime.follow_event_clock()

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: set, **_: Any) -> None:
        await runtime.on_revoked(tp.partition for tp in revoked if tp.topic == kafka.interactions_topic)

    return app
