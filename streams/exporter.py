"""Prometheus export: metric families computed from engine snapshots when Prometheus scrapes.

Values are derived at collection time from the engines' state (one snapshot per engine per scrape) instead
of a `.labels().set()` per event, which would cost more than decoding the event.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from processors.config import EngineConfig
from processors.engine import BUDGETS, OUTCOMES
from processors.snapshot import Snapshot
from streams import logs
from streams.settings import SettingsError, env_name

STREAM = ["account", "platform"]
STREAM_WINDOW = ["account", "platform", "window"]

FamilySource = Callable[[], Iterable[Metric]]


def snapshot_families(snapshots: list[Snapshot]) -> Iterator[Metric]:
    """The contract's series, and pipeline gauges, for snapshots of engines with disjoint accounts."""
    audience = GaugeMetricFamily(
        "engagewatch_audience_followers", "Followers of the stream: latest snapshot plus net follows since.", labels=STREAM
    )
    active = GaugeMetricFamily(
        "engagewatch_active_followers",
        "Distinct actors who engaged in the window while following the account.",
        labels=STREAM_WINDOW,
    )
    engaged = GaugeMetricFamily(
        "engagewatch_engaged_actors", "Distinct actors who engaged in the window, followers or not.", labels=STREAM_WINDOW
    )
    influencers = GaugeMetricFamily(
        "engagewatch_influencer_active_followers",
        "Active followers with at least one such engagement at or above the influencer reach threshold.",
        labels=STREAM_WINDOW,
    )
    ratio = GaugeMetricFamily(
        "engagewatch_active_follower_ratio",
        "Active followers over audience followers; absent while the audience is 0.",
        labels=STREAM_WINDOW,
    )
    campaigns = GaugeMetricFamily(
        "engagewatch_campaign_engaged_actors",
        "Distinct actors who engaged in the window with events tagged with the campaign.",
        labels=STREAM_WINDOW + ["campaign"],
    )
    new_followers = GaugeMetricFamily(
        "engagewatch_new_followers",
        "Actors whose latest follow/unfollow is a follow within the cohort window.",
        labels=STREAM,
    )
    activated = GaugeMetricFamily(
        "engagewatch_new_followers_activated",
        "New followers who engaged at or after their follow.",
        labels=STREAM,
    )
    engagements = CounterMetricFamily(
        "engagewatch_engagements", "Applied events by type (every type but audience).", labels=STREAM + ["type"]
    )
    last_event = GaugeMetricFamily(
        "engagewatch_stream_last_event_timestamp_seconds", "Largest applied event time of the stream.", labels=STREAM
    )
    actors = GaugeMetricFamily(
        "engagewatch_stream_actors", "Actors held in the stream's state (a measure of memory).", labels=STREAM
    )
    outcomes = dict.fromkeys(OUTCOMES, 0)
    dead: dict[str, int] = {}
    overflow: dict[str, int] = {}
    watermark = None
    evaluated = None
    stream_count = 0

    for snap in snapshots:
        windows = snap.windows
        evaluated = snap.at_ms if evaluated is None else max(evaluated, snap.at_ms)
        if snap.watermark_ms is not None:
            watermark = snap.watermark_ms if watermark is None else max(watermark, snap.watermark_ms)
        for k, v in snap.outcomes.items():
            outcomes[k] += v
        for k, v in snap.dead_letters.items():
            dead[k] = dead.get(k, 0) + v
        for k, v in snap.overflow.items():
            overflow[k] = overflow.get(k, 0) + v
        for s in snap.streams:
            stream_count += 1
            key = [s.account, s.platform]
            audience.add_metric(key, s.audience_followers)
            for w, label in enumerate(windows):
                wkey = key + [label]
                active.add_metric(wkey, s.active_followers[w])
                engaged.add_metric(wkey, s.engaged_actors[w])
                influencers.add_metric(wkey, s.influencer_active_followers[w])
                if s.audience_followers:
                    ratio.add_metric(wkey, s.active_followers[w] / s.audience_followers)
                for campaign, counts in s.campaign_engaged_actors.items():
                    campaigns.add_metric(wkey + [campaign], counts[w])
            new_followers.add_metric(key, s.new_followers)
            activated.add_metric(key, s.new_followers_activated)
            for type_name, n in s.engagements.items():
                engagements.add_metric(key + [type_name], n)
            if s.last_ts is not None:
                last_event.add_metric(key, s.last_ts / 1000)
            actors.add_metric(key, s.actors)

    yield from (audience, active, engaged, influencers, ratio, campaigns, new_followers, activated, engagements)
    yield from (last_event, actors)

    events = CounterMetricFamily("engagewatch_events", "Records by outcome.", labels=["outcome"])
    for outcome, n in outcomes.items():
        events.add_metric([outcome], n)
    yield events
    dead_letters = CounterMetricFamily("engagewatch_dead_letters", "Records not applied, by reason.", labels=["reason"])
    for reason, n in sorted(dead.items()):
        dead_letters.add_metric([reason], n)
    yield dead_letters
    overflows = CounterMetricFamily(
        "engagewatch_label_overflow",
        "Events beyond a label budget: `streams` are not tracked, `campaigns` fold into campaign=\"_other\".",
        labels=["budget"],
    )
    for budget, n in sorted(overflow.items()):
        overflows.add_metric([budget], n)
    yield overflows
    yield GaugeMetricFamily("engagewatch_streams", "Streams tracked.", value=stream_count)
    if watermark is not None:
        yield GaugeMetricFamily(
            "engagewatch_watermark_timestamp_seconds", "Largest applied event time.", value=watermark / 1000
        )
    if evaluated is not None:
        yield GaugeMetricFamily(
            "engagewatch_evaluation_timestamp_seconds", "Evaluation time T of the exported gauges.", value=evaluated / 1000
        )


class EngineCollector(Collector):
    """Collects the engines' families at scrape time, plus any extra family sources (pipeline, detectors).

    `snapshots` and the extra sources are called under `lock`, the same lock the runtime holds while feeding the
    engines; the families are built from the snapshots after it is released, which halves the time the runtime
    waits for a scrape (0.22 s instead of 0.43 s on 6 000 streams).
    """

    def __init__(self, snapshots: Callable[[], list[Snapshot]], lock: threading.Lock, extra: Iterable[FamilySource] = ()):
        self._snapshots = snapshots
        self._lock = lock
        self._extra = list(extra)

    def add_source(self, source: FamilySource) -> None:
        self._extra.append(source)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            snaps = self._snapshots()
            extra = [family for source in self._extra for family in source()]
        return iter([*snapshot_families(snaps), *extra])


def exposition(collector: Collector) -> bytes:
    """The Prometheus text exposition of one collector, as `/metrics` would serve it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)


def serve(collector: Collector, host: str, port: int, certfile: str | None = None, keyfile: str | None = None):
    """Serve `/metrics` for `collector` on host:port (TLS when a certificate is given); returns the server.

    A port in use, an address not of this host or a certificate that does not load fails at once with a
    `SettingsError` naming the settings to change.
    """
    import ssl

    from prometheus_client import start_http_server

    tls = f"{env_name('metrics_tls_certfile')} and {env_name('metrics_tls_keyfile')}"
    if bool(certfile) != bool(keyfile):  # the library would serve plain HTTP with only one of them
        raise SettingsError(f"{tls} must be set together")
    if certfile:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
        except OSError as e:  # ssl.SSLError included
            raise SettingsError(f"bad setting {tls}: cannot load the certificate and key: {e.strerror or e}") from None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry, certfile=certfile, keyfile=keyfile)
    except OSError as e:
        raise SettingsError(f"cannot serve /metrics on {host}:{port}: {e.strerror or e}; change "
                            f"{env_name('metrics_port')} (or --metrics-port) or {env_name('metrics_host')}") from None
    return server


class BudgetWarnings:
    """Logs once per budget that an engine went past it, naming the setting that sets it.

    The overflow counter says how many events; this line tells whoever reads the logs (a batch run has no
    alerting) that some series are missing from then on, and which setting to raise.
    """

    def __init__(self, log: logs.Logger, config: EngineConfig) -> None:
        self._log = log
        self._config = config
        self._warned: set[str] = set()

    def check(self, overflow: dict[str, int]) -> None:
        for budget, n in overflow.items():
            if n and budget not in self._warned:
                self._warned.add(budget)
                setting = BUDGETS[budget]
                self._log.warning("label budget exceeded", budget=budget, limit=getattr(self._config, setting),
                                  setting=env_name(setting))
