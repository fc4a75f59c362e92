"""A one-line progress display on a terminal: records/s and outcomes. Silent when stderr is not a terminal."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, runner, every_s: float = 0.5, stream=None) -> None:
        self._runner = runner
        self._out = stream or sys.stderr
        self._enabled = self._out.isatty()
        self._every = every_s
        self._start = self._last = time.monotonic()
        self._last_records = 0

    def update(self) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        if now - self._last < self._every:
            return
        engine = self._runner.engine
        rate = (self._runner.records - self._last_records) / (now - self._last)
        self._last, self._last_records = now, self._runner.records
        self._out.write(
            f"\r{self._runner.records:>12,} records  {rate:>10,.0f}/s  applied {engine.applied:,}  "
            f"duplicate {engine.duplicates:,}  late {engine.late:,}  invalid {engine.invalid:,}   "
        )
        self._out.flush()

    def close(self) -> None:
        if self._enabled:
            self._last = 0.0
            self.update()
            self._out.write("\n")
            self._out.flush()
