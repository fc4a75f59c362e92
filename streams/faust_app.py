"""The distributed runtime: a Faust worker running the pure engine on the interactions topic.

Design (see docs/kafka.md for the operator's view):

- One `Engine` per assigned interactions partition. The Kafka key is the account and all engine state is per
  account, so a partition's engine is exactly the state of the accounts on it.
- The agent takes events in batches (`stream.take_events`), groups them by partition in arrival order and feeds
  each group to its partition's engine in one call.
- Every `checkpoint_interval`, a partition's engine state and the offset of the last record it includes are
  written to the `checkpoints` table (changelog-backed, compacted; memory or RocksDB store). On assignment the
  engine is rebuilt from the checkpoint and fed the records after its offset with a side reader up to the end of
  the partition; records the stream then delivers at or below the engine's offset are skipped. The state is
  therefore exact after a restart or a rebalance, whatever offset the consumer group had committed.
- Invalid and late records go to the dead-letter topic, value = the original bytes, headers = reason, detail,
  source topic, partition and offset. The producer is flushed before a batch is acknowledged, so a dead letter is
  durable before its record's offset can be committed (at least once).
- Per-stream series are exported only for owned partitions; a revoked partition's engine is dropped at once.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from processors.config import EngineConfig, parse_duration
from processors.engine import DeadLetter, Engine
from processors.snapshot import Snapshot
from streams import logs
from streams.exporter import EngineCollector
from streams.kafka_checkpoint import decode, encode
from streams.kafka_clients import CHECKPOINT_TABLE, aiokafka_config, faust_credentials
from streams.settings import Settings

CATCH_UP_FETCH_MS = 500
MAX_CHECKPOINT_BYTES = 64 * 1024 * 1024
"""Largest checkpoint value: the changelog topic's `max.message.bytes` and the producer's request size."""

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


class WorkerRuntime:
    """Engines per partition, their recovery and checkpoints, and the metrics view over them.

    Kafka-free apart from the side reader used for catch-up, so the processing can be reasoned about on its own.
    All mutation happens on the event loop; the metrics thread reads under `lock`.
    """

    def __init__(self, settings: Settings, clock: str, now_ms: Any = None) -> None:
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
        self.dead_letters_sent = 0
        self.collector = EngineCollector(self._snapshots_locked, self.lock, extra=[self._pipeline_families])
        # Wired by build_app:
        self.app: Any = None
        self.table: Any = None
        self.dead_letter_topic: Any = None

    # -- evaluation ---------------------------------------------------------------------------------------

    def evaluation_time(self) -> int:
        """Now on the wall clock; on the event clock the largest applied ts over the owned partitions.

        Never decreases, since an engine must not be evaluated at an earlier time than before."""
        if self.clock == "wall":
            t = self.now_ms()
        else:
            t = max((s.engine.event_time() or 0 for s in self.partitions.values()), default=0)
        self._evaluated_ms = max(self._evaluated_ms, t)
        return self._evaluated_ms

    def _snapshots_locked(self) -> list[Snapshot]:
        t = self.evaluation_time()
        return [s.engine.snapshot(t) for _, s in sorted(self.partitions.items())]

    def _pipeline_families(self) -> Iterator[Metric]:
        owned = GaugeMetricFamily("engagewatch_worker_partitions", "Interactions partitions this worker owns.",
                                  value=len(self.partitions))
        offset = GaugeMetricFamily("engagewatch_worker_partition_offset",
                                   "Offset of the last interactions record applied, per owned partition.",
                                   labels=["partition"])
        for p, s in sorted(self.partitions.items()):
            offset.add_metric([str(p)], s.offset)
        checkpoints = CounterMetricFamily("engagewatch_worker_checkpoints", "Partition checkpoints written.",
                                          value=self.checkpoints_written)
        replayed = CounterMetricFamily("engagewatch_worker_recovered_records",
                                       "Records re-read after a checkpoint while recovering partitions.",
                                       value=self.caught_up)
        return iter([owned, offset, checkpoints, replayed])

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
        engine, offset = Engine(self.config), -1
        if blob:
            try:
                offset, engine = decode(self.config, blob)
            except Exception as e:  # noqa: BLE001 - any unreadable checkpoint means: rebuild from the log
                log.warning("checkpoint unusable, rebuilding the partition from its first record",
                            partition=partition, error=str(e))
                engine, offset = Engine(self.config), -1
        checkpointed = offset
        offset = await self._catch_up(partition, engine, offset)
        state = PartitionState(engine, offset, checkpointed, time.monotonic())
        with self.lock:
            self.partitions[partition] = state
        log.info("partition recovered", partition=partition, checkpoint_offset=checkpointed, offset=offset,
                 streams=engine.stream_count)
        return state

    async def _catch_up(self, partition: int, engine: Engine, offset: int) -> int:
        """Feed `engine` the records of `partition` after `offset` up to the current end; returns the new offset.

        Dead letters are re-published only for records at or after the group's committed offset: those before
        it were published (and flushed) before that offset was committed."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        tp = TopicPartition(self.kafka.interactions_topic, partition)
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
                lines = [m.value if m.value is not None else b"" for m in messages]
                with self.lock:
                    dead = engine.feed(lines, self._now_for_feed())
                offset = messages[-1].offset
                self.caught_up += len(messages)
                self._send_dead_letters(
                    partition,
                    ((d, messages[d.index].key, messages[d.index].offset) for d in dead
                     if messages[d.index].offset >= committed),
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
        return {tp.partition for tp in active if tp.topic == topic}

    async def load_idle(self) -> None:
        """Recover owned partitions that have had no record yet, so their series are exported too."""
        if self.app.rebalancing:
            return
        for partition in sorted(self.owned() - set(self.partitions)):
            await self.ensure(partition)

    def revoke(self, partitions: Iterable[int]) -> None:
        """Drop the engines (and so the series) of partitions this worker no longer owns."""
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
            fresh = [e for e in group if e.message.offset > state.offset]
            self.skipped += len(group) - len(fresh)
            if fresh:
                self._feed(partition, state, fresh)
            if state.offset > state.checkpointed_offset and \
                    time.monotonic() - state.checkpointed_at >= self.checkpoint_every_s:
                # Any event of the partition (even a skipped one) tells the table where to write.
                self.checkpoint(partition, state, group[-1])
        await self._flush()

    def _feed(self, partition: int, state: PartitionState, fresh: list[Any]) -> None:
        """Apply records the engine does not include yet; queue their dead letters."""
        lines = [e.message.value if e.message.value is not None else b"" for e in fresh]
        with self.lock:
            dead = state.engine.feed(lines, self._now_for_feed())
            state.offset = fresh[-1].message.offset
        self.records += len(fresh)
        if dead:
            self._send_dead_letters(
                partition, ((d, fresh[d.index].message.key, fresh[d.index].message.offset) for d in dead)
            )

    def checkpoint(self, partition: int, state: PartitionState, event: Any) -> None:
        """Write the partition's state to the checkpoint table (its changelog partition = `partition`)."""
        blob = encode(state.engine, state.offset)
        if (len(blob) + 2) // 3 * 4 + 64 > MAX_CHECKPOINT_BYTES:  # base64 text, plus the JSON quotes
            log.error("checkpoint too large to write; recovery will re-read from the previous one",
                      partition=partition, bytes=len(blob))
            state.checkpointed_at = time.monotonic()
            return
        with _current_event(event):
            self.table[partition] = base64.b64encode(blob).decode("ascii")
        state.checkpointed_offset = state.offset
        state.checkpointed_at = time.monotonic()
        self.checkpoints_written += 1

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


@contextmanager
def _current_event(event: Any) -> Iterator[None]:
    """Make `event` Faust's current event, which tells the table which changelog partition to write."""
    from faust.streams import _current_event as var

    token = var.set(weakref.ref(event))
    try:
        yield
    finally:
        var.reset(token)


def build_app(runtime: WorkerRuntime, partitions: int) -> Any:
    """The Faust app: the interactions agent, the checkpoint table, the dead-letter topic, the idle-partition timer."""
    import faust

    kafka = runtime.kafka
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
    )
    source = app.topic(kafka.interactions_topic, key_serializer="raw", value_serializer="raw", partitions=partitions)
    runtime.dead_letter_topic = app.topic(kafka.dead_letter_topic, key_serializer="raw", value_serializer="raw")
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
        async for events in stream.take_events(kafka.batch_size, within=batch_within / 1000):
            await runtime.process(events)

    @app.timer(1.0, name="engagewatch.load_idle")
    async def load_idle() -> None:
        await runtime.load_idle()

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: set, **_: Any) -> None:
        runtime.revoke(tp.partition for tp in revoked if tp.topic == kafka.interactions_topic)

    return app
