"""Creating and describing engagewatch's topics with kafka-python's admin client."""

from __future__ import annotations

from typing import NamedTuple

from streams.kafka_clients import TopicSpec, admin_client, topic_specs
from streams.settings import Settings


class CreateResult(NamedTuple):
    """What `create_topics` did for one topic."""

    spec: TopicSpec
    """The topic as the settings want it."""
    status: str
    """`created`, `exists` or `failed`."""
    detail: str
    """Partitions and configs, or why it failed, or how an existing topic differs."""


def create_topics(settings: Settings) -> list[CreateResult]:
    """Create every topic that does not exist yet; existing topics are reported, never changed."""
    from kafka.errors import TopicAlreadyExistsError

    specs = topic_specs(settings.kafka)
    admin = admin_client(settings)
    try:
        existing = {t["name"]: t for t in admin.describe_topics([s.name for s in specs]) if not t["error_code"]}
        results: list[CreateResult] = []
        wanted = [s for s in specs if s.name not in existing]
        outcome: dict[str, tuple[str, str]] = {}
        if wanted:
            response = admin.create_topics(
                {
                    s.name: {
                        "num_partitions": s.partitions,
                        "replication_factor": s.replication_factor,
                        "configs": s.configs,
                    }
                    for s in wanted
                },
                raise_errors=False,
                wait_for_metadata=True,
            )
            for t in _response_topics(response):
                name, code, message = t
                if code == 0:
                    outcome[name] = ("created", "")
                elif code == TopicAlreadyExistsError.errno:  # created concurrently by someone else
                    outcome[name] = ("exists", "")
                else:
                    outcome[name] = ("failed", message or f"error code {code}")
        for s in specs:
            if s.name in existing:
                have = len(existing[s.name]["partitions"])
                note = f"{have} partitions" + ("" if have == s.partitions else f", settings want {s.partitions}: left as is")
                results.append(CreateResult(s, "exists", note))
            else:
                status, why = outcome.get(s.name, ("failed", "no answer from the broker"))
                detail = why or _describe_spec(s)
                results.append(CreateResult(s, status, detail))
        return results
    finally:
        admin.close()


def _describe_spec(s: TopicSpec) -> str:
    configs = ", ".join(f"{k}={v}" for k, v in s.configs.items())
    return f"{s.partitions} partitions, replication {s.replication_factor}, {configs}"


def _response_topics(response) -> list[tuple[str, int, str | None]]:
    """(name, error code, error message) per topic of a CreateTopics response, whatever its shape."""
    if isinstance(response, dict):
        topics = response.get("topics", [])
        out = []
        for t in topics:
            if isinstance(t, dict):
                out.append((t["name"], t.get("error_code", 0), t.get("error_message")))
            else:
                out.append((t[0], t[1], t[2] if len(t) > 2 else None))
        return out
    return [(t.name, t.error_code, getattr(t, "error_message", None)) for t in response.topics]


def describe_topics(settings: Settings) -> list[str]:
    """One line per engagewatch topic: partitions, replication, and the configs set on it."""
    from kafka.admin import ConfigResource, ConfigResourceType

    specs = topic_specs(settings.kafka)
    admin = admin_client(settings)
    try:
        meta = {t["name"]: t for t in admin.describe_topics([s.name for s in specs])}
        present = [s for s in specs if s.name in meta and not meta[s.name]["error_code"]]
        configs: dict[str, dict[str, str]] = {}
        if present:
            resources = [ConfigResource(ConfigResourceType.TOPIC, s.name) for s in present]
            described = admin.describe_configs(resources)
            configs = _configs_by_topic(described)
        lines = []
        for s in specs:
            if s not in present:
                lines.append(f"{s.name}  ({s.role}): missing; run `engagewatch topics create`")
                continue
            parts = meta[s.name]["partitions"]
            replication = max((len(p.get("replica_nodes", p.get("replicas", ()))) for p in parts), default=0)
            shown = ", ".join(f"{k}={v}" for k, v in sorted(configs.get(s.name, {}).items()))
            lines.append(f"{s.name}  ({s.role}): {len(parts)} partitions, replication {replication}, {shown}")
        return lines
    finally:
        admin.close()


def _configs_by_topic(described) -> dict[str, dict[str, str]]:
    """Topic name -> {config: value} for the configs we care about, from describe_configs' answer."""
    interesting = {"cleanup.policy", "retention.ms", "min.compaction.lag.ms", "segment.ms", "max.message.bytes"}
    out: dict[str, dict[str, str]] = {}
    if isinstance(described, dict):
        for name, entries in described.get("topic", {}).items():
            out[name] = {
                k: (v["value"] if isinstance(v, dict) else v) for k, v in entries.items() if k in interesting
            }
        return out
    for response in described:  # older shape: a list of DescribeConfigsResponse
        for result in response.results:
            name, entries = result[3], result[4]
            out[name] = {e[0]: e[1] for e in entries if e[0] in interesting}
    return out
