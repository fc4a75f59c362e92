"""Where alert transitions go, and the detector gauges at scrape time.

Sinks take `processors.alert_event.AlertEvent`s from `DecayMonitor.observe` (`sink.send(alerts)`), never block
the stream, and are closed at shutdown (`sink.close()`):

* `FileAlertSink(path)` — one alert per line (`--alerts-out FILE.jsonl` of the embedded runner);
* `KafkaAlertSink(produce)` — the alerts topic: `produce(key, value)` is the worker's producer (key = account);
* `AlertmanagerSink(url)` — `POST {url}/api/v2/alerts`, from a background thread with a bounded queue (full: the
  batch is dropped and counted), retries with exponential backoff, and firing alerts re-sent every
  `resend_interval_s` so that Alertmanager's `resolve_timeout` does not resolve them behind our back;
* `WebhookSink(url)` — the same delivery with Alertmanager's webhook payload (`version` 4, `status`, `alerts`).

`monitor_metric_families(state)` and `sink_metric_families(sinks)` yield prometheus_client metric families for a
custom collector's `collect()`.
"""

from __future__ import annotations

import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from processors.alert_event import FIRING, AlertEvent
from streams import logs

STATE_HELP = "Decay state of a stream and window: 0 ok, 1 warning, 2 critical."
_log = logs.get("engagewatch.alerts")


class AlertSink(Protocol):
    name: str

    def send(self, alerts: Sequence[AlertEvent]) -> None: ...

    def close(self) -> None: ...


class FileAlertSink:
    """Appends one JSON object per alert (Alertmanager shape with `status`) to a file."""

    name = "file"

    def __init__(self, path: str) -> None:
        self._f = open(path, "ab")
        self.sent = self.dropped = self.failed = 0

    def send(self, alerts: Sequence[AlertEvent]) -> None:
        for a in alerts:
            self._f.write(orjson.dumps(a.to_dict()) + b"\n")
        self._f.flush()
        self.sent += len(alerts)

    def close(self) -> None:
        self._f.close()


class KafkaAlertSink:
    """Hands each alert to `produce(key, value)`: key the account, value the alert's JSON (the alerts topic)."""

    name = "kafka"

    def __init__(self, produce: Callable[[bytes, bytes], Any]) -> None:
        self._produce = produce
        self.sent = self.dropped = self.failed = 0

    def send(self, alerts: Sequence[AlertEvent]) -> None:
        for a in alerts:
            try:
                self._produce((a.label("account") or "").encode(), orjson.dumps(a.to_dict()))
                self.sent += 1
            except Exception:  # noqa: BLE001 - a broken producer must not stop the stream; it is counted
                self.failed += 1

    def close(self) -> None:
        pass


class HttpAlertSink:
    """Background delivery over HTTP: bounded queue, retries with backoff, periodic re-send of firing alerts."""

    name = "http"

    def __init__(
        self,
        url: str,
        *,
        queue_size: int = 1000,
        timeout_s: float = 5.0,
        retries: int = 5,
        backoff_s: float = 0.5,
        resend_interval_s: float | None = 60.0,
        post: Callable[[str, bytes, float], int] | None = None,
    ) -> None:
        self.url = url
        self._queue: queue.Queue[list[AlertEvent] | None] = queue.Queue(maxsize=queue_size)
        self._timeout, self._retries, self._backoff = timeout_s, retries, backoff_s
        self._resend = resend_interval_s
        self._post = post or _urllib_post
        self._active: dict[tuple, AlertEvent] = {}
        self._stop = threading.Event()
        self.sent = self.dropped = self.failed = 0
        self.idle = threading.Event()
        """Set whenever the queue is empty and nothing is in flight (tests wait on it, never sleep)."""
        self.idle.set()
        self._thread = threading.Thread(target=self._run, name=f"alerts-{self.name}", daemon=True)
        self._thread.start()

    def send(self, alerts: Sequence[AlertEvent]) -> None:
        if not alerts:
            return
        try:
            self.idle.clear()
            self._queue.put_nowait(list(alerts))
        except queue.Full:
            self.dropped += len(alerts)
            if self._queue.empty():
                self.idle.set()

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (up to `timeout_s`), then stop the thread."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            self._stop.set()
        self._thread.join(timeout_s)

    def payload(self, alerts: Sequence[AlertEvent]) -> bytes:
        raise NotImplementedError

    def _run(self) -> None:
        next_resend = time.monotonic() + (self._resend or 0)
        while not self._stop.is_set():
            wait = None if not self._resend else max(0.0, next_resend - time.monotonic())
            try:
                batch = self._queue.get(timeout=wait)
            except queue.Empty:
                batch = []
            if batch is None:
                return
            for a in batch:
                if a.status == FIRING:
                    self._active[a.fingerprint] = a
                else:
                    self._active.pop(a.fingerprint, None)
            if self._resend and time.monotonic() >= next_resend:
                known = {a.fingerprint for a in batch}
                batch = batch + [a for k, a in self._active.items() if k not in known]
                next_resend = time.monotonic() + self._resend
            if batch:
                self._deliver(batch)
            if self._queue.empty():
                self.idle.set()

    def _deliver(self, batch: list[AlertEvent]) -> None:
        body = self.payload(batch)
        delay = self._backoff
        for attempt in range(self._retries + 1):
            try:
                status = self._post(self.url, body, self._timeout)
                if status < 300:
                    self.sent += len(batch)
                    return
                problem = f"HTTP {status}"
                if 400 <= status < 500 and status != 429:
                    break  # the receiver refuses this payload; retrying will not help
            except OSError as e:
                problem = f"{type(e).__name__}: {e}"
            if attempt < self._retries and self._stop.wait(delay):
                break
            delay *= 2
        self.failed += len(batch)
        host = urllib.parse.urlsplit(self.url).netloc.rpartition("@")[2]  # never the credentials a URL may carry
        _log.warning("alert delivery failed", sink=self.name, host=host, alerts=len(batch), attempts=attempt + 1,
                     problem=problem)


class AlertmanagerSink(HttpAlertSink):
    """Alertmanager API v2: `POST {base_url}/api/v2/alerts` with a list of postable alerts."""

    name = "alertmanager"

    def __init__(self, base_url: str, **kw: Any) -> None:
        super().__init__(base_url.rstrip("/") + "/api/v2/alerts", **kw)

    def payload(self, alerts: Sequence[AlertEvent]) -> bytes:
        return orjson.dumps([a.to_alertmanager() for a in alerts])


class WebhookSink(HttpAlertSink):
    """A generic webhook receiving Alertmanager's webhook payload (version 4)."""

    name = "webhook"

    def __init__(self, url: str, **kw: Any) -> None:
        kw.setdefault("resend_interval_s", None)
        super().__init__(url, **kw)

    def payload(self, alerts: Sequence[AlertEvent]) -> bytes:
        status = FIRING if any(a.status == FIRING for a in alerts) else "resolved"
        return orjson.dumps(
            {"version": "4", "receiver": "engagewatch", "status": status, "alerts": [a.to_dict() for a in alerts]}
        )


class FanoutSink:
    """Sends every batch to each of several sinks."""

    name = "fanout"

    def __init__(self, sinks: Iterable[AlertSink]) -> None:
        self.sinks = list(sinks)

    def send(self, alerts: Sequence[AlertEvent]) -> None:
        if alerts:
            for s in self.sinks:
                s.send(alerts)

    def close(self) -> None:
        for s in self.sinks:
            s.close()


def _urllib_post(url: str, body: bytes, timeout_s: float) -> int:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def sinks_from_settings(
    alert_settings: Any, alerts_out: str | None = None, produce: Callable[[bytes, bytes], Any] | None = None
) -> FanoutSink:
    """The sinks a runtime needs: file (`--alerts-out`), Kafka (`produce`), and the configured URLs."""
    sinks: list[AlertSink] = []
    if alerts_out:
        sinks.append(FileAlertSink(alerts_out))
    if produce is not None:
        sinks.append(KafkaAlertSink(produce))
    if getattr(alert_settings, "alertmanager_url", None):
        sinks.append(AlertmanagerSink(alert_settings.alertmanager_url))
    if getattr(alert_settings, "webhook_url", None):
        sinks.append(WebhookSink(alert_settings.webhook_url))
    return FanoutSink(sinks)


def monitor_metric_families(state: Any) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    """Gauges and counters of a `processors.decay.MonitorState`, for a custom collector's `collect()`."""
    baseline = GaugeMetricFamily(
        "engagewatch_active_follower_ratio_baseline",
        "Seasonal baseline of the active-follower ratio (hour of day x day of week, robust).",
        labels=["account", "platform", "window"],
    )
    decay = GaugeMetricFamily("engagewatch_decay_state", STATE_HELP, labels=["account", "platform", "window"])
    evidence = GaugeMetricFamily(
        "engagewatch_decay_evidence_nats",
        "CUSUM statistic of the decay test (log-likelihood ratio, nats).",
        labels=["account", "platform", "window"],
    )
    silent = GaugeMetricFamily(
        "engagewatch_stream_silent", "1 while the stream sends no event although it should.", labels=["account", "platform"]
    )
    hollow = GaugeMetricFamily(
        "engagewatch_hollow_growth",
        "1 while followers grow without engaging (window: the active-follower window the test reads).",
        labels=["account", "platform", "window"],
    )
    onboarding = GaugeMetricFamily(
        "engagewatch_onboarding_collapse",
        "1 while new-follower activation is far below its baseline (window: the cohort window).",
        labels=["account", "platform", "window"],
    )
    for st in state.streams:
        key = [st.account, st.platform]
        for w in st.windows:
            if w.ratio_baseline is not None:
                baseline.add_metric(key + [w.window], w.ratio_baseline)
            if w.state is not None:
                decay.add_metric(key + [w.window], w.state)
                evidence.add_metric(key + [w.window], w.evidence)
        silent.add_metric(key, 1.0 if st.silent else 0.0)
        hollow.add_metric(key + [state.hollow_window], 1.0 if st.hollow_growth else 0.0)
        onboarding.add_metric(key + [state.cohort_window], 1.0 if st.onboarding_collapse else 0.0)
    yield from (baseline, decay, evidence, silent, hollow, onboarding)
    fired = CounterMetricFamily(
        "engagewatch_alerts", "Alerts fired, by alert name and severity.", labels=["alertname", "severity"]
    )
    for name, severity, n in state.alerts_total:
        fired.add_metric([name, severity], n)
    yield fired


def sink_metric_families(sinks: Iterable[Any]) -> Iterator[CounterMetricFamily]:
    """`engagewatch_alert_notifications_total{sink,outcome}`: sent, failed (after retries) and dropped (queue full)."""
    c = CounterMetricFamily(
        "engagewatch_alert_notifications", "Alert deliveries by sink and outcome.", labels=["sink", "outcome"]
    )
    for s in sinks:
        for outcome in ("sent", "failed", "dropped"):
            c.add_metric([s.name, outcome], getattr(s, outcome, 0))
    yield c


__all__ = [
    "AlertSink",
    "AlertmanagerSink",
    "FanoutSink",
    "FileAlertSink",
    "HttpAlertSink",
    "KafkaAlertSink",
    "WebhookSink",
    "monitor_metric_families",
    "sink_metric_families",
    "sinks_from_settings",
]
