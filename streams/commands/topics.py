"""`engagewatch topics create|describe`: the interactions, alerts, dead-letter and checkpoint topics.

`create` is idempotent: topics that exist are left alone and reported (with a warning when their partition
count differs from the settings). The checkpoint changelog is compacted; the others delete by retention.
"""

from __future__ import annotations

import argparse
import sys

HELP = "create or describe the Kafka topics"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("create", "describe"))
    parser.add_argument("--bootstrap-servers", help="host:port[,host:port] (ENGAGEWATCH_KAFKA__BOOTSTRAP_SERVERS)")
    parser.add_argument("--partitions", type=int, help="partitions per topic (ENGAGEWATCH_KAFKA__PARTITIONS)")
    parser.add_argument("--replication-factor", type=int, help="replicas (ENGAGEWATCH_KAFKA__REPLICATION_FACTOR)")
    parser.add_argument("--retention", help="retention of the deleting topics, e.g. 7d (ENGAGEWATCH_KAFKA__RETENTION)")


def main(args: argparse.Namespace) -> int:
    from streams.kafka_clients import Unreachable
    from streams.kafka_topics import create_topics, describe_topics
    from streams.settings import load_settings

    base = load_settings()
    overrides = {
        "bootstrap_servers": args.bootstrap_servers,
        "partitions": args.partitions,
        "replication_factor": args.replication_factor,
        "retention": args.retention,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    settings = load_settings(kafka=base.kafka.model_dump() | overrides) if overrides else base
    try:
        if args.action == "create":
            results = create_topics(settings)
            for r in results:
                print(f"{r.status:8} {r.spec.name}  ({r.spec.role}, {r.detail})")
            return 1 if any(r.status == "failed" for r in results) else 0
        for line in describe_topics(settings):
            print(line)
        return 0
    except Unreachable as e:
        print(f"engagewatch topics: {e}", file=sys.stderr)
        return 1
