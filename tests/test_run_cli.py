"""`engagewatch run`: a file processed to its end, or stdin until EOF, with dead letters and the final exposition.

File runs call `streams.cli.main` in-process; stdin runs start the real `engagewatch` command with a pipe.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import io
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import orjson
import pytest
from ports import free_port
from prometheus_client.parser import text_string_to_metric_families

from streams import cli
from streams.runner import file_batches

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
M = 60_000


def line(ident: str, ts: int | str, type_: str = "like", actor: str = "bob", **fields) -> bytes:
    rec = {"id": ident, "ts": ts, "platform": "x", "account": "acme", "type": type_, "actor": actor}
    rec.update(fields)
    return orjson.dumps(rec)


# Applied 5 (a1 a2 a4 a6 a8), duplicate 1 (a1 again), late 1 (a5), invalid 4 (bad JSON, not UTF-8, array, a9);
# the blank line holds no record.
DIRTY = [
    line("a1", T0),
    line("a1", T0),
    b"{this is not json",
    line("a2", T0 + M, "follow", "carol"),
    b"",
    line("a4", T0 + 20 * M, "comment", "carol", campaign="bf"),
    line("a5", T0, actor="dave"),
    b'{"id":"a7","actor":"\xff"}',
    b"[1, 2, 3]",
    line("a6", T0 + 21 * M, "view", "erin"),
    line("a9", "2026-02-30T00:00:00Z"),
    line("a8", T0 + 22 * M, actor="frank"),
]
DEAD = {3: "bad_json", 7: "late", 8: "not_utf8", 9: "not_object", 11: "invalid_ts"}  # 1-based line -> reason


@pytest.fixture(autouse=True)
def isolated(monkeypatch):
    """No ambient `ENGAGEWATCH_*` settings, and the root logger as it was before the command configured it."""
    for name in list(os.environ):
        if name.upper().startswith("ENGAGEWATCH_"):
            monkeypatch.delenv(name)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def series(text: str) -> dict[tuple, float]:
    """{(name, sorted label items): value} of a Prometheus text exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def get(found: dict, name: str, **labels) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def run(tmp_path, data: bytes, *flags: str) -> tuple[int, dict, list[dict]]:
    """Run `engagewatch run` on `data` as a file: exit code, exported series, dead-letter entries."""
    source, out, dead = tmp_path / "in.jsonl", tmp_path / "out.prom", tmp_path / "dead.jsonl"
    source.write_bytes(data)
    code = cli.main(["run", "--source", str(source), "--metrics-out", str(out), "--dead-letter", str(dead),
                     *flags])
    exported = series(out.read_text()) if out.exists() else {}
    letters = [orjson.loads(x) for x in dead.read_bytes().splitlines()] if dead.exists() else []
    return code, exported, letters


def engagewatch() -> list[str]:
    """The installed `engagewatch` command (or the module, should the script not be on PATH)."""
    found = shutil.which("engagewatch")
    return [found] if found else [sys.executable, "-m", "streams.cli"]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("ENGAGEWATCH_")}


@contextlib.contextmanager
def running(*args: str, **popen) -> Iterator[subprocess.Popen]:
    """`engagewatch ARGS` as a process, stderr piped; killed if the test leaves it running, its pipes closed."""
    with subprocess.Popen([*engagewatch(), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          env=clean_env(), **popen) as proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()


class TestFileRun:
    """A file is processed to its end with the event clock; invalid lines are dead-lettered, never fatal."""

    def test_dirty_file_runs_to_the_end(self, tmp_path):
        """A file full of dirt exits 0 with every outcome counted in the exposition."""
        code, found, _ = run(tmp_path, b"\n".join(DIRTY) + b"\n")
        assert code == 0
        assert {o: get(found, "engagewatch_events_total", outcome=o) for o in ("applied", "duplicate", "late",
                                                                              "invalid")} == {
            "applied": 5, "duplicate": 1, "late": 1, "invalid": 4}

    def test_metrics_out_holds_the_final_exposition(self, tmp_path):
        """`--metrics-out` gets the contract's series evaluated at the largest applied ts."""
        _, found, _ = run(tmp_path, b"\n".join(DIRTY))
        stream = {"account": "acme", "platform": "x"}
        assert get(found, "engagewatch_engaged_actors", window="1h", **stream) == 3  # bob, carol, frank
        assert get(found, "engagewatch_campaign_engaged_actors", window="24h", campaign="bf", **stream) == 1
        assert get(found, "engagewatch_engagements_total", type="like", **stream) == 2
        assert get(found, "engagewatch_engagements_total", type="view", **stream) == 1
        assert get(found, "engagewatch_audience_followers", **stream) == 1  # carol's follow
        assert get(found, "engagewatch_new_followers", **stream) == 1
        assert get(found, "engagewatch_new_followers_activated", **stream) == 1
        assert get(found, "engagewatch_evaluation_timestamp_seconds") == (T0 + 22 * M) / 1000
        assert get(found, "engagewatch_dead_letters_total", reason="late") == 1

    def test_dead_letter_file(self, tmp_path):
        """One JSON line per rejected record, with its reason, line number and the original record."""
        _, _, letters = run(tmp_path, b"\n".join(DIRTY) + b"\n")
        assert {entry["line"]: entry["reason"] for entry in letters} == DEAD
        for entry in letters:
            original = DIRTY[entry["line"] - 1]
            if "record" in entry:
                assert entry["record"].encode() == original
            else:
                assert base64.b64decode(entry["record_base64"]) == original
            assert entry["source"].endswith("in.jsonl")
        assert "record_base64" in next(e for e in letters if e["reason"] == "not_utf8")

    def test_duplicates_are_not_dead_letters(self, tmp_path):
        """A duplicate is counted but not written to the dead-letter file."""
        _, found, letters = run(tmp_path, line("a", T0) + b"\n" + line("a", T0))
        assert letters == []
        assert get(found, "engagewatch_events_total", outcome="duplicate") == 1

    def test_last_line_without_newline_and_crlf(self, tmp_path):
        """CRLF line ends are accepted and a last line without a newline is processed."""
        _, found, letters = run(tmp_path, line("a", T0) + b"\r\n" + line("b", T0, actor="amy"))
        assert letters == []
        assert get(found, "engagewatch_events_total", outcome="applied") == 2

    def test_metrics_out_to_a_pipe_writes_into_it(self, tmp_path):
        """A pipe (or /dev/stdout) given as `--metrics-out` is written to, not replaced by a file."""
        fifo = tmp_path / "exposition"
        os.mkfifo(fifo)
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
        reader.start()
        source = tmp_path / "in.jsonl"
        source.write_bytes(b"\n".join(DIRTY) + b"\n")
        assert cli.main(["run", "--source", str(source), "--metrics-out", str(fifo)]) == 0
        reader.join(timeout=30)
        assert stat.S_ISFIFO(fifo.stat().st_mode)
        assert get(series(got[0].decode()), "engagewatch_events_total", outcome="applied") == 5

    @pytest.mark.parametrize("option", ["--dead-letter", "--metrics-out"])
    def test_an_output_that_fills_up_stops_the_run_saying_where(self, tmp_path, capsys, option):
        """A full disk (here /dev/full) ends the run with exit status 1 and a message naming the output: the
        run cannot go on promising that nothing is lost."""
        source = tmp_path / "in.jsonl"
        source.write_bytes(b"\n".join(DIRTY) + b"\n")
        assert cli.main(["run", "--source", str(source), option, "/dev/full"]) == 1
        assert (f"cannot write {option} /dev/full: No space left on device; stopped after {len(DIRTY)} records"
                in capsys.readouterr().err)

    def test_an_exposition_that_cannot_be_put_in_place_leaves_no_temporary_file(self, tmp_path, capsys, monkeypatch):
        def refuse(src, dst):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "replace", refuse)
        source = tmp_path / "in.jsonl"
        source.write_bytes(b"\n".join(DIRTY) + b"\n")
        assert cli.main(["run", "--source", str(source), "--metrics-out", str(tmp_path / "out.prom")]) == 1
        assert "cannot write --metrics-out" in capsys.readouterr().err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]

    def test_empty_file(self, tmp_path):
        """An empty file exits 0 with zero outcomes."""
        code, found, letters = run(tmp_path, b"")
        assert (code, letters) == (0, [])
        assert get(found, "engagewatch_events_total", outcome="applied") == 0

    def test_large_file_across_read_chunks(self, tmp_path):
        """A file larger than one read chunk loses and splits no line."""
        data = b"\n".join(line(f"i{i}", T0 + i, actor=f"u{i % 500}", pad="p" * 100) for i in range(12_000))
        assert len(data) > 1 << 20
        code, found, letters = run(tmp_path, data + b"\n{broken")
        assert code == 0
        assert get(found, "engagewatch_events_total", outcome="applied") == 12_000
        assert [(e["line"], e["reason"]) for e in letters] == [(12_001, "bad_json")]

    def test_settings_flags_apply(self, tmp_path):
        """Engine flags change the run: with `--grace 0s` an older record is late."""
        data = line("a", T0 + M) + b"\n" + line("b", T0 + M - 1)
        _, found, _ = run(tmp_path, data, "--grace", "0s", "--dedup-horizon", "1h")
        assert get(found, "engagewatch_events_total", outcome="late") == 1

    def test_gzip_source_gives_the_series_of_the_plain_file(self, tmp_path):
        """A source named *.gz is decompressed on the fly: same series, same dead letters and line numbers."""
        plain = run(tmp_path, b"\n".join(DIRTY))
        packed = tmp_path / "in.jsonl.gz"
        packed.write_bytes(gzip.compress(b"\n".join(DIRTY)))
        out, dead = tmp_path / "gz.prom", tmp_path / "gz-dead.jsonl"
        assert cli.main(["run", "--source", str(packed), "--metrics-out", str(out), "--dead-letter", str(dead)]) == 0
        letters = [orjson.loads(x) for x in dead.read_bytes().splitlines()]
        assert series(out.read_text()) == plain[1]
        assert [(e["line"], e["reason"]) for e in letters] == [(e["line"], e["reason"]) for e in plain[2]]

    @pytest.mark.parametrize("damage", ["not gzip", "truncated"])
    def test_unreadable_gzip_source(self, tmp_path, capsys, damage):
        """A .gz source that is not gzip, or ends early, exits 2 naming it and writes no exposition."""
        data = gzip.compress(b"\n".join(line(f"i{i}", T0 + i) for i in range(5_000)))
        packed = tmp_path / "in.jsonl.gz"
        packed.write_bytes(b"\n".join(DIRTY) if damage == "not gzip" else data[: len(data) // 2])
        out = tmp_path / "out.prom"
        assert cli.main(["run", "--source", str(packed), "--metrics-out", str(out)]) == 2
        assert f"cannot read --source {packed}" in capsys.readouterr().err
        assert not out.exists()

    def test_missing_source(self, tmp_path, capsys):
        """A source that cannot be read exits 2 with a message naming it, and writes no exposition."""
        out = tmp_path / "out.prom"
        missing = tmp_path / "nope.jsonl"
        assert cli.main(["run", "--source", str(missing), "--metrics-out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "cannot read --source" in err and str(missing) in err
        assert not out.exists()


class TestFileBatches:
    """The file reader yields whole lines with their 1-based line numbers, however the reads fall."""

    @pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 20])
    def test_lines_and_numbers(self, chunk):
        """Every line comes out once, unsplit, numbered from 1."""
        data = b"one\ntwo\n\nfour\nfive"
        got = []
        for batch in file_batches(io.BytesIO(data), chunk_bytes=chunk):
            got += [(batch.first_line + i, x) for i, x in enumerate(batch.lines)]
        assert got == [(1, b"one"), (2, b"two"), (3, b""), (4, b"four"), (5, b"five")]


def now_lines(n: int) -> bytes:
    """`n` likes by distinct actors, stamped a minute ago (the wall clock evaluates stdin runs)."""
    ts = time.time_ns() // 1_000_000 - M
    return b"".join(line(f"s{i}", ts, actor=f"u{i}") + b"\n" for i in range(n))


class TestStdinRun:
    """`--source -` reads stdin until EOF, evaluating on the wall clock."""

    def test_pipe_until_eof(self, tmp_path):
        """Records piped in are processed, and at EOF the exposition is written and the command exits 0."""
        out = tmp_path / "out.prom"
        proc = subprocess.run(
            [*engagewatch(), "run", "--source", "-", "--metrics-port", "0", "--metrics-out", str(out)],
            input=now_lines(25) + b"not json\n", capture_output=True, env=clean_env(), timeout=60,
        )
        assert proc.returncode == 0, proc.stderr.decode()
        found = series(out.read_text())
        assert get(found, "engagewatch_events_total", outcome="applied") == 25
        assert get(found, "engagewatch_events_total", outcome="invalid") == 1
        assert get(found, "engagewatch_engaged_actors", account="acme", platform="x", window="1h") == 25

    def test_metrics_port_serves_while_running(self, tmp_path):
        """With `--metrics-port P`, /metrics answers while stdin is still open, then the command exits 0 at EOF."""
        port = free_port()
        with running("run", "--source", "-", "--metrics-port", str(port), stdin=subprocess.PIPE) as proc:
            proc.stdin.write(now_lines(7))
            proc.stdin.flush()
            found = self.poll(f"http://127.0.0.1:{port}/metrics", proc,
                              until=lambda f: get(f, "engagewatch_events_total", outcome="applied") == 7)
            assert get(found, "engagewatch_engaged_actors", account="acme", platform="x", window="24h") == 7
            assert proc.poll() is None  # still running: stdin is open
            proc.stdin.close()
            assert proc.wait(timeout=30) == 0, proc.stderr.read().decode()

    def test_dead_letters_reach_the_file_as_they_come(self, tmp_path):
        """While stdin is still open, the dead letters of what was read are already in the file."""
        dead = tmp_path / "dead.jsonl"
        with running("run", "--source", "-", "--metrics-port", "0", "--dead-letter", str(dead),
                     stdin=subprocess.PIPE) as proc:
            proc.stdin.write(now_lines(3) + b"not json\n[1]\n")
            proc.stdin.flush()
            deadline = time.monotonic() + 30
            while len(dead.read_bytes().splitlines() if dead.exists() else []) < 2:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "the dead letters were not written while stdin was open"
                time.sleep(0.05)
            assert [orjson.loads(x)["reason"] for x in dead.read_bytes().splitlines()] == ["bad_json", "not_object"]
            proc.stdin.close()
            assert proc.wait(timeout=30) == 0, proc.stderr.read().decode()

    @staticmethod
    def poll(url: str, proc: subprocess.Popen, until, timeout_s: float = 30.0) -> dict:
        """Scrape `url` until `until(series)` holds; fail if the command dies or time runs out."""
        deadline = time.monotonic() + timeout_s
        while True:
            assert proc.poll() is None, f"engagewatch exited early: {proc.stderr.read().decode()}"
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    found = series(response.read().decode())
                if until(found):
                    return found
            except (urllib.error.URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline, f"{url} did not answer as expected in {timeout_s} s"
            time.sleep(0.05)


def _ctrl_c_as_from_a_terminal() -> None:
    # A job started in the background by a script inherits SIGINT ignored; a user's Ctrl-C is not.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class TestStopping:
    """SIGTERM (how containers and service managers stop a process) and Ctrl-C end a run as EOF would."""

    def test_sigterm_on_stdin_writes_what_was_read(self, tmp_path):
        """Stopped while stdin is still open, the run writes the exposition and dead letters and exits 0."""
        port = free_port()
        out, dead = tmp_path / "out.prom", tmp_path / "dead.jsonl"
        with running("run", "--source", "-", "--metrics-port", str(port), "--metrics-out", str(out),
                     "--dead-letter", str(dead), stdin=subprocess.PIPE) as proc:
            proc.stdin.write(now_lines(7) + b"not json\n[1]\n")
            proc.stdin.flush()
            TestStdinRun.poll(f"http://127.0.0.1:{port}/metrics", proc,
                              until=lambda f: get(f, "engagewatch_events_total", outcome="invalid") == 2)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, proc.stderr.read().decode()
        found = series(out.read_text())
        assert get(found, "engagewatch_events_total", outcome="applied") == 7
        assert [orjson.loads(x)["reason"] for x in dead.read_bytes().splitlines()] == ["bad_json", "not_object"]

    @pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
    def test_stop_mid_file_keeps_counts_and_dead_letters_together(self, tmp_path, sig):
        """Stopped part-way through a file, the run stops between two batches: every record it read is counted
        under exactly one outcome, and every late or invalid one is in the dead-letter file."""
        n = 300_000
        source, out, dead = tmp_path / "in.jsonl", tmp_path / "out.prom", tmp_path / "dead.jsonl"
        with open(source, "wb") as f:
            for i in range(n):
                if i % 97 == 0:
                    f.write(b"{not json\n")
                else:
                    late = i % 89 == 0  # an hour behind a watermark that moves a second a record
                    f.write(line(f"e{i}", T0 + i * 1000 - 3_600_000 * late, actor=f"u{i % 5000}") + b"\n")
        with running("run", "--source", str(source), "--metrics-out", str(out), "--dead-letter", str(dead),
                     preexec_fn=_ctrl_c_as_from_a_terminal) as proc:
            # Once the first batch's dead letters are written, the run is most likely inside the next batch.
            # (Not a scrape: a scrape waits for the engine's lock, and so would signal between two batches.)
            deadline = time.monotonic() + 30
            while not (dead.exists() and dead.stat().st_size):
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "the run wrote no dead letter in 30 s"
                time.sleep(0.01)
            proc.send_signal(sig)
            assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()
        found = series(out.read_text())
        outcomes = {o: get(found, "engagewatch_events_total", outcome=o)
                    for o in ("applied", "duplicate", "late", "invalid")}
        assert 0 < sum(outcomes.values()) < n  # it did stop part-way
        assert outcomes["late"] > 0 and outcomes["invalid"] > 0
        # The streams hold exactly the records counted applied: no batch was cut short inside the engine.
        assert get(found, "engagewatch_engagements_total", account="acme", platform="x", type="like") == \
            outcomes["applied"]
        assert len(dead.read_bytes().splitlines()) == outcomes["late"] + outcomes["invalid"]
