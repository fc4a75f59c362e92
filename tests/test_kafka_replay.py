"""`engagewatch replay` keys each record by its account, so that a stream's records share a partition, and says
how far it got when stopped."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import warnings

import pytest
from kafka_harness import ROOT, create_topics

from streams.kafka_replay import account_key

LIKE = b'{"id":"e1","ts":0,"platform":"x","account":"acme","type":"like","actor":"bob"'


@pytest.mark.parametrize(("record", "key"), [
    pytest.param(LIKE + b"}", b"acme", id="a valid record"),
    pytest.param(LIKE + b',"actor_followers":-3}', b"acme", id="an invalid record that names its account"),
    pytest.param(LIKE + b',"n":1e400}', b"acme", id="a number beyond a double (valid JSON)"),
    pytest.param(LIKE.replace(b"acme", "café".encode()) + b"}", "café".encode(), id="a non-ASCII account"),
    pytest.param(LIKE.replace(b'"acme"', b"7") + b"}", None, id="an account that is not a string"),
    pytest.param(LIKE.replace(b'"acme"', b'""') + b"}", None, id="an empty account"),
    pytest.param(LIKE, None, id="truncated JSON"),
    pytest.param(b'["acme"]', None, id="not an object"),
    pytest.param(b"", None, id="a blank line"),
])
def test_records_are_keyed_by_their_account(record, key):
    """The key is the account as UTF-8; a record without one is sent unkeyed (and dead-lettered by the worker)."""
    assert account_key(record) == key


def messages_in(env, topic: str, expected: int, timeout_s: float = 60) -> int:
    """How many messages `topic` holds, read until there are `expected` or time runs out."""
    with warnings.catch_warnings():  # kafka-python's own DeprecationWarnings, as in kafka_harness
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


@pytest.mark.kafka
@pytest.mark.parametrize("input_ends", [False, True], ids=["input still open", "input ending as the signal comes"])
def test_a_stopped_replay_says_how_far_it_got(kafka_env, input_ends):
    """Stopped (SIGTERM), replay delivers what it sent, reports how many records that was, and exits 130: whoever
    resumes knows where. Also when the input ends at the same moment, and the signal is only handled after the
    last record (the read returns the end of input rather than being interrupted)."""
    create_topics(kafka_env)
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "replay", "-"], env=kafka_env, cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(b"".join(LIKE.replace(b'"e1"', f'"e{i}"'.encode()) + b"}\n" for i in range(5)))
        proc.stdin.flush()
        assert messages_in(kafka_env, kafka_env["ENGAGEWATCH_KAFKA__INTERACTIONS_TOPIC"], 5) == 5
        proc.send_signal(signal.SIGTERM)
        if input_ends:
            proc.stdin.close()
        proc.wait(timeout=60)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stderr.close()
    assert proc.returncode == 130, err.decode()
    assert "interrupted: replayed 5 records" in err.decode()
    assert "5 delivered, 0 failed" in err.decode()
