"""Kafka connection settings turned into client arguments, and the topics engagewatch uses.

One place maps `Settings.kafka` to kafka-python (admin, producer), aiokafka (side readers) and Faust
(credentials), so security works the same for every command. Credentials are passed to the clients and never
logged: `describe_connection` is what may be printed.
"""

from __future__ import annotations

import logging
import re
import ssl
from typing import Any, NamedTuple

from processors.config import parse_duration
from streams.settings import KafkaSettings, Settings, SettingsError, env_name

CHECKPOINT_TABLE = "checkpoints"
"""Name of the worker's Faust table; its changelog topic is `<app_id>-checkpoints-changelog`."""

MAX_CHECKPOINT_BYTES = 64 * 1024 * 1024
"""Largest checkpoint value: the changelog topic's `max.message.bytes` and the worker producer's request size."""

MAX_RECORD_MESSAGE_BYTES = 8 * 1024 * 1024
"""`max.message.bytes` of the interactions and dead-letter topics, and the replay producer's request size.

Far above the contract's 64 KiB record limit, so that an oversized record still reaches the worker (which
dead-letters it as `too_large`, original bytes included) instead of being refused by the broker at the door."""


class TopicSpec(NamedTuple):
    """A topic engagewatch needs, as `engagewatch topics create` makes it."""

    role: str
    """What the topic holds: `interactions`, `alerts`, `dead-letters` or `checkpoints`."""
    name: str
    """Topic name from the settings."""
    partitions: int
    """Partition count; the interactions topic's bounds the worker parallelism."""
    replication_factor: int
    """Replicas per partition."""
    configs: dict[str, str]
    """Topic-level configuration (cleanup policy, retention)."""


def changelog_topic(kafka: KafkaSettings) -> str:
    """Faust's name for the checkpoint table's changelog."""
    return f"{kafka.app_id}-{CHECKPOINT_TABLE}-changelog"


def event_clock_topic(kafka: KafkaSettings) -> str:
    """The compacted topic where each worker publishes, per interactions partition, the largest applied ts."""
    return f"{kafka.app_id}-event-clock"


def topic_specs(kafka: KafkaSettings) -> list[TopicSpec]:
    """Every topic, in creation order. The checkpoint changelog is compacted and co-partitioned with the input."""
    retention_ms = str(_duration_ms(kafka.retention, "kafka.retention"))
    deleting = {"cleanup.policy": "delete", "retention.ms": retention_ms}
    large = deleting | {"max.message.bytes": str(MAX_RECORD_MESSAGE_BYTES)}
    return [
        TopicSpec("interactions", kafka.interactions_topic, kafka.partitions, kafka.replication_factor, large),
        TopicSpec("alerts", kafka.alerts_topic, kafka.partitions, kafka.replication_factor, deleting),
        TopicSpec("dead-letters", kafka.dead_letter_topic, kafka.partitions, kafka.replication_factor, large),
        TopicSpec(
            "checkpoints",
            changelog_topic(kafka),
            kafka.partitions,
            kafka.replication_factor,
            # Compacted: only the latest checkpoint of each partition matters. No time-based deletion. Large
            # values: a partition's whole engine state is one message.
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": "3600000",
             "max.message.bytes": str(MAX_CHECKPOINT_BYTES)},
        ),
        # One partition: every worker reads all of it. Compacted: only each partition's latest value matters.
        TopicSpec("event-clock", event_clock_topic(kafka), 1, kafka.replication_factor,
                  {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": "3600000"}),
    ]


def _duration_ms(text: str, setting: str) -> int:
    from processors.config import ConfigError

    try:
        return parse_duration(text, setting)
    except ConfigError as e:
        raise SettingsError(f"bad setting {env_name(setting)}: {e}") from None


def connect_timeout_ms(kafka: KafkaSettings) -> int:
    return _duration_ms(kafka.connect_timeout, "kafka.connect_timeout")


# -- security -------------------------------------------------------------------------------------------------


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context for SSL and SASL_SSL: server verification by `ssl_cafile` (system CAs without it),
    a client certificate for mutual TLS when `ssl_certfile` is set."""
    if kafka.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=kafka.ssl_cafile)
    except OSError as e:  # ssl.SSLError included
        raise SettingsError(f"bad setting ENGAGEWATCH_KAFKA__SSL_CAFILE: cannot load {kafka.ssl_cafile}: "
                            f"{e.strerror or e}") from None
    ctx.check_hostname = kafka.ssl_check_hostname
    if kafka.ssl_certfile:
        password = kafka.ssl_keyfile_password.get_secret_value() if kafka.ssl_keyfile_password else None
        try:
            ctx.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile, password)
        except OSError as e:
            raise SettingsError(
                "bad setting ENGAGEWATCH_KAFKA__SSL_CERTFILE/ENGAGEWATCH_KAFKA__SSL_KEYFILE"
                f"/ENGAGEWATCH_KAFKA__SSL_KEYFILE_PASSWORD: cannot load the client certificate: {e.strerror or e}"
            ) from None
    return ctx


def _check_sasl(kafka: KafkaSettings) -> None:
    if kafka.security_protocol.startswith("SASL_"):
        if not kafka.sasl_mechanism:
            raise SettingsError("bad setting ENGAGEWATCH_KAFKA__SASL_MECHANISM: required with SASL_* protocols")
        if not kafka.sasl_username or kafka.sasl_password is None:
            raise SettingsError(
                "bad setting ENGAGEWATCH_KAFKA__SASL_USERNAME/ENGAGEWATCH_KAFKA__SASL_PASSWORD: "
                "both are required with SASL_* protocols"
            )


def kafka_python_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection arguments shared by kafka-python's KafkaAdminClient and KafkaProducer."""
    _keep_bytes_read_before_a_close()
    return _client_config(kafka, "cli") | {"bootstrap_timeout_ms": connect_timeout_ms(kafka)}


def aiokafka_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection arguments for aiokafka clients (the worker's side readers)."""
    return _client_config(kafka, "reader")


def _client_config(kafka: KafkaSettings, role: str) -> dict[str, Any]:
    """Address, TLS and SASL arguments, spelled alike by kafka-python and aiokafka."""
    _check_sasl(kafka)
    _quiet_config_logging()
    conf: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers.split(","),
        "security_protocol": kafka.security_protocol,
        "client_id": f"{kafka.app_id}-{role}",
    }
    ctx = ssl_context(kafka)
    if ctx is not None:
        conf["ssl_context"] = ctx
    if kafka.security_protocol.startswith("SASL_"):
        conf["sasl_mechanism"] = kafka.sasl_mechanism
        conf["sasl_plain_username"] = kafka.sasl_username
        conf["sasl_plain_password"] = kafka.sasl_password.get_secret_value()  # type: ignore[union-attr]
    return conf


def faust_credentials(kafka: KafkaSettings) -> Any:
    """`broker_credentials` for the Faust app, or None for PLAINTEXT."""
    import faust

    _check_sasl(kafka)
    _quiet_config_logging()
    ctx = ssl_context(kafka)
    if kafka.security_protocol.startswith("SASL_"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value(),  # type: ignore[union-attr]
            mechanism=kafka.sasl_mechanism,
            ssl_context=ctx,
        )
    if ctx is not None:
        return faust.SSLCredentials(ctx)
    return None


def describe_connection(kafka: KafkaSettings) -> str:
    """Where and how we connect, safe to print: never a password."""
    parts = [kafka.bootstrap_servers, kafka.security_protocol]
    if kafka.sasl_mechanism and kafka.security_protocol.startswith("SASL_"):
        parts.append(f"{kafka.sasl_mechanism} as {kafka.sasl_username}")
    if kafka.security_protocol in ("SSL", "SASL_SSL") and kafka.ssl_certfile:
        parts.append("client certificate")
    return ", ".join(parts)


class _DropSecrets(logging.Filter):
    """Debug records of the Kafka clients that carry credentials: kafka-python's admin client logs its whole
    configuration (SASL password included), and kafka-python and aiokafka log every request they send, the SASL
    authentication request with its bytes (for PLAIN, the password itself)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Starting KafkaAdminClient with configuration"):
            return False
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(type(arg).__name__.startswith("SaslAuthenticateRequest") for arg in args)


_FILTER = _DropSecrets()
_SECRET_LOGGERS = ("kafka.admin.client", "kafka.net.connection", "kafka.conn", "aiokafka.conn")
"""Loggers that write the records `_DropSecrets` drops (a filter acts on its logger's own records only)."""


def _quiet_config_logging() -> None:
    for name in _SECRET_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def _keep_bytes_read_before_a_close() -> None:
    """kafka-python 3.0 drops the bytes of a read that also saw the connection close: when a broker refuses
    credentials it sends the error response and closes, and the client then reports a bare "socket disconnected"
    most of the time, so the message could not say the credentials were refused. Deliver such bytes first; the
    next read sees the close again and reports it as before."""
    try:
        from kafka.net import transport
    except ImportError:  # another kafka-python line: nothing to patch
        return
    for cls in (getattr(transport, "KafkaTCPTransport", None), getattr(transport, "KafkaSSLTransport", None)):
        original = getattr(cls, "_sock_recv", None)
        if original is None or getattr(original, "_engagewatch_keeps_bytes", False):
            continue

        def _sock_recv(self: Any, _original: Any = original) -> tuple[bytes, Any]:
            data, error = _original(self)
            return (data, None) if data and error is not None else (data, error)

        _sock_recv._engagewatch_keeps_bytes = True  # type: ignore[attr-defined]
        cls._sock_recv = _sock_recv  # type: ignore[union-attr]


class Unreachable(RuntimeError):
    """The cluster did not answer within the connect timeout, or refused our credentials."""


class ConnectionFailures(logging.Handler):
    """Remembers why kafka-python's connection attempts failed (it retries them until the timeout and then only
    says it could not bootstrap), so that the error message can say: credentials refused, broker certificate not
    trusted, client certificate missing or refused, or TLS handshake failed. Kept messages name no secret: they
    are kafka-python's own connection errors."""

    _CAUSES = (
        ("SaslAuthenticationFailed", "the broker refused the SASL credentials; check "
         "ENGAGEWATCH_KAFKA__SASL_USERNAME, ENGAGEWATCH_KAFKA__SASL_PASSWORD and ENGAGEWATCH_KAFKA__SASL_MECHANISM"),
        ("UnsupportedSaslMechanism", "the broker does not offer this SASL mechanism; check "
         "ENGAGEWATCH_KAFKA__SASL_MECHANISM"),
        ("CERTIFICATE_VERIFY_FAILED", "the broker's certificate is not trusted; check ENGAGEWATCH_KAFKA__SSL_CAFILE "
         "(and ENGAGEWATCH_KAFKA__SSL_CHECK_HOSTNAME)"),
        ("BAD_CERTIFICATE", "the broker refused the client certificate (missing or not signed by a CA it trusts); "
         "check ENGAGEWATCH_KAFKA__SSL_CERTFILE and ENGAGEWATCH_KAFKA__SSL_KEYFILE"),
        ("CERTIFICATE_REQUIRED", "the broker requires a client certificate; set ENGAGEWATCH_KAFKA__SSL_CERTFILE and "
         "ENGAGEWATCH_KAFKA__SSL_KEYFILE"),
        ("UNKNOWN_CA", "the broker refused the client certificate (not signed by a CA it trusts); check "
         "ENGAGEWATCH_KAFKA__SSL_CERTFILE"),
        ("Handshake failed", "the TLS handshake failed; check ENGAGEWATCH_KAFKA__SECURITY_PROTOCOL and the SSL "
         "settings"),
        ("WRONG_VERSION_NUMBER", "the listener does not speak TLS; check ENGAGEWATCH_KAFKA__SECURITY_PROTOCOL"),
    )

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.cause: tuple[str, str] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed log record must not break the connection attempt
            return
        for marker, advice in self._CAUSES:
            if marker.lower() in text.lower():
                detail = re.sub(r" \(backoff [^)]*\)$", "", re.sub(r"^.*?(failed|lost): ", "", text))
                self.cause = (advice, detail[:300])
                return

    def __enter__(self) -> ConnectionFailures:
        # Records must reach this handler even when the caller silenced kafka-python (the worker sets `kafka` to
        # CRITICAL while it checks the cluster): then lower the level for the attempt, but keep them from
        # propagating to the caller's handlers, so the silence holds.
        logger = logging.getLogger("kafka")
        self._saved = (logger.level, logger.propagate)
        if logger.getEffectiveLevel() > logging.WARNING:
            logger.setLevel(logging.WARNING)
            logger.propagate = False
        logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger("kafka")
        logger.removeHandler(self)
        logger.setLevel(self._saved[0])
        logger.propagate = self._saved[1]


def unreachable_message(kafka: KafkaSettings, error: BaseException, failures: ConnectionFailures | None) -> str:
    """What to say when a client could not connect: the cause seen on the connections when there is one."""
    where = describe_connection(kafka)
    if failures is not None and failures.cause is not None:
        advice, detail = failures.cause
        return f"cannot connect to Kafka at {where}: {advice} ({detail})"
    return (f"cannot reach Kafka at {where} within {kafka.connect_timeout} ({type(error).__name__}: {error}); "
            "check ENGAGEWATCH_KAFKA__BOOTSTRAP_SERVERS and that the broker runs")


def admin_client(settings: Settings):
    """A connected kafka-python admin client; `Unreachable` with a clear message when the cluster is not there
    or refuses the connection (credentials, certificates)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    kafka = settings.kafka
    config = kafka_python_config(kafka)
    with ConnectionFailures() as failures:
        try:
            return KafkaAdminClient(**config)
        except KafkaError as e:
            error = e
    raise Unreachable(unreachable_message(kafka, error, failures))
