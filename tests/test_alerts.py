"""Specifications of the alert sinks and the detector metric families in `streams.alerts`."""

from __future__ import annotations

import http.server
import json
import logging
import queue
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

import pytest
from prerequisites import tool
from prometheus_client import CollectorRegistry

from processors.alert_event import AlertEvent
from processors.decay import DECAY, DecayMonitor
from streams.alerts import AlertmanagerSink, FileAlertSink, KafkaAlertSink, WebhookSink, monitor_metric_families
from streams.backtest_scenarios import DAY_MS, HOUR_MS, Scenario, simulate

FIRING = AlertEvent(
    "firing",
    (("alertname", "EngagementDecay"), ("account", "acme"), ("platform", "x"), ("window", "1h"), ("severity", "warning")),
    (("summary", "s"), ("description", "ratio 0.01 against a baseline of 0.02")),
    1_767_571_200_000,
    None,
)


class TestAlertEvent:
    RESOLVED = AlertEvent(status="resolved", labels=(("alertname", DECAY), ("severity", "warning")),
                          annotations=(("summary", "s"),), starts_at_ms=1_764_000_000_000, ends_at_ms=1_764_000_360_123)

    def test_webhook_shape_with_rfc3339_milliseconds(self):
        assert self.RESOLVED.to_dict() == {
            "status": "resolved", "labels": {"alertname": DECAY, "severity": "warning"},
            "annotations": {"summary": "s"},
            "startsAt": "2025-11-24T16:00:00.000Z", "endsAt": "2025-11-24T16:06:00.123Z",
        }

    def test_a_firing_alert_has_no_end_and_alertmanager_gets_no_status(self):
        firing = AlertEvent(status="firing", labels=self.RESOLVED.labels, annotations=(), starts_at_ms=0,
                            ends_at_ms=None)
        assert firing.to_alertmanager() == {"labels": dict(firing.labels), "annotations": {},
                                            "startsAt": "1970-01-01T00:00:00.000Z"}


class TestFileAlertSink:
    def test_one_alert_per_line(self, tmp_path):
        """Each alert is one JSON line with status, labels and RFC 3339 startsAt."""
        path = tmp_path / "alerts.jsonl"
        sink = FileAlertSink(str(path))
        sink.send([FIRING, FIRING])
        sink.close()
        lines = path.read_text().splitlines()
        assert len(lines) == 2
        assert json.loads(lines[0])["startsAt"] == "2026-01-05T00:00:00.000Z"
        assert json.loads(lines[0])["status"] == "firing"

    def test_alerts_reach_the_file_before_it_is_closed(self, tmp_path):
        """Someone may be following the file while the run goes on: each batch is written through."""
        path = tmp_path / "alerts.jsonl"
        sink = FileAlertSink(str(path))
        sink.send([FIRING])
        assert len(path.read_text().splitlines()) == 1
        sink.close()


class TestKafkaAlertSink:
    def test_key_is_account(self):
        """The producer gets the account as key and the alert's JSON as value."""
        got = []
        KafkaAlertSink(lambda k, v: got.append((k, json.loads(v)))).send([FIRING])
        assert got[0][0] == b"acme" and got[0][1]["labels"]["alertname"] == "EngagementDecay"


class TestHttpSinks:
    def test_full_queue_drops_and_counts(self):
        """When the queue is full, send returns at once and the alerts are counted as dropped."""
        gate = threading.Event()

        def post(url, body, timeout):
            gate.wait(10)
            return 200

        sink = AlertmanagerSink("http://127.0.0.1:9", queue_size=1, post=post, resend_interval_s=None)
        for _ in range(5):
            sink.send([FIRING])
        assert sink.dropped >= 3
        gate.set()
        sink.close()

    def test_retries_until_success(self):
        """A failing receiver is retried with backoff and the batch counts as sent once it accepts."""
        calls = []

        def post(url, body, timeout):
            calls.append(json.loads(body))
            if len(calls) < 3:
                raise OSError("refused")
            return 200

        sink = AlertmanagerSink("http://am:9093/", post=post, backoff_s=0.001, resend_interval_s=None)
        sink.send([FIRING])
        sink.close()
        assert sink.sent == 1 and len(calls) == 3 and "status" not in calls[0][0]

    def test_a_batch_given_up_is_counted_and_logged_without_credentials(self, caplog):
        """After the last retry the batch counts as failed, and a warning says which sink and host, never the
        password a URL may carry."""
        def post(url, body, timeout):
            raise OSError("connection refused")

        sink = WebhookSink("https://ops:s3cret@hooks.example:8443/engagewatch", post=post, retries=2, backoff_s=0.001,
                           resend_interval_s=None)
        with caplog.at_level(logging.WARNING, logger="engagewatch.alerts"):
            sink.send([FIRING])
            sink.close()
        assert sink.failed == 1 and sink.sent == 0
        [record] = [r for r in caplog.records if r.getMessage() == "alert delivery failed"]
        assert record.engagewatch_fields == {
            "sink": "webhook", "host": "hooks.example:8443", "alerts": 1, "attempts": 3,
            "problem": "OSError: connection refused",
        }
        assert "s3cret" not in caplog.text

    @pytest.mark.parametrize(("statuses", "sent", "calls"), [
        ([500, 503, 200], 1, 3),  # the receiver is failing: retried
        ([429, 200], 1, 2),  # too many requests: retried after the backoff
        ([400, 200], 0, 1),  # the receiver refuses the payload: retrying will not help
    ])
    def test_http_status_decides_whether_to_retry(self, statuses, sent, calls):
        """5xx and 429 are retried; another 4xx gives the batch up at once."""
        answers = iter(statuses)
        posted = []

        def post(url, body, timeout):
            posted.append(body)
            return next(answers)

        sink = AlertmanagerSink("http://am:9093", post=post, backoff_s=0.001, resend_interval_s=None)
        sink.send([FIRING])
        sink.close()
        assert (sink.sent, sink.failed, len(posted)) == (sent, 1 - sent, calls)

    def test_firing_alerts_are_sent_again_until_resolved(self):
        """Alertmanager forgets an alert it is not told about again: firing ones are re-sent every interval, and
        a resolved one no longer is."""
        other = AlertEvent("firing", (("alertname", "HollowFollowerGrowth"), ("account", "beta"), ("platform", "x"),
                                      ("severity", "warning")), FIRING.annotations, FIRING.starts_at_ms, None)
        resolved = AlertEvent("resolved", FIRING.labels, FIRING.annotations, FIRING.starts_at_ms, FIRING.starts_at_ms)
        batches: queue.Queue[list[tuple[str, bool]]] = queue.Queue()

        def post(url, body, timeout):
            batches.put([(a["labels"]["account"], "endsAt" in a) for a in json.loads(body)])
            return 200

        sink = AlertmanagerSink("http://am:9093", resend_interval_s=0.01, post=post)
        sink.send([FIRING, other])
        assert batches.get(timeout=10) == [("acme", False), ("beta", False)]
        sink.send([resolved])
        while ("acme", True) not in (batch := batches.get(timeout=10)):
            assert batch == [("acme", False), ("beta", False)]  # re-sends made before the resolution
        for _ in range(3):
            assert batches.get(timeout=10) == [("beta", False)]
        sink.close()

    def test_webhook_payload(self):
        """The webhook receives Alertmanager's webhook shape (version 4)."""
        bodies = []
        sink = WebhookSink("http://hook", post=lambda u, b, t: bodies.append(json.loads(b)) or 200)
        sink.send([FIRING])
        sink.close()
        assert bodies[0]["version"] == "4" and bodies[0]["alerts"][0]["labels"]["account"] == "acme"


class TestMetricFamilies:
    def test_gauges_from_state(self):
        """The collector exposes the baseline, decay state, silence gauge and alert counter."""
        onset = 1_767_571_200_000 + 8 * DAY_MS
        s = Scenario("acme", "sudden", 3, 50.0, days=9, decay_size=0.6, decay_onset_ms=onset)
        monitor = DecayMonitor()
        for T, obs in simulate(s):
            monitor.observe(T, (obs,))

        class Collector:
            def collect(self):
                yield from monitor_metric_families(monitor.state())

        reg = CollectorRegistry()
        reg.register(Collector())
        labels = {"account": "acme", "platform": "sim", "window": "1h"}
        assert reg.get_sample_value("engagewatch_decay_state", labels) == 2
        assert 0 < reg.get_sample_value("engagewatch_active_follower_ratio_baseline", labels) < 1
        assert reg.get_sample_value("engagewatch_stream_silent", {"account": "acme", "platform": "sim"}) == 0
        assert reg.get_sample_value("engagewatch_alerts_total", {"alertname": DECAY, "severity": "critical"}) >= 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Hook(http.server.BaseHTTPRequestHandler):
    received: "queue.Queue[dict]"

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.put(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def alertmanager(tmp_path):
    """A real Alertmanager on a free port, notifying a local webhook (send_resolved) that the test reads."""
    binary = shutil.which("alertmanager") or tool("prometheus-alertmanager", "prometheus-alertmanager")
    received: queue.Queue = queue.Queue()
    handler = type("Hook", (_Hook,), {"received": received})
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    port = _free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        "global:\n  resolve_timeout: 1h\n"
        "route:\n  receiver: hook\n  group_by: [alertname, account, platform, window]\n"
        "  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n"
        f"receivers:\n- name: hook\n  webhook_configs:\n  - url: http://127.0.0.1:{hook.server_port}/\n"
        "    send_resolved: true\n"
    )
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(base + "/-/ready", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("alertmanager did not become ready")
            threading.Event().wait(0.05)  # polling interval of a readiness probe, not synchronisation
    yield base, received
    proc.terminate()
    proc.wait(10)
    hook.shutdown()
    hook.server_close()


def _next(received: queue.Queue, status: str) -> dict:
    while True:
        note = received.get(timeout=30)
        if note["status"] == status:
            return note


@pytest.mark.alertmanager
class TestAlertmanager:
    def test_decay_fires_and_resolves(self, alertmanager):
        """A decay from the monitor reaches Alertmanager as firing, is listed by its API, then resolves."""
        base, received = alertmanager
        now = int(time.time() * 1000) // HOUR_MS * HOUR_MS
        start = now - 10 * DAY_MS
        onset = start + 8 * DAY_MS
        s = Scenario("acme", "sudden", 5, 60.0, days=10, decay_size=0.6, decay_onset_ms=onset,
                     decay_end_ms=onset + 12 * HOUR_MS, start_ms=start)
        monitor, sink = DecayMonitor(), AlertmanagerSink(base, resend_interval_s=None)
        stage = "firing"
        for T, obs in simulate(s):
            alerts = [a for a in monitor.observe(T, (obs,)) if a.alertname == DECAY and a.label("window") == "1h"]
            for a in alerts:
                if a.status == stage:
                    sink.send([a])
                    sink.idle.wait(10)
                    if stage == "firing":
                        note = _next(received, "firing")
                        with urllib.request.urlopen(base + "/api/v2/alerts?filter=alertname%3D%22EngagementDecay%22") as r:
                            listed = json.loads(r.read())
                        assert listed and listed[0]["labels"]["account"] == "acme"
                        assert listed[0]["status"]["state"] == "active"
                        assert "baseline" in listed[0]["annotations"]["description"]
                        fired = note["alerts"][0]["labels"]
                        stage = "resolved"
                    else:
                        note = _next(received, "resolved")
                        assert note["alerts"][0]["labels"] == fired
                        assert note["alerts"][0]["endsAt"].startswith(a.to_dict()["endsAt"][:19])
                        stage = "done"
        sink.close()
        assert stage == "done"
