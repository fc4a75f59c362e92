"""Output paths are checked when the arguments are parsed, before any input is read."""

from __future__ import annotations

import argparse
import os

import pytest

from streams import cli
from streams.arguments import output_file, port_number


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
