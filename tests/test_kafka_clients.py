"""Kafka settings -> client arguments for kafka-python (admin, producer), aiokafka (side readers) and Faust, for
every security protocol and SASL mechanism; secrets never rendered. No broker: see test_kafka_security.py for the
same settings against a real TLS-only broker."""

from __future__ import annotations

import asyncio
import logging
import ssl
import subprocess
from pathlib import Path

import pytest
from prerequisites import tool
from pydantic import SecretStr

from streams.kafka_clients import (
    ConnectionFailures, aiokafka_config, describe_connection, faust_credentials, kafka_python_config, ssl_context,
    unreachable_message,
)
from streams.settings import KafkaSettings, SettingsError, load_settings

PASSWORD = "s3cret-Pa55word-never-shown"
KEY_PASSWORD = "key-Pa55word-never-shown"
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

# kafka-python 3.0 loads its protocol schemas with importlib.resources.read_text/open_text, deprecated in 3.11.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, str]:
    """A CA and a client certificate whose PEM key is encrypted with KEY_PASSWORD (openssl)."""
    tool("openssl", "openssl")  # makes the test certificates
    d = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
        "-keyout", "ca.key", "-out", "ca.pem")
    run("req", "-newkey", "rsa:2048", "-subj", "/CN=client", "-passout", f"pass:{KEY_PASSWORD}",
        "-keyout", "client.key", "-out", "client.csr")
    run("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-out", "client.pem")
    return {"ca": str(d / "ca.pem"), "cert": str(d / "client.pem"), "key": str(d / "client.key")}


def sasl(protocol: str, mechanism: str, **more) -> KafkaSettings:
    return KafkaSettings(security_protocol=protocol, sasl_mechanism=mechanism, sasl_username="engagewatch",
                         sasl_password=SecretStr(PASSWORD), **more)


def mtls(pki, **more) -> KafkaSettings:
    return KafkaSettings(security_protocol="SSL", ssl_cafile=pki["ca"], ssl_certfile=pki["cert"],
                         ssl_keyfile=pki["key"], ssl_keyfile_password=SecretStr(KEY_PASSWORD), **more)


def aiokafka_auth(kafka: KafkaSettings) -> dict:
    """What Faust hands aiokafka for the app's own consumer, producer and admin client."""
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    return dict(credentials_to_aiokafka_auth(faust_credentials(kafka)))


def assert_accepted_by_kafka_python(conf: dict) -> None:
    """kafka-python refuses unknown configuration keys; these must all be known to the admin client and producer."""
    from kafka import KafkaAdminClient, KafkaProducer

    for client in (KafkaAdminClient, KafkaProducer):
        unknown = set(conf) - set(client.DEFAULT_CONFIG)
        assert not unknown, f"{client.__name__} does not know {unknown}"


def assert_accepted_by_aiokafka(conf: dict) -> None:
    """aiokafka validates the protocol, mechanism and credentials when a client is made (no connection yet)."""
    from aiokafka import AIOKafkaConsumer

    async def make() -> None:
        consumer = AIOKafkaConsumer(**conf, group_id=None)
        try:
            assert consumer._client._security_protocol == conf["security_protocol"]
        finally:
            await consumer.stop()

    asyncio.run(make())


class TestPlaintext:
    def test_no_tls_no_sasl(self):
        kafka = KafkaSettings()
        for conf in (kafka_python_config(kafka), aiokafka_config(kafka)):
            assert conf["security_protocol"] == "PLAINTEXT"
            assert not {k for k in conf if k.startswith(("ssl", "sasl"))}
        assert faust_credentials(kafka) is None
        assert aiokafka_auth(kafka) == {"security_protocol": "PLAINTEXT"}
        assert ssl_context(kafka) is None

    def test_bootstrap_servers_are_split(self):
        kafka = KafkaSettings(bootstrap_servers="a:9092,b:9093")
        assert kafka_python_config(kafka)["bootstrap_servers"] == ["a:9092", "b:9093"]
        assert aiokafka_config(kafka)["bootstrap_servers"] == ["a:9092", "b:9093"]


class TestSasl:
    @pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
    @pytest.mark.parametrize("mechanism", MECHANISMS)
    def test_every_client_gets_protocol_mechanism_and_credentials(self, protocol, mechanism):
        kafka = sasl(protocol, mechanism)
        tls = protocol == "SASL_SSL"
        for conf in (kafka_python_config(kafka), aiokafka_config(kafka)):
            assert conf["security_protocol"] == protocol
            assert conf["sasl_mechanism"] == mechanism
            assert conf["sasl_plain_username"] == "engagewatch"
            assert conf["sasl_plain_password"] == PASSWORD
            assert isinstance(conf.get("ssl_context"), ssl.SSLContext) if tls else "ssl_context" not in conf
        assert_accepted_by_kafka_python(kafka_python_config(kafka))
        assert_accepted_by_aiokafka(aiokafka_config(kafka))
        auth = aiokafka_auth(kafka)
        assert auth["security_protocol"] == protocol
        assert auth["sasl_mechanism"] == mechanism
        assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("engagewatch", PASSWORD)
        assert isinstance(auth["ssl_context"], ssl.SSLContext) if tls else auth["ssl_context"] is None
        assert_accepted_by_aiokafka(auth)

    def test_sasl_ssl_verifies_the_broker_with_the_given_ca(self, pki):
        ctx = ssl_context(sasl("SASL_SSL", "SCRAM-SHA-512", ssl_cafile=pki["ca"]))
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
        assert [dict(c["subject"][0])["commonName"] for c in ctx.get_ca_certs()] == ["test CA"]

    def test_hostname_check_can_be_turned_off_but_not_verification(self, pki):
        ctx = ssl_context(sasl("SASL_SSL", "PLAIN", ssl_cafile=pki["ca"], ssl_check_hostname=False))
        assert not ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED

    @pytest.mark.parametrize("missing", ["sasl_mechanism", "sasl_username", "sasl_password"])
    def test_missing_sasl_setting_is_named(self, missing):
        fields = {"sasl_mechanism": "PLAIN", "sasl_username": "u", "sasl_password": SecretStr("p")}
        del fields[missing]
        kafka = KafkaSettings(security_protocol="SASL_SSL", **fields)
        for build in (kafka_python_config, aiokafka_config, faust_credentials):
            with pytest.raises(SettingsError, match=f"ENGAGEWATCH_KAFKA__{missing.upper()}"):
                build(kafka)


class TestMutualTls:
    def test_ssl_with_client_certificate(self, pki):
        kafka = mtls(pki)
        for conf in (kafka_python_config(kafka), aiokafka_config(kafka)):
            assert conf["security_protocol"] == "SSL"
            assert isinstance(conf["ssl_context"], ssl.SSLContext)
            assert not {k for k in conf if k.startswith("sasl")}
        assert_accepted_by_kafka_python(kafka_python_config(kafka))
        assert_accepted_by_aiokafka(aiokafka_config(kafka))
        auth = aiokafka_auth(kafka)
        assert auth["security_protocol"] == "SSL" and isinstance(auth["ssl_context"], ssl.SSLContext)
        assert "client certificate" in describe_connection(kafka)

    def test_the_key_password_is_used(self, pki):
        """The encrypted client key loads with ssl_keyfile_password and not without it; the failure names the
        settings, and not the password."""
        assert ssl_context(mtls(pki)) is not None
        with pytest.raises(SettingsError, match="ENGAGEWATCH_KAFKA__SSL_KEYFILE_PASSWORD") as caught:
            ssl_context(mtls(pki).model_copy(update={"ssl_keyfile_password": SecretStr("not-the-password")}))
        assert "not-the-password" not in caught.value.message

    @pytest.mark.parametrize("setting", ["ssl_cafile", "ssl_certfile"])
    def test_a_tls_file_that_does_not_load_names_its_setting(self, pki, tmp_path, setting):
        kafka = mtls(pki).model_copy(update={setting: str(tmp_path / "missing.pem")})
        with pytest.raises(SettingsError, match=f"bad setting .*ENGAGEWATCH_KAFKA__{setting.upper()}.*"
                                                "No such file or directory"):
            ssl_context(kafka)

    def test_ssl_without_client_certificate(self, pki):
        kafka = KafkaSettings(security_protocol="SSL", ssl_cafile=pki["ca"])
        assert isinstance(kafka_python_config(kafka)["ssl_context"], ssl.SSLContext)
        assert aiokafka_auth(kafka)["security_protocol"] == "SSL"
        assert describe_connection(kafka) == "127.0.0.1:9092, SSL"


class TestSecretsAreNeverRendered:
    def test_from_the_environment(self, monkeypatch, pki):
        for name, val in {"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "SCRAM-SHA-512",
                          "SASL_USERNAME": "engagewatch", "SASL_PASSWORD": PASSWORD, "SSL_CAFILE": pki["ca"],
                          "SSL_CERTFILE": pki["cert"], "SSL_KEYFILE": pki["key"],
                          "SSL_KEYFILE_PASSWORD": KEY_PASSWORD}.items():
            monkeypatch.setenv(f"ENGAGEWATCH_KAFKA__{name}", val)
        settings = load_settings()
        kafka = settings.kafka
        assert kafka.sasl_password.get_secret_value() == PASSWORD
        assert kafka.ssl_keyfile_password.get_secret_value() == KEY_PASSWORD
        rendered = [repr(settings), str(settings), repr(kafka), str(kafka), settings.model_dump_json(),
                    str(settings.model_dump()), describe_connection(kafka), repr(faust_credentials(kafka))]
        for text in rendered:
            assert PASSWORD not in text and KEY_PASSWORD not in text, text
        assert describe_connection(kafka) == (
            "127.0.0.1:9092, SASL_SSL, SCRAM-SHA-512 as engagewatch, client certificate")

    def test_kafka_python_config_dump_is_filtered(self, caplog):
        """kafka-python's admin client logs its configuration, password included, at debug: dropped."""
        kafka_python_config(sasl("SASL_SSL", "PLAIN"))
        with caplog.at_level(logging.DEBUG, logger="kafka.admin.client"):
            logging.getLogger("kafka.admin.client").debug(
                "Starting KafkaAdminClient with configuration: %s", {"sasl_plain_password": PASSWORD})
        assert PASSWORD not in caplog.text

    def test_sasl_authenticate_requests_are_not_logged(self, caplog):
        """Both clients log each request at debug; a PLAIN SaslAuthenticate request holds the password."""
        from aiokafka.protocol.admin import SaslAuthenticateRequest_v1
        from kafka.protocol.sasl import SaslAuthenticateRequest

        token = b"\x00engagewatch\x00" + PASSWORD.encode()
        aiokafka_config(sasl("SASL_SSL", "PLAIN"))
        with caplog.at_level(logging.DEBUG):
            logging.getLogger("aiokafka.conn").debug("Request to %s:%d %d: %s", "127.0.0.1", 9192, 3,
                                                     SaslAuthenticateRequest_v1(token))
            logging.getLogger("kafka.net.connection").debug("%s Request %d: %s", "<conn>", 3,
                                                            SaslAuthenticateRequest(auth_bytes=token))
            logging.getLogger("aiokafka.conn").debug("Request to %s:%d %d: %s", "127.0.0.1", 9192, 4, "Metadata")
        assert PASSWORD not in caplog.text
        assert "Metadata" in caplog.text, "other requests are still logged"

    def test_unreachable_message_names_the_cause_not_the_secret(self):
        kafka = sasl("SASL_SSL", "SCRAM-SHA-256")
        with ConnectionFailures() as failures:
            logging.getLogger("kafka.net.manager").warning(
                "Bootstrap connection to bootstrap-0 failed: [Error 58] SaslAuthenticationFailedError: "
                "Authentication failed during authentication due to invalid credentials with SASL mechanism "
                "SCRAM-SHA-256 (backoff 0.10 secs)")
        message = unreachable_message(kafka, TimeoutError("Unable to bootstrap"), failures)
        assert message.startswith("cannot connect to Kafka at 127.0.0.1:9092, SASL_SSL, SCRAM-SHA-256 as engagewatch:")
        assert "refused the SASL credentials" in message and "ENGAGEWATCH_KAFKA__SASL_PASSWORD" in message
        assert "backoff" not in message and PASSWORD not in message

    def test_capture_keeps_a_silenced_kafka_logger_silent(self, caplog):
        """The worker silences kafka-python while it checks the cluster: causes are still seen, not printed."""
        kafka_log = logging.getLogger("kafka")
        kafka_log.setLevel(logging.CRITICAL)
        try:
            with caplog.at_level(logging.DEBUG), ConnectionFailures() as failures:
                logging.getLogger("kafka.net.connection").error(
                    "Connection lost: KafkaConnectionError: [SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad "
                    "certificate (_ssl.c:2580)")
            assert "BAD_CERTIFICATE" not in caplog.text
            assert failures.cause is not None and "client certificate" in failures.cause[0]
            assert kafka_log.level == logging.CRITICAL and kafka_log.propagate
        finally:
            kafka_log.setLevel(logging.NOTSET)

    def test_no_cause_seen_means_unreachable(self):
        message = unreachable_message(KafkaSettings(bootstrap_servers="127.0.0.1:1"), TimeoutError("x"), None)
        assert message.startswith("cannot reach Kafka at 127.0.0.1:1, PLAINTEXT within 15s")


def test_pki_files_exist(pki):
    assert all(Path(p).is_file() for p in pki.values())
