"""`engagewatch replay` keys each record by its account, so that a stream's records share a partition, and says
how far it got when stopped."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from kafka_harness import ROOT, create_topics, messages_in

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
