"""`engagewatch demo`: the main job on the embedded default, as a newcomer starts it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from ports import free_port

DEMO = [sys.executable, "-m", "streams.cli", "demo", "--warmup", "2h", "--rate", "200", "--speed", "600"]


def scrape_when_ready(port: int, proc: subprocess.Popen, deadline_s: float = 60.0) -> str:
    """Poll /metrics until it lists a stream (the warm-up is applied), or fail if the demo exits first."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the demo exited early"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                text = resp.read().decode()
            if "engagewatch_active_followers{" in text:
                return text
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail("the demo never served stream metrics")


def _as_from_a_terminal() -> None:
    # A job started in the background by a shell without job control (`cmd &` in a script, as CI may run the
    # tests) inherits SIGINT ignored; a user's Ctrl-C reaches the demo with the default disposition.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(port: int, *extra: str, output=subprocess.DEVNULL) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGEWATCH_")}
    return subprocess.Popen([*DEMO, "--metrics-port", str(port), *extra], stdout=output, stderr=output, env=env,
                            preexec_fn=_as_from_a_terminal)


class TestDemo:
    def test_serves_every_stream_and_stops_after_its_time(self):
        """A short demo serves the contract's series for all nine simulated streams, then exits 0 by itself."""
        port = free_port()
        with start(port, "--for", "20s") as proc:
            try:
                text = scrape_when_ready(port, proc)
                assert text.count("engagewatch_audience_followers{") == 9
                assert 'engagewatch_decay_state{account="acme",platform="instagram",window="1h"}' in text
                assert proc.wait(timeout=90) == 0
            finally:
                proc.kill()

    def test_piped_output_is_structured_progress(self):
        """Without a terminal the demo draws no table: it logs JSON lines, including its progress."""
        port = free_port()
        with start(port, "--for", "6s", output=subprocess.PIPE) as proc:
            out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        assert b"\x1b[" not in out  # no terminal control sequences on a pipe
        events = [line for line in err.decode().splitlines() if line.startswith("{")]
        assert any('"event":"demo started"' in e for e in events)
        assert any('"event":"demo stopped"' in e for e in events)

    def test_ctrl_c_exits_cleanly(self):
        """Ctrl-C (SIGINT) stops the demo with exit status 0 and frees its port."""
        port = free_port()
        with start(port) as proc:
            try:
                scrape_when_ready(port, proc)
                proc.send_signal(signal.SIGINT)
                assert proc.wait(timeout=30) == 0
                with socket.socket() as s:
                    assert s.connect_ex(("127.0.0.1", port)) != 0
            finally:
                proc.kill()

    def test_sigterm_exits_cleanly(self):
        """SIGTERM (`docker stop`, Kubernetes, systemd) stops the demo as Ctrl-C does: exit status 0, port freed,
        and the closing log line written."""
        port = free_port()
        with start(port, output=subprocess.PIPE) as proc:
            try:
                scrape_when_ready(port, proc)
                proc.send_signal(signal.SIGTERM)
                _, err = proc.communicate(timeout=30)
                assert proc.returncode == 0, err.decode()
                assert b'"event":"demo stopped"' in err
                with socket.socket() as s:
                    assert s.connect_ex(("127.0.0.1", port)) != 0
            finally:
                proc.kill()
