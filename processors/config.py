"""The engine's configuration: one frozen value, validated once, read by every processor.

`streams.settings` builds it from flags and `ENGAGEWATCH_*` variables; tests build it directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_DURATION = re.compile(r"\A(\d+)(ms|s|m|h|d|w)\Z", re.ASCII)
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}

UNKNOWN_ACTOR_POLICIES = ("follower", "not_follower")


class ConfigError(ValueError):
    """A setting has a value the engine cannot run with; the message names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}" if setting else problem)  # no setting: the caller names it
        self.setting = setting


def parse_duration(text: str, setting: str) -> int:
    """`90s`, `5m`, `1h`, `7d`, `2w` or a bare number of seconds -> milliseconds."""
    text = str(text).strip()
    if text.isdigit():
        return int(text) * 1_000
    m = _DURATION.match(text)
    if not m:
        raise ConfigError(setting, f"{text!r} is not a duration like 90s, 5m, 1h or 7d")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


def format_duration(ms: int) -> str:
    """The shortest exact label for a duration: 3600000 -> `1h`, used as the `window` label."""
    for unit in ("w", "d", "h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Every knob of the contract, with its defaults.

    Durations are in milliseconds. `windows` are (label, length) pairs in ascending length.
    """

    bucket_ms: int = 60_000
    """Time bucket size g: events are counted per bucket, windows are whole numbers of buckets."""
    windows: tuple[tuple[str, int], ...] = (("1h", 3_600_000), ("24h", 86_400_000), ("7d", 604_800_000))
    """Sliding windows evaluated for every stream, labelled as in the `window` label."""
    grace_ms: int = 300_000
    """A record older than its account's watermark minus the grace is late and not applied."""
    dedup_horizon_ms: int = 3_600_000
    """How far behind the watermark event ids are remembered for deduplication (never below the grace)."""
    influencer_threshold: int = 10_000
    """`actor_followers` at or above this makes an active follower an influencer."""
    cohort_ms: int = 604_800_000
    """New-follower cohort: follows whose bucket lies within this window of the evaluation time."""
    unknown_actor: str = "follower"
    """Follower status of an actor with no `follower` field and no recorded follow/unfollow."""
    max_streams: int = 10_000
    """Label budget: (account, platform) streams tracked; events of further streams are counted as overflow."""
    max_campaigns_per_account: int = 100
    """Label budget: campaigns per account; further campaigns are folded into `campaign="_other"`."""
    max_future_ms: int = 300_000
    """Wall clock only: a record stamped further than this ahead of now is dead-lettered as `future`."""
    window_labels: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        def positive(name: str, value: int) -> None:
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(name, f"must be a positive whole number, got {value!r}")

        positive("bucket", self.bucket_ms)
        if self.bucket_ms % 1_000:
            raise ConfigError("bucket", "must be a whole number of seconds")
        if not self.windows:
            raise ConfigError("windows", "at least one window is needed")
        labels = [label for label, _ in self.windows]
        if len(set(labels)) != len(labels):
            raise ConfigError("windows", f"windows repeat: {labels}")
        for label, length in self.windows:
            positive("windows", length)
            if length % self.bucket_ms:
                raise ConfigError("windows", f"{label} is not a whole number of buckets of {self.bucket_ms} ms")
        if list(self.windows) != sorted(self.windows, key=lambda w: w[1]):
            object.__setattr__(self, "windows", tuple(sorted(self.windows, key=lambda w: w[1])))
        if self.grace_ms < 0:
            raise ConfigError("grace", "must not be negative")
        if self.dedup_horizon_ms < self.grace_ms:
            raise ConfigError("dedup_horizon", f"must be at least the grace ({self.grace_ms} ms)")
        if self.influencer_threshold < 0:
            raise ConfigError("influencer_threshold", "must not be negative")
        positive("cohort_window", self.cohort_ms)
        if self.cohort_ms % self.bucket_ms:
            raise ConfigError("cohort_window", "must be a whole number of buckets")
        if self.unknown_actor not in UNKNOWN_ACTOR_POLICIES:
            raise ConfigError("unknown_actor", f"must be one of {', '.join(UNKNOWN_ACTOR_POLICIES)}")
        positive("max_streams", self.max_streams)
        positive("max_campaigns_per_account", self.max_campaigns_per_account)
        if self.max_future_ms < 0:
            raise ConfigError("max_future", "must not be negative")
        object.__setattr__(self, "window_labels", tuple(label for label, _ in self.windows))

    @property
    def window_buckets(self) -> tuple[int, ...]:
        return tuple(length // self.bucket_ms for _, length in self.windows)

    @property
    def unknown_is_follower(self) -> bool:
        return self.unknown_actor == "follower"

    @property
    def retention_buckets(self) -> int:
        """The longest span any metric looks back; actor state older than this can never count again."""
        return max(max(self.window_buckets), self.cohort_ms // self.bucket_ms)


def windows_from_text(text: str, setting: str = "windows") -> tuple[tuple[str, int], ...]:
    """`1h,24h,7d` -> (("1h", 3600000), ...), labels kept as the user wrote them."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise ConfigError(setting, "at least one window is needed")
    return tuple((p, parse_duration(p, setting)) for p in parts)
