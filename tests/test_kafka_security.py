"""Issue 3's security item on real parts: a TLS-only local broker (deploy/local/kafka-secure.sh) with SASL_SSL
(SCRAM-SHA-512, SCRAM-SHA-256, PLAIN) and mutual TLS, configured only through `ENGAGEWATCH_KAFKA__*` variables.

For each way in, `topics create`, `replay` and `worker --clock event` give exactly the series `run` gives on the
file; wrong credentials end each command with exit status 1 and a message naming the cause, within the connect
timeout; and no password appears in anything a command prints, even with ENGAGEWATCH_LOG_LEVEL=debug.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka_harness import ROOT, Worker, assert_same_series, engagewatch, records_in, run_reference
from prerequisites import tool

pytestmark = pytest.mark.kafka

SECURE_SH = ROOT / "deploy" / "local" / "kafka-secure.sh"
SASL_PORT = int(os.environ.get("KAFKA_SECURE_SASL_PORT", "9192"))
MODES = ["scram-sha-512", "scram-sha-256", "plain", "mtls"]


def _secure_sh(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SECURE_SH), *args], capture_output=True, text=True, timeout=timeout,
                          env=os.environ | {"KAFKA_SECURE_SASL_PORT": str(SASL_PORT)})


def _read_env(path: Path) -> dict[str, str]:
    """`export NAME=value` lines, as kafka-secure.sh writes them."""
    return dict(re.fullmatch(r"export ([A-Z0-9_]+)=(.*)", line).groups()
                for line in path.read_text().splitlines() if line.strip())


class SecureBroker:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.modes = {mode: _read_env(run_dir / f"{mode}.env") for mode in MODES}
        secrets = dict(line.split("=", 1) for line in (run_dir / "secrets.env").read_text().splitlines() if line)
        self.secrets = list(secrets.values())
        """Every password of this broker: SASL, key stores, client key."""

    def server_log(self) -> str:
        return (self.run_dir / "logs" / "server.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def secure_broker() -> Iterator[SecureBroker]:
    """The TLS-only broker on 127.0.0.1:$KAFKA_SECURE_SASL_PORT (SASL_SSL) and the next port (SSL, mutual TLS):
    used when it already runs, otherwise started here and stopped at the end of the module."""
    tool("java", "openjdk-17-jre-headless")
    tool("keytool", "openjdk-17-jre-headless")
    tool("openssl", "openssl")
    started = False
    if _secure_sh("status").returncode != 0:
        result = _secure_sh("start", timeout=600)
        if result.returncode != 0:
            pytest.fail(f"could not start the secure local Kafka broker:\n{result.stderr[-4000:]}")
        started = True
    log_path = Path(_secure_sh("logs").stdout.strip())
    try:
        yield SecureBroker(log_path.parent.parent)
    finally:
        if started:
            _secure_sh("stop", timeout=120)


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("secure") / "events.jsonl"
    out = engagewatch(None, "simulate", "--seed", "11", "--accounts", "3", "--platforms", "instagram,x",
                      "--events", "3000", "--actors", "800", "--dirt", "0.02", "--out", str(path))
    assert out.returncode == 0, out.stderr
    return path


@pytest.fixture(scope="module")
def reference(small_file, tmp_path_factory) -> str:
    return run_reference(small_file, tmp_path_factory.mktemp("run"), "--clock", "event")[0]


def secure_env(broker: SecureBroker, mode: str, tmp_path: Path, **more: str) -> dict[str, str]:
    """Environment for engagewatch commands on `mode`, fresh topics and group, debug logs."""
    run = uuid.uuid4().hex[:10]
    return os.environ | broker.modes[mode] | {
        "ENGAGEWATCH_KAFKA__INTERACTIONS_TOPIC": f"sec-{run}-interactions",
        "ENGAGEWATCH_KAFKA__ALERTS_TOPIC": f"sec-{run}-alerts",
        "ENGAGEWATCH_KAFKA__DEAD_LETTER_TOPIC": f"sec-{run}-dead-letters",
        "ENGAGEWATCH_KAFKA__APP_ID": f"sec-{run}",
        "ENGAGEWATCH_KAFKA__PARTITIONS": "2",
        "ENGAGEWATCH_KAFKA__DATA_DIR": str(tmp_path / "worker"),
        "ENGAGEWATCH_KAFKA__CONNECT_TIMEOUT": "30s",
        "ENGAGEWATCH_LOG_LEVEL": "debug",
    } | more


def assert_no_secret(secrets: list[str], *outputs: str) -> None:
    for text in outputs:
        for secret in secrets:
            assert secret not in text, "a password appears in the output"


@pytest.mark.parametrize("mode", MODES)
def test_topics_replay_worker_give_the_series_of_run(secure_broker, small_file, reference, tmp_path, mode):
    """Every command works through the secure listener alone, the worker drains the replayed file to exactly
    `run`'s series, and debug-level output names no password."""
    env = secure_env(secure_broker, mode, tmp_path)
    if mode == "mtls":
        assert env["ENGAGEWATCH_KAFKA__BOOTSTRAP_SERVERS"] == f"127.0.0.1:{SASL_PORT + 1}"
        assert env["ENGAGEWATCH_KAFKA__SECURITY_PROTOCOL"] == "SSL"
    else:
        assert env["ENGAGEWATCH_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["ENGAGEWATCH_KAFKA__SASL_MECHANISM"] == mode.upper()
    created = engagewatch(env, "topics", "create", timeout=120)
    assert created.returncode == 0, created.stderr
    assert created.stdout.count("created ") == 5, created.stdout
    replayed = engagewatch(env, "replay", str(small_file), timeout=120)
    assert replayed.returncode == 0 and " 0 failed" in replayed.stderr, replayed.stderr
    worker = Worker(env)
    try:
        text = worker.drained(records_in(small_file), timeout=120)
    finally:
        worker.stop()
    assert worker.proc.returncode == 0, worker.tail()
    assert_same_series(text, reference)
    log = worker.log.read_text(errors="replace")
    assert "worker starting" in log and "DEBUG" in log.upper(), "the worker should have logged at debug level"
    assert_no_secret(secure_broker.secrets, created.stdout, created.stderr, replayed.stdout, replayed.stderr, log,
                     text)


WRONG = "wrong-" + uuid.uuid4().hex


@pytest.mark.parametrize("command", ["topics", "replay", "worker"])
def test_wrong_password_fails_clearly_and_fast(secure_broker, small_file, tmp_path, command):
    """A refused SCRAM password: exit status 1 within the connect timeout, a message that says the credentials
    were refused; neither the wrong nor the right password is printed."""
    # The right password gets through first: the broker is serving SCRAM, so a refusal below is about the password.
    right = engagewatch(secure_env(secure_broker, "scram-sha-512", tmp_path), "topics", "create", timeout=90)
    assert right.returncode == 0, right.stderr
    # 15 s: on a loaded machine the TLS handshake and the SCRAM exchange can take seconds; with less, the
    # attempt may time out before the broker has refused the credentials, and the message cannot name the cause.
    env = secure_env(secure_broker, "scram-sha-512", tmp_path, ENGAGEWATCH_KAFKA__SASL_PASSWORD=WRONG,
                     ENGAGEWATCH_KAFKA__CONNECT_TIMEOUT="15s")
    args = {"topics": ["topics", "create"], "replay": ["replay", str(small_file)],
            "worker": ["worker", "--clock", "event", "--metrics-port", "0"]}[command]
    started = time.monotonic()
    out = engagewatch(env, *args, timeout=90)
    assert out.returncode == 1, out.stderr
    assert time.monotonic() - started < 45
    assert "cannot connect to Kafka at 127.0.0.1:" in out.stderr
    assert "SCRAM-SHA-512 as engagewatch: the broker refused the SASL credentials" in out.stderr
    assert_no_secret([WRONG, *secure_broker.secrets], out.stdout, out.stderr)


def test_mutual_tls_listener_refuses_a_client_without_certificate(secure_broker, tmp_path):
    """The SSL listener really requires a client certificate: without one, a clear refusal."""
    env = secure_env(secure_broker, "mtls", tmp_path, ENGAGEWATCH_KAFKA__CONNECT_TIMEOUT="5s")
    for name in ("SSL_CERTFILE", "SSL_KEYFILE", "SSL_KEYFILE_PASSWORD"):
        del env[f"ENGAGEWATCH_KAFKA__{name}"]
    out = engagewatch(env, "topics", "create", timeout=90)
    assert out.returncode == 1
    assert "the broker refused the client certificate" in out.stderr, out.stderr


def test_broker_certificate_must_be_trusted(secure_broker, tmp_path):
    """Without the local CA the broker is not trusted (the system CAs do not know it): no silent fallback."""
    env = secure_env(secure_broker, "scram-sha-256", tmp_path, ENGAGEWATCH_KAFKA__CONNECT_TIMEOUT="5s")
    del env["ENGAGEWATCH_KAFKA__SSL_CAFILE"]
    out = engagewatch(env, "topics", "create", timeout=90)
    assert out.returncode == 1
    assert "the broker's certificate is not trusted" in out.stderr, out.stderr
    assert_no_secret(secure_broker.secrets, out.stdout, out.stderr)


def test_broker_log_holds_no_password(secure_broker):
    """Kafka prints its configuration at start; password settings must show as [hidden]."""
    assert_no_secret(secure_broker.secrets, secure_broker.server_log())
