"""Stop requests: SIGTERM means what Ctrl-C means, and a run stops between batches, never inside one."""

from __future__ import annotations

import signal

import pytest

from streams.stopping import sigterm_interrupts, stop_between_batches


@pytest.fixture(autouse=True)
def handlers_kept():
    """Ctrl-C as a terminal delivers it (a test run started in the background by a script inherits SIGINT
    ignored); afterwards the process's own handlers, after checking that the code under test restored them."""
    own = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    before = {s: signal.getsignal(s) for s in own}
    yield before
    after = {s: signal.getsignal(s) for s in own}
    for s, h in own.items():
        signal.signal(s, h)
    assert after == before


class TestStopBetweenBatches:
    @pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
    def test_a_signal_only_records_the_request(self, sig):
        with stop_between_batches() as stop:
            assert not stop
            signal.raise_signal(sig)
            assert stop and stop.signal_name == sig.name

    def test_a_second_signal_interrupts_at_once(self):
        with pytest.raises(KeyboardInterrupt), stop_between_batches():
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGINT)



class TestSigtermInterrupts:
    def test_sigterm_raises_keyboard_interrupt(self):
        with pytest.raises(KeyboardInterrupt), sigterm_interrupts():
            signal.raise_signal(signal.SIGTERM)

    def test_handler_restored_after(self, handlers_kept):
        with sigterm_interrupts():
            assert signal.getsignal(signal.SIGTERM) is not handlers_kept[signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is handlers_kept[signal.SIGTERM]


@pytest.mark.parametrize("stopping, sig", [
    (stop_between_batches, signal.SIGINT), (stop_between_batches, signal.SIGTERM), (sigterm_interrupts, signal.SIGTERM),
])
def test_a_signal_the_parent_ignored_stays_ignored(handlers_kept, stopping, sig):
    """As for a job started in the background by a script, which inherits SIGINT ignored."""
    signal.signal(sig, signal.SIG_IGN)
    try:
        with stopping() as stop:
            signal.raise_signal(sig)  # nothing happens
            assert signal.getsignal(sig) is signal.SIG_IGN
            assert not stop
    finally:
        signal.signal(sig, handlers_kept[sig])
