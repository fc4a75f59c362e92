"""`engagewatch` command line: one sub-command per module in `streams.commands`.

Each command module has `HELP`, `add_arguments(parser)` and `main(args) -> int`; modules are imported lazily
so that `engagewatch run` does not pay for Faust's import.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys

from streams.settings import SettingsError
from streams.stopping import sigterm_interrupts

COMMANDS = {
    "run": "process a file or stdin with the embedded runner (no broker)",
    "demo": "simulate a live campaign, process it as it happens and show it",
    "simulate": "write realistic synthetic interaction events (wire format v1)",
    "topics": "create or describe the Kafka topics",
    "replay": "produce a file of events into the interactions topic",
    "worker": "run a Faust worker on the interactions topic",
    "backtest": "score the decay detectors on labelled simulated scenarios",
}


def _module(name: str):
    return importlib.import_module(f"streams.commands.{name}")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="engagewatch", description="Streaming engagement monitor.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = next((a for a in (argv or []) if not a.startswith("-")), None)
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        # Only the chosen command's module is imported; the others are listed by name.
        if wanted == name:
            _module(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    # Faust stops a worker on SIGTERM itself; every other command stops on it as on Ctrl-C.
    stopping = contextlib.nullcontext() if args.command == "worker" else sigterm_interrupts()
    try:
        with stopping:
            return int(_module(args.command).main(args) or 0)
    except SettingsError as e:
        print(f"engagewatch: {e.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
