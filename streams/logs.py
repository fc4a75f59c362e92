"""Structured logs: one JSON object per line on stderr (or a readable console form), stdlib loggers included.

Built on the stdlib `logging` module rather than structlog: it adds nothing we need here and would add a
tenth of a second to every start-up (it imports rich and pygments). Faust, aiokafka and kafka-python log
through the stdlib, so their records come out in the same shape. Secrets never reach the logs: settings hold
them as `SecretStr`, which renders as `**********`.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import orjson

_FIELDS = "engagewatch_fields"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "timestamp": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **getattr(record, _FIELDS, {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in getattr(record, _FIELDS, {}).items())
        text = f"{record.levelname.lower():<7} {record.name}: {record.getMessage()} {fields}".rstrip()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class Repeats(logging.Filter):
    """Lets through the first warning or error of each kind from a library, then at most one every `every_s`.

    While the cluster is unreachable aiokafka logs each failed connection, metadata update and fetch: about 120
    lines a second on a local broker. A kind is the logger, the level and the message before its arguments are
    filled in; the next one let through says how many were dropped since (`suppressed`). engagewatch's own
    records and records below warning always pass: they are already spaced, and each counts.
    """

    MAX_KINDS = 1000

    def __init__(self, every_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every_s, self.clock = every_s, clock
        self._kinds: dict[tuple[str, int, str], list] = {}  # kind -> [when last let through, dropped since]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or record.name.startswith("engagewatch"):
            return True
        kind = (record.name, record.levelno, str(record.msg))  # str: a message may be any object, even a dict
        now = self.clock()
        seen = self._kinds.get(kind)
        if seen is None:
            if len(self._kinds) >= self.MAX_KINDS:
                self._kinds.clear()
            self._kinds[kind] = [now, 0]
            return True
        if now - seen[0] < self.every_s:
            seen[1] += 1
            return False
        if seen[1]:
            setattr(record, _FIELDS, {"suppressed": seen[1]})  # only engagewatch's own records carry fields
        seen[0], seen[1] = now, 0
        return True


class Logger:
    """`log.info("event", key=value, ...)`: an event name and structured fields."""

    __slots__ = ("_logger",)

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def _log(self, level: int, event: str, fields: dict[str, Any], exc_info: bool = False) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, extra={_FIELDS: fields}, exc_info=exc_info, stacklevel=3)

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields, exc_info=True)


def configure(level: str = "info", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    handler.addFilter(Repeats())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def get(name: str) -> Logger:
    return Logger(name)
