"""Producing a file of events into the interactions topic (kafka-python), keyed by account, in file order.

Every line is sent, valid or not: the worker decides what is invalid, exactly as `engagewatch run` would, and
dead-letters it. The key is the `account` field when the line is a JSON object with a string `account`,
otherwise no key. The producer is idempotent with `acks=all`, so a retried batch is neither lost nor doubled,
and records of one key keep their order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import orjson

from processors.wire import decode_beyond_double
from streams.kafka_clients import (
    MAX_RECORD_MESSAGE_BYTES, ConnectionFailures, Unreachable, connect_timeout_ms, kafka_python_config,
    unreachable_message,
)
from streams.settings import Settings


def read_records(stream: BinaryIO) -> Iterator[bytes]:
    """One record per line without its `\n`, exactly as `engagewatch run` splits a file: a blank line is a
    record (an invalid one), a final line without `\n` is a record, nothing after the last `\n` is."""
    for line in stream:
        yield line[:-1] if line.endswith(b"\n") else line


def account_key(record: bytes) -> bytes | None:
    """The Kafka key of a record: its `account` as UTF-8, or None when there is none to be had."""
    try:
        obj = orjson.loads(record)
    except orjson.JSONDecodeError:
        obj = decode_beyond_double(record)
    if isinstance(obj, dict):
        account = obj.get("account")
        if isinstance(account, str) and account:
            return account.encode()
    return None


@dataclass
class ReplayReport:
    """Counts of one replay."""

    topic: str
    sent: int = 0
    delivered: int = 0
    unkeyed: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    """Delivery error type -> count."""
    interrupted: bool = False
    """Stopped by Ctrl-C or SIGTERM: the first `sent` records were sent, and no more were read."""

    def summary(self) -> str:
        rate = self.delivered / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"{'interrupted: ' if self.interrupted else ''}"
            f"replayed {self.sent} records to {self.topic} in {self.seconds:.2f}s ({rate:,.0f}/s): "
            f"{self.delivered} delivered, {self.failed} failed, {self.unkeyed} without an account key"
        )
        if self.errors:
            text += "; errors: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.errors.items()))
        return text


def replay(
    settings: Settings,
    records: Iterable[bytes],
    rate: float | None = None,
    progress: Callable[[int], None] | None = None,
    topic: str | None = None,
) -> ReplayReport:
    """Send `records` in order; at most `rate` per second when given. Blocks until all are acknowledged.

    Interrupted (KeyboardInterrupt), it stops reading, still waits for what it sent, and says so in the report:
    whoever resumes needs to know how far it got.
    """
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    kafka = settings.kafka
    topic = topic or kafka.interactions_topic
    report = ReplayReport(topic)
    timeout_ms = connect_timeout_ms(kafka)
    error = None
    with ConnectionFailures() as failures:
        try:
            producer = KafkaProducer(
                **kafka_python_config(kafka),
                acks="all",
                enable_idempotence=True,
                max_in_flight_requests_per_connection=5,
                linger_ms=5,
                batch_size=256 * 1024,
                max_block_ms=timeout_ms,
                # Oversized records must reach the worker to be dead-lettered `too_large`; the topics accept as much.
                max_request_size=MAX_RECORD_MESSAGE_BYTES,
            )
        except KafkaError as e:
            error = e
    if error is not None:
        raise Unreachable(unreachable_message(kafka, error, failures))

    def delivered(_metadata) -> None:
        report.delivered += 1

    def failed(exc: BaseException) -> None:
        report.failed += 1
        name = type(exc).__name__
        report.errors[name] = report.errors.get(name, 0) + 1

    start = time.monotonic()
    try:
        try:
            producer.partitions_for(topic)  # fails fast when the topic is missing
        except KafkaError:
            raise Unreachable(f"topic {topic} does not exist on {kafka.bootstrap_servers}; run `engagewatch topics create`")
        interval = 1.0 / rate if rate else 0.0
        try:
            for record in records:
                if interval:
                    due = start + report.sent * interval
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)  # pacing to the requested rate
                key = account_key(record)
                if key is None:
                    report.unkeyed += 1
                try:
                    future = producer.send(topic, value=record, key=key)
                except KafkaError as e:
                    failed(e)
                else:
                    future.add_callback(delivered)
                    future.add_errback(failed)
                report.sent += 1
                if progress is not None:
                    progress(len(record) + 1)
            producer.flush(timeout=max(60.0, timeout_ms / 1000))
        except KeyboardInterrupt:
            # Stop reading; `close` below still delivers what was sent (or counts it failed). An interrupt
            # between a send and its count: every record acknowledged either way was sent.
            report.interrupted = True
            report.sent = max(report.sent, report.delivered + report.failed)
    finally:
        producer.close(timeout=10)
        report.seconds = time.monotonic() - start
    report.failed += report.sent - report.delivered - report.failed  # never acknowledged either way
    return report
