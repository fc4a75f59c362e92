"""Paths and ports a command is given are checked before any input is read or any broker reached."""

from __future__ import annotations

import argparse
import os

import pytest

from streams import cli
from streams.arguments import output_file, port_number, same_file


class TestOutputFile:
    def test_a_new_file_in_a_writable_directory_passes_and_is_not_left_behind(self, tmp_path):
        target = tmp_path / "out.prom"
        assert output_file(str(target)) == str(target)
        assert not target.exists()

    def test_an_existing_file_passes_unchanged(self, tmp_path):
        target = tmp_path / "out.prom"
        target.write_bytes(b"kept")
        assert output_file(str(target)) == str(target)
        assert target.read_bytes() == b"kept"

    @pytest.mark.parametrize("value", ["-", os.devnull])
    def test_standard_output_and_devices_pass(self, value):
        assert output_file(value) == value

    def test_a_directory_is_refused(self, tmp_path):
        with pytest.raises(argparse.ArgumentTypeError, match="is a directory"):
            output_file(str(tmp_path))

    def test_a_missing_directory_is_named(self, tmp_path):
        with pytest.raises(argparse.ArgumentTypeError, match=f"there is no directory {tmp_path / 'missing'}"):
            output_file(str(tmp_path / "missing" / "out.prom"))

    def test_what_the_file_system_refuses_is_refused(self):
        # procfs holds no new files, whoever asks (root included).
        with pytest.raises(argparse.ArgumentTypeError, match="cannot write /proc/engagewatch-test"):
            output_file("/proc/engagewatch-test")


class TestPortNumber:
    @pytest.mark.parametrize("value, number", [("0", 0), ("9464", 9464), ("65535", 65535)])
    def test_ports(self, value, number):
        assert port_number(value) == number

    @pytest.mark.parametrize("value", ["-1", "65536", "99999", "http", ""])
    def test_not_ports(self, value):
        with pytest.raises(argparse.ArgumentTypeError, match="is not a port number"):
            port_number(value)


@pytest.mark.parametrize("command", [["run", "--source", "-"], ["demo"], ["worker"]])
def test_metrics_port_out_of_range_fails_fast(capsys, command):
    with pytest.raises(SystemExit) as exit_:
        cli.main([*command, "--metrics-port", "99999"])
    assert exit_.value.code == 2
    assert "argument --metrics-port: 99999 is not a port number" in capsys.readouterr().err


@pytest.mark.parametrize("argv, option", [
    (["run", "--source", "in.jsonl", "--metrics-out", "{bad}"], "--metrics-out"),
    (["run", "--source", "in.jsonl", "--dead-letter", "{bad}"], "--dead-letter"),
    (["run", "--source", "in.jsonl", "--alerts-out", "{bad}"], "--alerts-out"),
    (["demo", "--alerts-out", "{bad}"], "--alerts-out"),
    (["simulate", "--events", "1", "--out", "{bad}"], "--out"),
    (["simulate", "--events", "1", "--labels", "{bad}"], "--labels"),
    (["backtest", "--json", "{bad}"], "--json"),
])
def test_every_output_option_fails_fast_naming_itself(tmp_path, capsys, argv, option):
    bad = str(tmp_path / "missing" / "out")
    with pytest.raises(SystemExit) as exit_:
        cli.main([a.replace("{bad}", bad) for a in argv])
    assert exit_.value.code == 2
    assert f"argument {option}: {bad} cannot be created: there is no directory" in capsys.readouterr().err


class TestSameFile:
    def test_distinct_files_pass(self, tmp_path):
        (tmp_path / "in.jsonl").write_bytes(b"")
        assert same_file({"--source": str(tmp_path / "in.jsonl"), "--metrics-out": str(tmp_path / "out.prom"),
                          "--dead-letter": None}) is None

    def test_the_same_existing_file_by_another_path(self, tmp_path):
        (tmp_path / "in.jsonl").write_bytes(b"")
        (tmp_path / "link.jsonl").symlink_to(tmp_path / "in.jsonl")
        assert same_file({"--source": str(tmp_path / "in.jsonl"), "--dead-letter": str(tmp_path / "link.jsonl")}) \
            == f"--source and --dead-letter name the same file ({tmp_path / 'link.jsonl'})"

    def test_the_same_new_file_twice(self, tmp_path):
        assert same_file({"--out": str(tmp_path / "x"), "--labels": f"{tmp_path}/./x"}) is not None

    @pytest.mark.parametrize("shared", ["-", os.devnull])
    def test_standard_streams_and_devices_may_be_shared(self, shared):
        assert same_file({"--dead-letter": shared, "--alerts-out": shared}) is None


@pytest.mark.parametrize("option", ["--metrics-out", "--dead-letter", "--alerts-out"])
def test_run_refuses_to_write_over_its_source(tmp_path, capsys, option):
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"id":"a"}\n' * 3)
    assert cli.main(["run", "--source", str(source), option, str(source)]) == 2
    assert f"--source and {option} name the same file" in capsys.readouterr().err
    assert source.read_bytes() == b'{"id":"a"}\n' * 3


def test_worker_data_dir_that_cannot_be_written_fails_before_kafka_is_reached(tmp_path, monkeypatch, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_bytes(b"")
    monkeypatch.setenv("ENGAGEWATCH_KAFKA__DATA_DIR", str(a_file / "worker"))
    monkeypatch.setenv("ENGAGEWATCH_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")  # nothing there
    monkeypatch.setenv("ENGAGEWATCH_KAFKA__CONNECT_TIMEOUT", "60s")  # tried first, it would fail on that, in a minute
    assert cli.main(["worker", "--metrics-port", "0"]) == 2
    assert f"bad setting ENGAGEWATCH_KAFKA__DATA_DIR: cannot write {a_file / 'worker'}: Not a directory" in \
        capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["demo", "--accounts", "0"], "argument --accounts: 0 is not at least 1"),
    (["demo", "--rate", "0"], "argument --rate: 0 is not positive"),
    (["demo", "--speed", "-5"], "argument --speed: -5 is not positive"),
    (["demo", "--dirt", "2"], "argument --dirt: 2 is not between 0 and 1"),
    (["demo", "--warmup", "soon"], "argument --warmup: 'soon' is not a duration like 90s, 5m, 1h or 7d"),
    (["demo", "--for", "a while"], "argument --for: 'a while' is not a duration"),
    (["demo", "--decay", "bogus"], "argument --decay: 'bogus' is not like"),
    (["simulate", "--duration", "soon"], "argument --duration: 'soon' is not a duration"),
    (["backtest", "--days", "0"], "argument --days: 0 is not at least 1"),
    (["backtest", "--tick", "0"], "argument --tick: 0 is not at least 1"),
    (["backtest", "--jobs", "0"], "argument --jobs: 0 is not at least 1"),
    (["backtest", "--max-rate", "-1"], "argument --max-rate: -1 is not positive"),
])
def test_bad_numbers_and_durations_fail_at_parse_naming_the_option(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_backtest_refuses_a_rate_range_upside_down(capsys):
    assert cli.main(["backtest", "--min-rate", "50", "--max-rate", "10"]) == 2
    assert "--min-rate 50 is above --max-rate 10" in capsys.readouterr().err
