"""`/metrics` served over HTTP or HTTPS, and the settings named when it cannot be."""

from __future__ import annotations

import socket
import ssl
import subprocess
import urllib.request

import pytest
from ports import free_port
from prerequisites import tool
from prometheus_client.core import GaugeMetricFamily

from streams.exporter import serve
from streams.settings import SettingsError


class OneGauge:
    def collect(self):
        yield GaugeMetricFamily("engagewatch_test_gauge", "A gauge for the test.", value=1)


@pytest.fixture
def busy_port():
    """A port some other process holds."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key (openssl)."""
    tool("openssl", "openssl")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", "key.pem", "-out", "cert.pem"],
                   cwd=d, check=True, capture_output=True)
    return str(d / "cert.pem"), str(d / "key.pem")


def test_serves_over_https_with_the_configured_certificate(certificate):
    cert, key = certificate
    port = free_port()
    server = serve(OneGauge(), "127.0.0.1", port, cert, key)
    try:
        context = ssl.create_default_context(cafile=cert)
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", context=context, timeout=10) as resp:
            assert b"engagewatch_test_gauge 1.0" in resp.read()
    finally:
        server.shutdown()
        server.server_close()


def test_a_port_in_use_names_the_settings(busy_port):
    with pytest.raises(SettingsError, match=f"127.0.0.1:{busy_port}: Address already in use; change "
                                            "ENGAGEWATCH_METRICS_PORT .* or ENGAGEWATCH_METRICS_HOST"):
        serve(OneGauge(), "127.0.0.1", busy_port)


def test_a_host_that_is_not_this_one_names_the_settings():
    with pytest.raises(SettingsError, match="cannot serve /metrics on no-such-host.invalid:.*ENGAGEWATCH_METRICS_HOST"):
        serve(OneGauge(), "no-such-host.invalid", free_port())


@pytest.mark.parametrize("given", ["certfile", "keyfile"])
def test_half_a_tls_configuration_is_refused_not_served_in_clear(certificate, given):
    cert, key = certificate
    with pytest.raises(SettingsError, match="ENGAGEWATCH_METRICS_TLS_CERTFILE and ENGAGEWATCH_METRICS_TLS_KEYFILE "
                                            "must be set together"):
        serve(OneGauge(), "127.0.0.1", free_port(), cert if given == "certfile" else None,
              key if given == "keyfile" else None)


def test_a_certificate_that_does_not_load_names_the_settings(certificate, tmp_path):
    cert, _ = certificate
    with pytest.raises(SettingsError, match="bad setting ENGAGEWATCH_METRICS_TLS_CERTFILE and "
                                            "ENGAGEWATCH_METRICS_TLS_KEYFILE: cannot load"):
        serve(OneGauge(), "127.0.0.1", free_port(), cert, str(tmp_path / "missing.pem"))
