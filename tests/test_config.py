"""Configuration: `EngineConfig` (the engine's knobs), `streams.settings` (flags over `ENGAGEWATCH_*` over defaults),
and how a bad value is reported: by naming the setting, with exit status 2 from the command line.
"""

from __future__ import annotations

import os

import pytest

from processors.config import (
    ConfigError,
    EngineConfig,
    format_duration,
    parse_duration,
    windows_from_text,
)
from streams import cli
from streams.settings import SettingsError, load_settings

S, M, H, D = 1_000, 60_000, 3_600_000, 86_400_000


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No `ENGAGEWATCH_*` variable from the surrounding environment leaks into a test."""
    for name in list(os.environ):
        if name.upper().startswith("ENGAGEWATCH_"):
            monkeypatch.delenv(name)


class TestEngineConfig:
    """One frozen value with the contract's defaults, refusing values the engine cannot run with."""

    def test_defaults_are_the_contract_defaults(self):
        """Bucket 60 s, windows 1h/24h/7d, grace 5 min, horizon 1 h, threshold 10 000, cohort 7d, budgets."""
        c = EngineConfig()
        assert (c.bucket_ms, c.windows, c.grace_ms, c.dedup_horizon_ms) == (
            M, (("1h", H), ("24h", D), ("7d", 7 * D)), 5 * M, H)
        assert (c.influencer_threshold, c.cohort_ms, c.unknown_actor) == (10_000, 7 * D, "follower")
        assert (c.max_streams, c.max_campaigns_per_account) == (10_000, 100)
        assert c.window_labels == ("1h", "24h", "7d")
        assert c.window_buckets == (60, 1440, 10080)

    @pytest.mark.parametrize(
        ("changes", "setting"),
        [
            ({"bucket_ms": 0}, "bucket"),
            ({"bucket_ms": -M}, "bucket"),
            ({"bucket_ms": 1_500}, "bucket"),
            ({"bucket_ms": True}, "bucket"),
            ({"windows": ()}, "windows"),
            ({"windows": (("1h", H), ("90s", 90 * S))}, "windows"),
            ({"windows": (("1h", H), ("1h", H))}, "windows"),
            ({"windows": (("0s", 0),)}, "windows"),
            ({"grace_ms": -1}, "grace"),
            ({"dedup_horizon_ms": 5 * M - 1}, "dedup_horizon"),
            ({"grace_ms": 2 * H}, "dedup_horizon"),
            ({"influencer_threshold": -1}, "influencer_threshold"),
            ({"cohort_ms": 0}, "cohort_window"),
            ({"cohort_ms": 90 * S}, "cohort_window"),
            ({"unknown_actor": "maybe"}, "unknown_actor"),
            ({"max_streams": 0}, "max_streams"),
            ({"max_campaigns_per_account": 0}, "max_campaigns_per_account"),
            ({"max_future_ms": -1}, "max_future"),
        ],
    )
    def test_bad_value_names_the_setting(self, changes, setting):
        """A value the engine cannot run with raises ConfigError whose `.setting` and message name the setting."""
        with pytest.raises(ConfigError) as caught:
            EngineConfig(**changes)
        assert caught.value.setting == setting
        assert str(caught.value).startswith(f"{setting}: ")

    @pytest.mark.parametrize(
        "changes",
        [
            {"grace_ms": 0, "dedup_horizon_ms": 0},
            {"grace_ms": H, "dedup_horizon_ms": H},
            {"bucket_ms": S, "windows": (("90s", 90 * S),), "cohort_ms": 90 * S},
            {"unknown_actor": "not_follower"},
            {"influencer_threshold": 0, "max_future_ms": 0},
        ],
    )
    def test_edge_values_are_accepted(self, changes):
        """Values on the edge of what is allowed are accepted."""
        EngineConfig(**changes)

    def test_windows_are_sorted(self):
        """Windows given out of order are kept in ascending length, labels with them."""
        c = EngineConfig(windows=(("7d", 7 * D), ("1h", H)))
        assert c.window_labels == ("1h", "7d")

    def test_frozen(self):
        """A config cannot be changed after it is built."""
        with pytest.raises(AttributeError):
            EngineConfig().grace_ms = 0

    def test_retention_is_the_longest_look_back(self):
        """State is kept for the longest window or the cohort, whichever is longer."""
        assert EngineConfig().retention_buckets == 10080
        assert EngineConfig(cohort_ms=30 * D).retention_buckets == 30 * 1440


class TestDurations:
    """Durations are written `250ms`, `90s`, `5m`, `1h`, `7d`, `2w` or as bare seconds."""

    @pytest.mark.parametrize(
        ("text", "ms"),
        [("250ms", 250), ("90s", 90 * S), ("5m", 5 * M), ("1h", H), ("7d", 7 * D), ("2w", 14 * D), ("60", M),
         (" 1h ", H), ("0s", 0)],
    )
    def test_parse(self, text, ms):
        """A duration converts to milliseconds."""
        assert parse_duration(text, "grace") == ms

    @pytest.mark.parametrize("text", ["abc", "", "1.5h", "-5m", "5 m", "5M", "1y", "h", "\u0665m"])
    def test_parse_rejects(self, text):
        """Anything else raises ConfigError naming the setting it was given for."""
        with pytest.raises(ConfigError) as caught:
            parse_duration(text, "grace")
        assert caught.value.setting == "grace"

    @pytest.mark.parametrize(("ms", "text"), [(H, "1h"), (90 * S, "90s"), (7 * D, "1w"), (250, "250ms"), (D, "1d")])
    def test_format(self, ms, text):
        """The shortest exact label of a duration."""
        assert format_duration(ms) == text

    def test_windows_from_text_keeps_labels(self):
        """`1h, 24h,7d` gives windows labelled as written."""
        assert windows_from_text("1h, 24h,7d") == (("1h", H), ("24h", D), ("7d", 7 * D))

    @pytest.mark.parametrize("text", ["", " , ", "1h,abc"])
    def test_windows_from_text_rejects(self, text):
        """No window, or a window that is not a duration, names the `windows` setting."""
        with pytest.raises(ConfigError) as caught:
            windows_from_text(text)
        assert caught.value.setting == "windows"


class TestSettings:
    """Flags override `ENGAGEWATCH_*` variables, which override the defaults; a bad value names its variable."""

    def test_defaults(self):
        """Without variables or flags the engine gets the contract's defaults."""
        assert load_settings().engine_config() == EngineConfig()

    def test_from_the_environment(self, monkeypatch):
        """Each engine variable reaches the engine configuration."""
        for name, value in {"BUCKET": "30s", "WINDOWS": "1h,2h", "GRACE": "10m", "DEDUP_HORIZON": "3h",
                            "INFLUENCER_THRESHOLD": "500", "COHORT_WINDOW": "1d", "UNKNOWN_ACTOR": "not_follower",
                            "MAX_STREAMS": "7", "MAX_CAMPAIGNS_PER_ACCOUNT": "3", "MAX_FUTURE": "1m"}.items():
            monkeypatch.setenv(f"ENGAGEWATCH_{name}", value)
        assert load_settings().engine_config() == EngineConfig(
            bucket_ms=30 * S, windows=(("1h", H), ("2h", 2 * H)), grace_ms=10 * M, dedup_horizon_ms=3 * H,
            influencer_threshold=500, cohort_ms=D, unknown_actor="not_follower", max_streams=7,
            max_campaigns_per_account=3, max_future_ms=M)

    def test_flags_override_the_environment(self, monkeypatch):
        """A value given as a flag wins over the variable; None (flag absent) leaves the variable."""
        monkeypatch.setenv("ENGAGEWATCH_GRACE", "10m")
        monkeypatch.setenv("ENGAGEWATCH_DEDUP_HORIZON", "2h")
        config = load_settings(grace="1m", dedup_horizon=None).engine_config()
        assert (config.grace_ms, config.dedup_horizon_ms) == (M, 2 * H)

    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("ENGAGEWATCH_WINDOWS", "1h,90s"),
            ("ENGAGEWATCH_WINDOWS", ""),
            ("ENGAGEWATCH_GRACE", "abc"),
            ("ENGAGEWATCH_DEDUP_HORIZON", "1m"),
            ("ENGAGEWATCH_UNKNOWN_ACTOR", "maybe"),
            ("ENGAGEWATCH_BUCKET", "1500ms"),
            ("ENGAGEWATCH_COHORT_WINDOW", "90s"),
            ("ENGAGEWATCH_INFLUENCER_THRESHOLD", "-1"),
            ("ENGAGEWATCH_MAX_STREAMS", "0"),
            ("ENGAGEWATCH_MAX_CAMPAIGNS_PER_ACCOUNT", "many"),
            ("ENGAGEWATCH_MAX_FUTURE", "soon"),
            ("ENGAGEWATCH_METRICS_PORT", "70000"),
            ("ENGAGEWATCH_LOG_LEVEL", "loud"),
            ("ENGAGEWATCH_DETECT_TICK", "0s"),
            ("ENGAGEWATCH_DETECT_TICK", "soon"),
            ("ENGAGEWATCH_KAFKA__PARTITIONS", "0"),
            ("ENGAGEWATCH_ALERTS__ALERTMANAGER_URL", "alertmanager:9093"),
            ("ENGAGEWATCH_ALERTS__WEBHOOK_URL", "ftp://hooks.example"),
            ("ENGAGEWATCH_ALERTS__WEBHOOK_URL", "https://"),
            ("ENGAGEWATCH_KAFKA__INTERACTIONS_TOPIC", "events/raw"),
            ("ENGAGEWATCH_KAFKA__DEAD_LETTER_TOPIC", ""),
            ("ENGAGEWATCH_KAFKA__CHECKPOINT_INTERVAL", "often"),
            ("ENGAGEWATCH_KAFKA__BATCH_WITHIN", "soon"),
            ("ENGAGEWATCH_KAFKA__CONNECT_TIMEOUT", "0"),
            ("ENGAGEWATCH_KAFKA__RETENTION", "forever"),
            ("ENGAGEWATCH_KAFKA__SESSION_TIMEOUT", "5s"),
            ("ENGAGEWATCH_KAFKA__SESSION_TIMEOUT", "6m"),
            ("ENGAGEWATCH_KAFKA__SESSION_TIMEOUT", "300001ms"),  # a millisecond past the 5 min bound
        ],
    )
    def test_bad_variable_is_named(self, monkeypatch, variable, value):
        """A bad value fails at load time with SettingsError (exit status 2) whose message names the variable."""
        monkeypatch.setenv(variable, value)
        with pytest.raises(SettingsError) as caught:
            load_settings()
        assert caught.value.code == 2
        assert f"bad setting {variable}:" in str(caught.value)

    def test_session_timeout_within_bounds_is_kept(self, monkeypatch):
        monkeypatch.setenv("ENGAGEWATCH_KAFKA__SESSION_TIMEOUT", "10s")
        assert load_settings().kafka.session_timeout == "10s"

    def test_detector_tick(self, monkeypatch):
        monkeypatch.setenv("ENGAGEWATCH_DETECT_TICK", "1h")
        assert load_settings().detect_tick_ms() == H

    def test_dedup_horizon_below_a_configured_grace(self, monkeypatch):
        """The horizon is checked against the grace in effect, not the default."""
        monkeypatch.setenv("ENGAGEWATCH_GRACE", "2h")
        with pytest.raises(SettingsError, match="ENGAGEWATCH_DEDUP_HORIZON"):
            load_settings()

    @pytest.mark.parametrize(("variable", "hint"), [
        ("ENGAGEWATCH_WINDOW", " (did you mean ENGAGEWATCH_WINDOWS?)"),
        ("ENGAGEWATCH_METRIC_PORT", " (did you mean ENGAGEWATCH_METRICS_PORT?)"),
        ("ENGAGEWATCH_KAFKAS__PARTITIONS", " (did you mean ENGAGEWATCH_KAFKA__…?)"),
        ("ENGAGEWATCH_ZZZ", ""),
    ])
    def test_a_variable_that_names_no_setting_is_refused(self, monkeypatch, variable, hint):
        """A misspelt variable would leave its setting at the default without a word."""
        monkeypatch.setenv(variable, "1h")
        with pytest.raises(SettingsError) as caught:
            load_settings()
        assert str(caught.value) == f"unknown setting {variable}{hint}"

    def test_the_test_suites_own_variables_are_not_settings(self, monkeypatch):
        monkeypatch.setenv("ENGAGEWATCH_TEST_REQUIRE_ALL", "1")
        assert load_settings().engine_config() == EngineConfig()

    def test_variable_names_are_case_insensitive(self, monkeypatch):
        """`engagewatch_grace` works like `ENGAGEWATCH_GRACE`."""
        monkeypatch.setenv("engagewatch_grace", "7m")
        assert load_settings().engine_config().grace_ms == 7 * M


class TestCommandLineSettings:
    """`engagewatch run` with a bad setting exits 2, naming the variable on stderr, before reading anything."""

    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("ENGAGEWATCH_WINDOWS", "1h,90s"),
            ("ENGAGEWATCH_GRACE", "abc"),
            ("ENGAGEWATCH_DEDUP_HORIZON", "1m"),
            ("ENGAGEWATCH_UNKNOWN_ACTOR", "maybe"),
        ],
    )
    def test_bad_variable(self, monkeypatch, capsys, tmp_path, variable, value):
        """A bad variable makes `run` return 2 with the variable's name on stderr."""
        source = tmp_path / "in.jsonl"
        source.write_bytes(b"")
        monkeypatch.setenv(variable, value)
        assert cli.main(["run", "--source", str(source), "--metrics-port", "0"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("engagewatch: bad setting ")
        assert variable in err

    @pytest.mark.parametrize(
        ("flags", "variable"),
        [
            (["--grace", "abc"], "ENGAGEWATCH_GRACE"),
            (["--windows", "1h,90s"], "ENGAGEWATCH_WINDOWS"),
            (["--unknown-actor", "maybe"], "ENGAGEWATCH_UNKNOWN_ACTOR"),
            (["--dedup-horizon", "1s"], "ENGAGEWATCH_DEDUP_HORIZON"),
            (["--max-streams", "0"], "ENGAGEWATCH_MAX_STREAMS"),
        ],
    )
    def test_bad_flag(self, capsys, tmp_path, flags, variable):
        """A bad flag is reported the same way, under the variable it overrides."""
        out = tmp_path / "out.prom"
        assert cli.main(["run", "--source", str(tmp_path / "absent.jsonl"), "--metrics-out", str(out), *flags]) == 2
        assert variable in capsys.readouterr().err
        assert not out.exists()
