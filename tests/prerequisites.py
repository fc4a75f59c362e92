"""Outside programs some tests need (Java and Maven for Kafka, Debian's Prometheus tools, openssl).

Without one, its tests skip, saying what to install, on a developer's machine. `bash .ci/run` installs them all
and sets ENGAGEWATCH_TEST_REQUIRE_ALL=1, under which a missing program fails its tests instead: CI never passes
by skipping.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def missing(what: str) -> NoReturn:
    if os.environ.get("ENGAGEWATCH_TEST_REQUIRE_ALL") == "1":
        pytest.fail(f"{what} (ENGAGEWATCH_TEST_REQUIRE_ALL=1: nothing may be skipped)")
    pytest.skip(what)


def tool(name: str, package: str) -> str:
    """The path of program `name`, from Debian package `package`."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed (Debian package {package})")
    return path
