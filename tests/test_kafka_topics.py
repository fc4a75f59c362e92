"""`engagewatch topics` against the real local broker."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.kafka


def engagewatch(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


class TestTopicsCreate:
    def test_creates_every_topic_then_is_idempotent(self, kafka_env):
        """A second `create` succeeds and reports every topic as existing, unchanged."""
        first = engagewatch(kafka_env, "topics", "create")
        assert first.returncode == 0, first.stderr
        assert [line.split()[0] for line in first.stdout.splitlines()] == ["created"] * 5
        second = engagewatch(kafka_env, "topics", "create")
        assert second.returncode == 0, second.stderr
        assert [line.split()[0] for line in second.stdout.splitlines()] == ["exists"] * 5
        assert "settings want" not in second.stdout

    def test_describe_shows_partitions_and_a_compacted_changelog(self, kafka_env):
        """The changelog is compacted; the other topics delete by retention."""
        assert engagewatch(kafka_env, "topics", "create", "--partitions", "3", "--retention", "2d").returncode == 0
        out = engagewatch(kafka_env, "topics", "describe").stdout.splitlines()
        by_role = {line.split("(")[1].split(")")[0]: line for line in out}
        assert set(by_role) == {"interactions", "alerts", "dead-letters", "checkpoints", "event-clock"}
        assert "3 partitions" in by_role["interactions"]
        assert "cleanup.policy=compact" in by_role["checkpoints"]
        assert "retention.ms=172800000" in by_role["interactions"]
        assert "cleanup.policy=compact" in by_role["event-clock"] and "1 partitions" in by_role["event-clock"]
        # Oversized records must reach the worker to be dead-lettered as too_large, original bytes included.
        assert "max.message.bytes=8388608" in by_role["interactions"]
        assert "max.message.bytes=8388608" in by_role["dead-letters"]

    def test_describe_reports_missing_topics(self, kafka_env):
        """Before `create`, describe says what is missing and how to fix it."""
        out = engagewatch(kafka_env, "topics", "describe")
        assert out.returncode == 0
        assert out.stdout.count("missing; run `engagewatch topics create`") == 5


class TestUnreachable:
    def test_topics_fails_clearly(self, kafka_env):
        """An unreachable cluster is an error naming the address, within the connect timeout."""
        env = kafka_env | {"ENGAGEWATCH_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
                           "ENGAGEWATCH_KAFKA__CONNECT_TIMEOUT": "2s"}
        out = engagewatch(env, "topics", "create", timeout=60)
        assert out.returncode == 1
        assert "cannot reach Kafka at 127.0.0.1:1" in out.stderr
