"""Logs are JSON lines; a library that repeats itself (aiokafka during an outage) is thinned, engagewatch never."""

from __future__ import annotations

import logging

import orjson
import pytest

from streams import logs


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def emitted():
    """Records that pass a `Repeats` filter on a fake clock, formatted as the worker writes them."""
    clock = Clock()
    repeats = logs.Repeats(every_s=30.0, clock=clock)
    out: list[dict] = []

    def emit(name: str, level: int, msg: str, *args) -> None:
        record = logging.LogRecord(name, level, __file__, 1, msg, args, None)
        if repeats.filter(record):
            out.append(orjson.loads(logs.JsonFormatter().format(record)))

    return clock, emit, out


def test_a_burst_of_the_same_library_error_gives_one_line_then_one_per_period(emitted):
    clock, emit, out = emitted
    for i in range(100):  # 5 s of an outage, as aiokafka logs it
        clock.now = i * 0.05
        emit("aiokafka", logging.ERROR, "Unable connect to node with id %s: %s", 1, f"refused {i}")
    assert [e["event"] for e in out] == ["Unable connect to node with id 1: refused 0"]
    clock.now = 30.0
    emit("aiokafka", logging.ERROR, "Unable connect to node with id %s: %s", 1, "refused again")
    assert out[-1]["event"] == "Unable connect to node with id 1: refused again"
    assert out[-1]["suppressed"] == 99
    clock.now = 31.0  # the next period starts with the line just let through
    emit("aiokafka", logging.ERROR, "Unable connect to node with id %s: %s", 1, "refused once more")
    assert len(out) == 2


def test_a_flood_of_distinct_messages_is_remembered_within_a_bound():
    """Every kind seen is remembered, so the filter forgets them all past `MAX_KINDS` rather than grow for good."""
    repeats = logs.Repeats(every_s=30.0, clock=Clock())
    for i in range(3 * logs.Repeats.MAX_KINDS):
        repeats.filter(logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, f"error {i}", (), None))
    assert len(repeats._kinds) <= logs.Repeats.MAX_KINDS


def test_kinds_are_thinned_separately(emitted):
    clock, emit, out = emitted
    for _ in range(3):
        emit("aiokafka", logging.ERROR, "Unable to update metadata from %s", [1])
        emit("aiokafka", logging.WARNING, "Unable to update metadata from %s", [1])
        emit("aiokafka.consumer.fetcher", logging.ERROR, "Unable to update metadata from %s", [1])
        emit("aiokafka", logging.ERROR, "Failed fetch messages from %s", 1)
    assert len(out) == 4
    assert all("suppressed" not in e for e in out)


def test_a_message_that_is_not_text_is_thinned_too(emitted):
    _, emit, out = emitted
    for _ in range(3):
        emit("faust", logging.WARNING, {"unhashable": ["message"]})
    assert [e["event"] for e in out] == ["{'unhashable': ['message']}"]


@pytest.mark.parametrize(("name", "level"), [
    pytest.param("engagewatch.worker", logging.WARNING, id="engagewatch's own warnings"),
    pytest.param("engagewatch.worker", logging.ERROR, id="engagewatch's own errors"),
    pytest.param("faust.worker", logging.INFO, id="a library's information"),
])
def test_what_is_never_thinned(emitted, name, level):
    _, emit, out = emitted
    for _ in range(5):
        emit(name, level, "the same message")
    assert len(out) == 5


@pytest.fixture
def root_logger():
    """The root logger's handlers and level, given back after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_configured_logs_thin_library_repeats(capsys, root_logger):
    logs.configure("info", "json")
    library = logging.getLogger("aiokafka")
    for i in range(50):
        library.error("Unable connect to node with id %s: %s", 1, i)
    logs.get("engagewatch.worker").warning("live reader failed; retrying", error="x")
    lines = [orjson.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(e["logger"], e["event"]) for e in lines] == [
        ("aiokafka", "Unable connect to node with id 1: 0"),
        ("engagewatch.worker", "live reader failed; retrying"),
    ]
