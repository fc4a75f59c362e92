"""The alert value every detector emits and every sink sends: Alertmanager's shape, frozen."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

FIRING = "firing"
RESOLVED = "resolved"


def rfc3339(ms: int) -> str:
    """Epoch milliseconds -> `2026-11-25T21:00:00.250Z`."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One transition of one alert: it started firing, or it resolved."""

    status: str
    """`firing` or `resolved`."""
    labels: tuple[tuple[str, str], ...]
    """Identity of the alert: alertname, account, platform, window (when it has one), severity."""
    annotations: tuple[tuple[str, str], ...]
    """summary and description, quoting the current value and its baseline."""
    starts_at_ms: int
    """When the alert started firing (evaluation time, epoch ms)."""
    ends_at_ms: int | None
    """When it resolved; None while firing."""

    def label(self, name: str, default: str | None = None) -> str | None:
        return dict(self.labels).get(name, default)

    @property
    def alertname(self) -> str:
        return dict(self.labels)["alertname"]

    @property
    def severity(self) -> str:
        return dict(self.labels)["severity"]

    @property
    def fingerprint(self) -> tuple[tuple[str, str], ...]:
        """Sorted labels: what Alertmanager identifies an alert by."""
        return tuple(sorted(self.labels))

    def to_dict(self) -> dict:
        """Alertmanager webhook / API shape: status, labels, annotations, startsAt, endsAt (RFC 3339)."""
        d = {
            "status": self.status,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": rfc3339(self.starts_at_ms),
        }
        if self.ends_at_ms is not None:
            d["endsAt"] = rfc3339(self.ends_at_ms)
        return d

    def to_alertmanager(self) -> dict:
        """A `postableAlert` of Alertmanager API v2 (`POST /api/v2/alerts`): no status field, endsAt resolves."""
        d = self.to_dict()
        del d["status"]
        return d
