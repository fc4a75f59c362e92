"""`engagewatch replay` keys each record by its account, so that a stream's records share a partition."""

from __future__ import annotations

import pytest

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
