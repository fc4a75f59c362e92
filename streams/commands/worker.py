"""`engagewatch worker`: a Faust worker running the engine on the interactions topic, serving `/metrics`.

Before Faust starts, the cluster is asked (within ENGAGEWATCH_KAFKA__CONNECT_TIMEOUT) for the interactions
topic: an unreachable cluster or a missing topic ends the command with a clear message, not a hang.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time

HELP = "run a Faust worker on the interactions topic"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from streams.arguments import port_number
    from streams.settings import add_engine_arguments

    p.add_argument("--clock", choices=("wall", "event"), default="wall",
                   help="evaluation time: now (wall, default) or the largest applied ts (event, for replays)")
    p.add_argument("--metrics-port", type=port_number, metavar="N",
                   help="serve /metrics on this port (ENGAGEWATCH_METRICS_PORT; 0 disables)")
    p.add_argument("--bootstrap-servers", help="host:port[,host:port] (ENGAGEWATCH_KAFKA__BOOTSTRAP_SERVERS)")
    p.add_argument("--store", help="checkpoint table store: memory:// or rocksdb:// (ENGAGEWATCH_KAFKA__STORE)")
    p.add_argument("--batch-size", type=int, help="records per batch (ENGAGEWATCH_KAFKA__BATCH_SIZE)")
    p.add_argument("--checkpoint-interval", help="e.g. 10s (ENGAGEWATCH_KAFKA__CHECKPOINT_INTERVAL)")
    p.add_argument("--session-timeout", metavar="DUR",
                   help="consumer group session timeout, 6s-5m, e.g. 10s: how soon a dead worker's partitions "
                        "move (ENGAGEWATCH_KAFKA__SESSION_TIMEOUT; default: Faust's 60s)")
    p.add_argument("--no-detect", action="store_true", help="do not run the decay detectors")
    add_engine_arguments(p)


def main(args: argparse.Namespace) -> int:
    from streams import logs
    from processors.config import parse_duration
    from streams.kafka_clients import Unreachable, describe_connection
    from streams.settings import SettingsError, env_name, settings_from_args

    settings = settings_from_args(args)
    kafka_overrides = {
        "bootstrap_servers": args.bootstrap_servers,
        "store": args.store,
        "batch_size": args.batch_size,
        "checkpoint_interval": args.checkpoint_interval,
        "session_timeout": args.session_timeout,
    }
    kafka_overrides = {k: v for k, v in kafka_overrides.items() if v is not None}
    if kafka_overrides:
        settings = settings_from_args(args, kafka=settings.kafka.model_dump() | kafka_overrides)
    data_dir = settings.kafka.data_dir
    try:  # before reaching for the broker: a local mistake is the quicker one to report
        os.makedirs(data_dir, exist_ok=True)
        if not os.access(data_dir, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as e:
        setting = env_name("kafka.data_dir")
        raise SettingsError(f"bad setting {setting}: cannot write {data_dir}: {e.strerror}") from None
    logs.configure(settings.log_level, settings.log_format)
    log = logs.get("engagewatch.worker")

    kafka_log = logging.getLogger("kafka")
    kafka_log.setLevel(logging.CRITICAL)  # the message below says it all; kafka-python would log every retry
    try:
        partitions = interactions_partitions(settings)
        if args.clock == "event":
            ensure_event_clock_topic(settings)
    except Unreachable as e:
        print(f"engagewatch worker: {e}", file=sys.stderr)
        return 1
    except Misconfigured as e:
        print(f"engagewatch worker: {e}", file=sys.stderr)
        return 2
    finally:
        kafka_log.setLevel(logging.WARNING)
    if settings.kafka.store.startswith("rocksdb"):
        try:
            import rocksdict  # noqa: F401
        except ImportError:
            print("engagewatch worker: the rocksdb:// store needs rocksdict: pip install 'engagewatch[rocksdb]'",
                  file=sys.stderr)
            return 2

    import faust

    from streams.exporter import serve
    from streams.faust_app import WorkerRuntime, build_app

    runtime = WorkerRuntime(settings, args.clock, detect=not args.no_detect)
    session_timeout = settings.kafka.session_timeout
    app = build_app(runtime, partitions, parse_duration(session_timeout, "") / 1000 if session_timeout else None)
    port = settings.metrics_port if args.metrics_port is None else args.metrics_port
    server = None
    if port:
        server = serve(runtime.collector, settings.metrics_host, port,
                       settings.metrics_tls_certfile, settings.metrics_tls_keyfile)
    log.info("worker starting", kafka=describe_connection(settings.kafka), topic=settings.kafka.interactions_topic,
             partitions=partitions, clock=args.clock, store=settings.kafka.store,
             metrics=f"{settings.metrics_host}:{port}" if port else None)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True, override_logging=False,
                          redirect_stdouts=False)
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as e:
        code = int(e.code or 0)
    finally:
        if runtime.failure is not None:
            code = code or 1
        if server is not None:
            server.shutdown()
    deadline = time.monotonic() + 10  # time for a thread that is finishing anyway
    for t in threading.enumerate():
        if t is not threading.main_thread() and not t.daemon:
            t.join(max(0.0, deadline - time.monotonic()))
    lingering = [t.name for t in threading.enumerate()
                 if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if lingering:
        # A service Faust failed to stop keeps its thread, and the interpreter would wait for it forever.
        log.error("threads still running after the worker stopped; exiting anyway", threads=lingering)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 1)
    return code


def interactions_partitions(settings) -> int:
    """Partition count of the interactions topic. `Unreachable` when the cluster or the topic is not there;
    `Misconfigured` when the topic's checkpoint changelog has another count.

    Checkpoint i is the state of interactions partition i, so the counts must be equal. Faust would only find out
    when it first writes a checkpoint, and then fail on every write.
    """
    from streams.kafka_clients import Unreachable, admin_client, changelog_topic

    topic, changelog = settings.kafka.interactions_topic, changelog_topic(settings.kafka)
    admin = admin_client(settings)
    try:
        meta = admin.describe_topics([topic, changelog])
    finally:
        admin.close()
    counts = {t["name"]: len(t["partitions"]) for t in meta if not t["error_code"]}
    if topic not in counts:
        raise Unreachable(f"topic {topic} does not exist on {settings.kafka.bootstrap_servers}; "
                          "run `engagewatch topics create`")
    if counts.get(changelog, counts[topic]) != counts[topic]:
        raise Misconfigured(
            f"topic {topic} has {counts[topic]} partitions but its checkpoint changelog {changelog} has "
            f"{counts[changelog]}: the checkpoints of ENGAGEWATCH_KAFKA__APP_ID={settings.kafka.app_id} no longer "
            "fit the topic. Use a new APP_ID on a topic whose partition count stays fixed (docs/operations.md, "
            "More partitions)")
    return counts[topic]


class Misconfigured(Exception):
    """The cluster's topics cannot serve this worker as they are."""


def ensure_event_clock_topic(settings) -> None:
    """Create the event-clock topic when it is missing (clusters set up before it existed); never change it."""
    from kafka.errors import TopicAlreadyExistsError

    from streams.kafka_clients import Unreachable, admin_client, topic_specs

    spec = next(s for s in topic_specs(settings.kafka) if s.role == "event-clock")
    admin = admin_client(settings)
    try:
        if any(t["name"] == spec.name and not t["error_code"] for t in admin.describe_topics([spec.name])):
            return
        try:
            admin.create_topics({spec.name: {"num_partitions": spec.partitions,
                                             "replication_factor": spec.replication_factor,
                                             "configs": spec.configs}}, wait_for_metadata=True)
        except TopicAlreadyExistsError:
            pass
        except Exception as e:  # noqa: BLE001 - e.g. not authorised: say what to do
            raise Unreachable(f"cannot create topic {spec.name} ({type(e).__name__}: {e}); "
                              "run `engagewatch topics create`") from None
    finally:
        admin.close()
