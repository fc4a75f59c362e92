"""Command-line argument types the commands share."""

from __future__ import annotations

import argparse
import os
import stat
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from processors.config import parse_duration

T = TypeVar("T")


def output_file(value: str) -> str:
    """A file a command will write, checked when the arguments are parsed: a path that cannot be written must
    not surface as a traceback after the whole input has been processed. `-` (standard output) passes."""
    if value == "-":
        return value
    path = Path(value)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is a directory")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{value} cannot be created: there is no directory {path.parent}")
    try:
        if not path.exists():
            path.open("xb").close()  # what permissions, a read-only or a special file system allow
            path.unlink()
        elif path.is_file():
            path.open("ab").close()  # opened for writing, left as it is
        elif not os.access(path, os.W_OK):  # a device or a pipe (/dev/stderr): opening it could block
            raise PermissionError(13, "Permission denied")
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot write {value}: {e.strerror}") from None
    return value


def parsed(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type that shows the parser's own message instead of `invalid parse value`."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return convert


# `90s`, `5m`, `1h`, `7d`, `2w` or a bare number of seconds, in milliseconds.
duration_ms = parsed(partial(parse_duration, setting=""))


def count(text: str) -> int:
    """A whole number, 0 or more."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not at least 1")
    return value


def positive_number(text: str) -> float:
    value = float(text)
    if not value > 0:  # NaN too
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def share(text: str) -> float:
    """A fraction, 0 to 1."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def port_number(value: str) -> int:
    """A TCP port number, 0 to 65535."""
    try:
        number = int(value)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0 to 65535)")
    return number


def same_file(files: dict[str, str | None]) -> str | None:
    """Which two of these options name the same file, as a message; None when none do.

    Checked before anything is opened: an output opened for writing over the input (or over another output)
    would destroy it without a word. Options not given, `-`, and devices and pipes (two outputs to /dev/stderr
    mean to share it) are left out.
    """
    seen: dict[object, str] = {}
    for option, value in files.items():
        if value is None or value == "-":
            continue
        try:
            st = os.stat(value)
        except OSError:
            identity: object = os.path.realpath(value)  # not there yet: the same path is the same file
        else:
            if not stat.S_ISREG(st.st_mode):
                continue
            identity = (st.st_dev, st.st_ino)  # hard and symbolic links included
        if identity in seen:
            return f"{seen[identity]} and {option} name the same file ({value})"
        seen[identity] = option
    return None
