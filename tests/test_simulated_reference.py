"""Ten simulated, dirty days of three accounts, fed in small batches, equal the brute-force reference.

The property tests' inputs are short and reach the engine in one batch. This one is long enough for every window
and the cohort to fill and slide, and its batches are small enough that the engine forgets idle actors mid-run, as
a long live run does.
"""

from __future__ import annotations

import subprocess
import sys

from reference import Config, comparable, diff, evaluate, parse_prom, split_lines

from processors.engine import Engine
from streams.runner import Batch, EmbeddedRunner

SIMULATION = ["--seed", "5", "--accounts", "3", "--platforms", "instagram,x", "--duration", "10d", "--rate", "4",
              "--actors", "1000", "--active-share", "0.5", "--dirt", "0.05"]


def test_ten_simulated_days_in_small_batches_equal_the_reference(tmp_path):
    data = subprocess.run([sys.executable, "-m", "streams.cli", "simulate", *SIMULATION], capture_output=True,
                          check=True).stdout
    lines = split_lines(data)
    runner = EmbeddedRunner(Engine(), "event")
    keeping = Engine()
    keeping._maybe_sweep = lambda: None  # never forgets: only here to show that the other one did
    for start in range(0, len(lines), 200):
        runner.feed(Batch(lines[start:start + 200], start + 1))
        keeping.feed(lines[start:start + 200])
    out = tmp_path / "out.prom"
    runner.write_exposition(str(out))

    assert diff(comparable(evaluate(lines, Config())), comparable(parse_prom(out.read_text()))) == []
    assert actors(runner.engine) < actors(keeping) - 100


def actors(engine: Engine) -> int:
    """(stream, actor) pairs in the engine's state."""
    return sum(len(s) for gate in engine.accounts.values() for s in gate.streams.values())
