"""The one settings object: flags override `ENGAGEWATCH_*` environment variables, which override defaults.

Nested sections use a double underscore: `ENGAGEWATCH_KAFKA__BOOTSTRAP_SERVERS=host:9092`.
A bad value fails at start-up with a message that names the variable.
"""

from __future__ import annotations

import difflib
import os
import urllib.parse
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from processors.config import ConfigError, EngineConfig, parse_duration, windows_from_text

ENV_PREFIX = "ENGAGEWATCH_"
TOPIC_NAME = r"^[A-Za-z0-9._-]{1,249}$"  # what Kafka accepts as a topic name


class SettingsError(SystemExit):
    """Raised for bad configuration; exits with status 2 and a message naming the setting."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


class KafkaSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: str = "127.0.0.1:9092"
    interactions_topic: str = Field("engagewatch-interactions", pattern=TOPIC_NAME)
    alerts_topic: str = Field("engagewatch-alerts", pattern=TOPIC_NAME)
    dead_letter_topic: str = Field("engagewatch-dead-letters", pattern=TOPIC_NAME)
    partitions: int = Field(8, ge=1)
    replication_factor: int = Field(1, ge=1)
    retention: str = "7d"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_keyfile_password: SecretStr | None = None
    ssl_check_hostname: bool = True
    # -- worker (streams.faust_app) --
    app_id: str = Field("engagewatch", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    """Faust app id = consumer group id, and the prefix of the checkpoint changelog topic."""
    store: str = Field("memory://", pattern=r"^(memory|rocksdb)://")
    """Local store of the checkpoint table: `memory://` (rebuilt from the changelog) or `rocksdb://` (rocksdict)."""
    data_dir: str = "var/worker"
    """Faust's data directory (RocksDB files live here)."""
    checkpoint_interval: str = "10s"
    """How often a partition's engine state and source offset are written to the checkpoint changelog."""
    batch_size: int = Field(2000, ge=1)
    """Records per batch: Faust's stream (`stream.take_events`) takes this many; the live reader up to 4x."""
    batch_within: str = "200ms"
    """Longest wait for a batch to fill."""
    connect_timeout: str = "15s"
    """How long clients try to reach the cluster before giving up with an error."""
    session_timeout: str | None = None
    """Consumer group session timeout (6s-5m): how soon a dead worker's partitions move. None: Faust's 60s."""

    @field_validator("retention", "connect_timeout")
    @classmethod
    def _positive_duration(cls, value: str) -> str:
        if parse_duration(value, "") <= 0:
            raise ValueError("must be positive")
        return value

    @field_validator("checkpoint_interval", "batch_within")  # 0s: a checkpoint (a batch) as often as possible
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value, "")
        return value

    @field_validator("session_timeout")
    @classmethod
    def _session_timeout(cls, value: str | None) -> str | None:
        if value is not None and not 6_000 <= parse_duration(value, "") <= 300_000:
            raise ValueError("must be between 6s and 5m")
        return value


class AlertSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    alertmanager_url: str | None = None
    webhook_url: str | None = None

    @field_validator("alertmanager_url", "webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        # Checked here, not at the first alert hours later. The value is not echoed: it may hold credentials.
        if value is not None:
            parts = urllib.parse.urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http:// or https:// URL with a host")
        return value


class Settings(BaseSettings):
    """Everything engagewatch reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", frozen=True, extra="ignore", case_sensitive=False
    )

    # -- engine (see processors.config.EngineConfig for the meaning of each) --
    bucket: str = "60s"
    windows: str = "1h,24h,7d"
    grace: str = "5m"
    dedup_horizon: str = "1h"
    influencer_threshold: int = Field(10_000, ge=0)
    cohort_window: str = "7d"
    unknown_actor: Literal["follower", "not_follower"] = "follower"
    max_streams: int = Field(10_000, ge=1)
    max_campaigns_per_account: int = Field(100, ge=1)
    max_future: str = "5m"
    detect_tick: str = "5m"

    # -- exporter --
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9464, ge=0, le=65535)
    metrics_tls_certfile: str | None = None
    metrics_tls_keyfile: str | None = None

    # -- runtime --
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"

    kafka: KafkaSettings = KafkaSettings()
    alerts: AlertSettings = AlertSettings()

    def detect_tick_ms(self) -> int:
        """How often the decay detectors observe the streams (event time on replay, real time live)."""
        try:
            ms = parse_duration(self.detect_tick, "detect_tick")
        except ConfigError as e:
            raise SettingsError(f"bad setting {env_name(e.setting)}: {e}") from None
        if ms <= 0:
            raise SettingsError(f"bad setting {env_name('detect_tick')}: must be positive")
        return ms

    def engine_config(self) -> EngineConfig:
        try:
            return EngineConfig(
                bucket_ms=parse_duration(self.bucket, "bucket"),
                windows=windows_from_text(self.windows),
                grace_ms=parse_duration(self.grace, "grace"),
                dedup_horizon_ms=parse_duration(self.dedup_horizon, "dedup_horizon"),
                influencer_threshold=self.influencer_threshold,
                cohort_ms=parse_duration(self.cohort_window, "cohort_window"),
                unknown_actor=self.unknown_actor,
                max_streams=self.max_streams,
                max_campaigns_per_account=self.max_campaigns_per_account,
                max_future_ms=parse_duration(self.max_future, "max_future"),
            )
        except ConfigError as e:
            raise SettingsError(f"bad setting {env_name(e.setting)}: {e}") from None


def env_name(setting: str) -> str:
    return ENV_PREFIX + setting.upper().replace(".", "__")


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """`ENGAGEWATCH_*` variables that name no setting, each with the closest one that does when there is one.

    A misspelt variable would otherwise leave its setting at the default without a word (those of a section,
    `ENGAGEWATCH_KAFKA__…`, are refused by the section itself). `ENGAGEWATCH_TEST_*` belongs to the test suite.
    """
    sections = {name for name, field in Settings.model_fields.items()
                if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)}
    fields = set(Settings.model_fields) - sections
    found = []
    for variable in environ:
        name = variable.upper()
        if not name.startswith(ENV_PREFIX) or name.startswith(f"{ENV_PREFIX}TEST_"):
            continue
        rest = name.removeprefix(ENV_PREFIX).lower()
        if rest in fields or rest.split("__")[0] in sections:
            continue
        close = difflib.get_close_matches(rest.split("__")[0], sorted(fields | sections), n=1)
        if close:
            hint = env_name(close[0]) + ("__…" if close[0] in sections else "")
            found.append(f"{variable} (did you mean {hint}?)")
        else:
            found.append(variable)
    return sorted(found)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment with non-None `overrides` (from flags) on top; fails naming the setting."""
    unknown = unknown_variables(os.environ)
    if unknown:
        raise SettingsError(f"unknown setting {', '.join(unknown)}")
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        problems = "; ".join(
            f"{env_name('.'.join(str(p) for p in err['loc']))}: {err['msg'].removeprefix('Value error, ')}"
            for err in e.errors()
        )
        raise SettingsError(f"bad setting {problems}") from None
    settings.engine_config()  # validate the engine knobs now, not at the first event
    settings.detect_tick_ms()
    return settings


# Flags for the engine settings, shared by every command that runs an engine. Each overrides its
# ENGAGEWATCH_* variable; the help names it.
_ENGINE_FLAGS = (
    ("bucket", str, "time bucket size g, e.g. 60s"),
    ("windows", str, "comma-separated sliding windows, e.g. 1h,24h,7d"),
    ("grace", str, "lateness allowance behind the account watermark, e.g. 5m"),
    ("dedup_horizon", str, "how long ids are remembered behind the watermark, e.g. 1h"),
    ("influencer_threshold", int, "actor_followers at or above this makes an influencer"),
    ("cohort_window", str, "new-follower cohort window, e.g. 7d"),
    ("unknown_actor", str, "follower status of an actor with nothing known: follower or not_follower"),
    ("max_streams", int, "label budget: streams tracked"),
    ("max_campaigns_per_account", int, "label budget: campaigns per account"),
)


def add_engine_arguments(parser: Any) -> None:
    group = parser.add_argument_group("engine settings")
    for name, kind, help_text in _ENGINE_FLAGS:
        group.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, metavar="V",
                           help=f"{help_text} [{env_name(name)}]")


def settings_from_args(args: Any, **more: Any) -> Settings:
    """Settings from the environment with the engine flags present on `args`, and `more`, on top."""
    overrides = {name: getattr(args, name, None) for name, _, _ in _ENGINE_FLAGS}
    return load_settings(**overrides, **more)
