"""Stopping on request. SIGTERM, the signal that `docker stop`, Kubernetes and service managers send, means what
Ctrl-C means: stop, and write out what would otherwise be lost.

Without a handler of its own a process dies from SIGTERM with its buffers unwritten, and as PID 1 in a container
it is not stopped by it at all: it is killed once the grace period is over. Faust installs its own handlers in
`engagewatch worker`; every other command gets these.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt, as Ctrl-C does."""
    with _handling((signal.SIGTERM,), _interrupt):
        yield


class StopRequest:
    """Whether SIGINT or SIGTERM asked a loop to stop, and which."""

    __slots__ = ("signal_name",)

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def __bool__(self) -> bool:
        return self.signal_name is not None


@contextmanager
def stop_between_batches() -> Iterator[StopRequest]:
    """Within the block, Ctrl-C or SIGTERM only sets the request the loop checks after each batch.

    A batch is then either applied and its dead letters written, or not read at all: an interrupt inside
    `Engine.feed` would leave records counted by the streams but not by the outcome counters, and dead letters
    unwritten. A second signal interrupts at once.
    """
    request = StopRequest()

    def handler(signum: int, _frame: object) -> None:
        if request:
            raise KeyboardInterrupt
        request.signal_name = signal.Signals(signum).name

    with _handling((signal.SIGINT, signal.SIGTERM), handler):
        yield request


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def _handling(signals: tuple[signal.Signals, ...], handler) -> Iterator[None]:
    # Handlers can only be set from the main thread; a command called from another thread (a test) keeps the
    # process's own. A signal the parent ignored stays ignored (SIGINT, for a job started in the background by a
    # script).
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in signals if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
