"""Pytest plugin: the real local Apache Kafka broker for tests marked `kafka`.

The session fixture `kafka_bootstrap` uses a broker already answering on 127.0.0.1:$KAFKA_PORT (default 9092),
or starts one with deploy/local/kafka.sh and stops it at the end of the session. Never a mock. Without Java (or
Maven, before the jars are fetched) the broker tests skip, or fail under ENGAGEWATCH_TEST_REQUIRE_ALL=1 (see
prerequisites.py).
Register with `pytest_plugins = ["tests.kafka_broker"]` in tests/conftest.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prerequisites import tool

ROOT = Path(__file__).resolve().parent.parent
KAFKA_SH = ROOT / "deploy" / "local" / "kafka.sh"


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """`127.0.0.1:PORT` of a running broker; started (and later stopped) here when none answers."""
    port = int(os.environ.get("KAFKA_PORT", "9092"))
    started = False
    if not _port_open(port):
        tool("java", "openjdk-17-jre-headless")
        home = Path(os.environ.get("KAFKA_HOME", KAFKA_SH.parent / ".kafka"))
        if not any(home.glob("libs-*/kafka_*.jar")):
            tool("mvn", "maven")  # fetches the Kafka jars from Maven Central, once
        env = os.environ | {"KAFKA_PORT": str(port)}
        result = subprocess.run(["bash", str(KAFKA_SH), "start"], env=env, capture_output=True, text=True,
                                timeout=600)
        if result.returncode != 0:
            pytest.fail(f"could not start the local Kafka broker:\n{result.stderr[-4000:]}")
        started = True
    yield f"127.0.0.1:{port}"
    if started:
        subprocess.run(["bash", str(KAFKA_SH), "stop"], env=os.environ | {"KAFKA_PORT": str(port)},
                       capture_output=True, timeout=120)


@pytest.fixture
def kafka_env(kafka_bootstrap: str, tmp_path: Path) -> dict[str, str]:
    """Environment for engagewatch commands on fresh, uniquely named topics and a fresh consumer group."""
    run = uuid.uuid4().hex[:10]
    return os.environ | {
        "ENGAGEWATCH_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ENGAGEWATCH_KAFKA__INTERACTIONS_TOPIC": f"test-{run}-interactions",
        "ENGAGEWATCH_KAFKA__ALERTS_TOPIC": f"test-{run}-alerts",
        "ENGAGEWATCH_KAFKA__DEAD_LETTER_TOPIC": f"test-{run}-dead-letters",
        "ENGAGEWATCH_KAFKA__APP_ID": f"test-{run}",
        "ENGAGEWATCH_KAFKA__PARTITIONS": "4",
        "ENGAGEWATCH_KAFKA__DATA_DIR": str(tmp_path / "worker"),
        "ENGAGEWATCH_KAFKA__CONNECT_TIMEOUT": "30s",  # generous: the machine may be busy
        "ENGAGEWATCH_LOG_LEVEL": "warning",
    }
