"""Prometheus export (contract/metrics.md): series names, labels and values, computed from snapshots at scrape time."""

from __future__ import annotations

import logging
import threading

import orjson
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from processors.config import EngineConfig
from processors.engine import Engine
from streams.exporter import EngineCollector, exposition
from streams.runner import Batch, EmbeddedRunner

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
M, H = 60_000, 3_600_000

STREAM_LABELS = {"account", "platform"}
WINDOW_LABELS = {"account", "platform", "window"}
CONTRACT_LABELS = {
    "engagewatch_audience_followers": STREAM_LABELS,
    "engagewatch_active_followers": WINDOW_LABELS,
    "engagewatch_engaged_actors": WINDOW_LABELS,
    "engagewatch_influencer_active_followers": WINDOW_LABELS,
    "engagewatch_active_follower_ratio": WINDOW_LABELS,
    "engagewatch_campaign_engaged_actors": WINDOW_LABELS | {"campaign"},
    "engagewatch_new_followers": STREAM_LABELS,
    "engagewatch_new_followers_activated": STREAM_LABELS,
    "engagewatch_engagements_total": STREAM_LABELS | {"type"},
    "engagewatch_events_total": {"outcome"},
    "engagewatch_dead_letters_total": {"reason"},
}


def rec(ident: str, minute: int, type_: str = "like", actor: str | None = "bob", **fields) -> bytes:
    r = {"id": ident, "ts": T0 + minute * M, "platform": "x", "account": "acme", "type": type_}
    if actor is not None:
        r["actor"] = actor
    r.update(fields)
    return orjson.dumps(r)


# An audience of 100, bob follows then likes (reach 50 000, campaign bf; sent twice), carol comments as a
# non-follower, dave's like is late, erin views, frank unfollows then likes, one record is invalid.
SCENARIO = [
    rec("a1", 0, "audience", None, followers=100),
    rec("a2", 10, "follow"),
    rec("a3", 20, actor_followers=50_000, campaign="bf"),
    rec("a3", 20, actor_followers=50_000, campaign="bf"),
    rec("a4", 21, "comment", "carol", follower=False),
    rec("a5", 5, actor="dave"),
    rec("a6", 90, "view", "erin"),
    rec("a7", 91, "unfollow", "frank"),
    rec("a8", 92, actor="frank"),
    rec("a9", 92, actor="frank", ts="not a time"),
]


def registry_for(*engines: Engine, at: int | None = None) -> CollectorRegistry:
    """A fresh registry whose only collector exports `engines`, evaluated at `at` (default: each event time)."""
    lock = threading.Lock()
    collector = EngineCollector(
        lambda: [e.snapshot(e.event_time() if at is None else at) for e in engines], lock
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def engine_with(lines: list[bytes], config: EngineConfig | None = None) -> Engine:
    engine = Engine(config or EngineConfig())
    engine.feed(lines)
    return engine


@pytest.fixture(scope="module")
def scenario() -> CollectorRegistry:
    return registry_for(engine_with(SCENARIO))


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    if "window" in labels or name in ("engagewatch_audience_followers", "engagewatch_new_followers",
                                      "engagewatch_new_followers_activated", "engagewatch_engagements_total"):
        labels = {"account": "acme", "platform": "x", **labels}
    return registry.get_sample_value(name, labels)


class TestSeries:
    """Every series of the contract under its exact name and labels, with the scenario's values."""

    @pytest.mark.parametrize(
        ("outcome", "count"), [("applied", 7), ("duplicate", 1), ("late", 1), ("invalid", 1)]
    )
    def test_events_total(self, scenario, outcome, count):
        """`engagewatch_events_total{outcome}` counts each outcome."""
        assert value(scenario, "engagewatch_events_total", outcome=outcome) == count

    @pytest.mark.parametrize(("reason", "count"), [("late", 1), ("invalid_ts", 1)])
    def test_dead_letters_total(self, scenario, reason, count):
        """`engagewatch_dead_letters_total{reason}` counts dead letters by reason."""
        assert value(scenario, "engagewatch_dead_letters_total", reason=reason) == count

    @pytest.mark.parametrize(
        ("type_", "count"),
        [("like", 2), ("comment", 1), ("view", 1), ("follow", 1), ("unfollow", 1), ("audience", None)],
    )
    def test_engagements_total(self, scenario, type_, count):
        """`engagewatch_engagements_total{account,platform,type}` counts applied events; never `audience`."""
        assert value(scenario, "engagewatch_engagements_total", type=type_) == count

    def test_audience(self, scenario):
        """`engagewatch_audience_followers`: 100 + bob's follow - frank's unfollow."""
        assert value(scenario, "engagewatch_audience_followers") == 100

    @pytest.mark.parametrize(
        ("name", "window", "expected"),
        [
            ("engagewatch_active_followers", "1h", 0),
            ("engagewatch_active_followers", "24h", 1),
            ("engagewatch_active_followers", "7d", 1),
            ("engagewatch_engaged_actors", "1h", 1),
            ("engagewatch_engaged_actors", "24h", 3),
            ("engagewatch_influencer_active_followers", "24h", 1),
            ("engagewatch_influencer_active_followers", "1h", 0),
            ("engagewatch_active_follower_ratio", "1h", 0.0),
            ("engagewatch_active_follower_ratio", "7d", 0.01),
        ],
    )
    def test_window_gauges(self, scenario, name, window, expected):
        """Per-window gauges carry `account`, `platform` and `window` labels."""
        assert value(scenario, name, window=window) == pytest.approx(expected)

    @pytest.mark.parametrize(("window", "expected"), [("1h", 0), ("24h", 1), ("7d", 1)])
    def test_campaign(self, scenario, window, expected):
        """`engagewatch_campaign_engaged_actors` carries the `campaign` label as well."""
        assert value(scenario, "engagewatch_campaign_engaged_actors", window=window, campaign="bf") == expected

    def test_cohort(self, scenario):
        """`engagewatch_new_followers` and `engagewatch_new_followers_activated` per stream."""
        assert value(scenario, "engagewatch_new_followers") == 1
        assert value(scenario, "engagewatch_new_followers_activated") == 1

    def test_labels_are_exactly_the_contract_labels(self, scenario):
        """Each contract series carries exactly the labels the contract lists, no more."""
        found = {}
        for family in scenario.collect():
            for sample in family.samples:
                if sample.name in CONTRACT_LABELS:
                    found.setdefault(sample.name, set()).add(frozenset(sample.labels))
        assert set(found) == set(CONTRACT_LABELS)
        for name, label_sets in found.items():
            assert label_sets == {frozenset(CONTRACT_LABELS[name])}, name

    def test_types(self):
        """Counters are exposed as counters (with `_total`), gauges as gauges."""
        text = exposition(EngineCollector(lambda: [engine_with(SCENARIO).snapshot(T0 + 92 * M)], threading.Lock()))
        types = {f.name: f.type for f in text_string_to_metric_families(text.decode())}
        for name in ("engagewatch_engagements", "engagewatch_events", "engagewatch_dead_letters"):
            assert types[name] == "counter"
        for name in ("engagewatch_audience_followers", "engagewatch_active_followers", "engagewatch_engaged_actors",
                     "engagewatch_active_follower_ratio", "engagewatch_new_followers"):
            assert types[name] == "gauge"
        assert b"engagewatch_events_total{outcome=\"applied\"} 7.0" in text


class TestRatioAbsence:
    """`engagewatch_active_follower_ratio` is absent while the audience is 0."""

    @pytest.mark.parametrize(
        "lines",
        [
            pytest.param([rec("1", 0)], id="no audience"),
            pytest.param([rec("0", 0, "audience", None, followers=0), rec("1", 1)], id="audience snapshot 0"),
            pytest.param([rec("0", 0, "audience", None, followers=1), rec("1", 1, "unfollow", "z"), rec("2", 2)],
                         id="unfollowed to 0"),
        ],
    )
    def test_absent(self, lines):
        """No ratio sample at all while the audience is 0, though active followers are exported."""
        registry = registry_for(engine_with(lines))
        for window in ("1h", "24h", "7d"):
            assert value(registry, "engagewatch_active_follower_ratio", window=window) is None
            assert value(registry, "engagewatch_active_followers", window=window) == 1
        assert value(registry, "engagewatch_audience_followers") == 0

    def test_present_again_when_the_audience_grows(self):
        """Once the audience is above 0 the ratio is there."""
        engine = engine_with([rec("1", 0)])
        registry = registry_for(engine)
        assert value(registry, "engagewatch_active_follower_ratio", window="1h") is None
        engine.feed([rec("2", 1, "follow", "amy")])
        assert value(registry, "engagewatch_active_follower_ratio", window="1h") == 1.0


class TestScrapeTime:
    """Values are computed when Prometheus collects, from the engine state at that moment."""

    def test_later_scrape_sees_new_events(self):
        """Events fed between two scrapes show in the second."""
        engine = engine_with([rec("1", 0)])
        registry = registry_for(engine)
        assert value(registry, "engagewatch_events_total", outcome="applied") == 1
        engine.feed([rec("2", 1, actor="amy")])
        assert value(registry, "engagewatch_events_total", outcome="applied") == 2
        assert value(registry, "engagewatch_engaged_actors", window="1h") == 2

    def test_evaluation_time_decays_gauges(self):
        """A later evaluation time (the wall clock) lets idle streams decay; counters stay."""
        engine = engine_with([rec("1", 0)])
        assert value(registry_for(engine, at=T0), "engagewatch_engaged_actors", window="1h") == 1
        later = registry_for(engine, at=T0 + 2 * H)
        assert value(later, "engagewatch_engaged_actors", window="1h") == 0
        assert value(later, "engagewatch_engaged_actors", window="24h") == 1
        assert value(later, "engagewatch_engagements_total", type="like") == 1
        assert later.get_sample_value("engagewatch_evaluation_timestamp_seconds") == (T0 + 2 * H) / 1000

    def test_outcomes_start_at_zero(self):
        """All four outcomes are exported before any record arrives."""
        registry = registry_for(Engine(EngineConfig()), at=0)
        for outcome in ("applied", "duplicate", "late", "invalid"):
            assert registry.get_sample_value("engagewatch_events_total", {"outcome": outcome}) == 0

    def test_engines_with_disjoint_accounts_add_up(self):
        """Counters of several engines (partitions) are summed; each stream appears once."""
        a = engine_with([rec("1", 0)])
        b = engine_with([orjson.dumps({"id": "1", "ts": T0, "platform": "x", "account": "beta", "type": "like",
                                       "actor": "z"}), b"oops"])
        registry = registry_for(a, b)
        assert registry.get_sample_value("engagewatch_events_total", {"outcome": "applied"}) == 2
        assert registry.get_sample_value("engagewatch_events_total", {"outcome": "invalid"}) == 1
        assert registry.get_sample_value("engagewatch_dead_letters_total", {"reason": "bad_json"}) == 1
        assert registry.get_sample_value(
            "engagewatch_engaged_actors", {"account": "beta", "platform": "x", "window": "1h"}) == 1
        assert registry.get_sample_value("engagewatch_streams") == 2

    def test_time_gauges_of_several_engines_are_the_latest(self):
        """The watermark and the evaluation time are the latest over the engines; stream times keep their ms."""
        later = T0 + 90_250
        a = engine_with([rec("1", 0)])
        b = engine_with([orjson.dumps({"id": "1", "ts": later, "platform": "x", "account": "beta", "type": "like",
                                       "actor": "z"})])
        for engines in ((a, b), (b, a)):
            registry = registry_for(*engines)
            assert registry.get_sample_value("engagewatch_watermark_timestamp_seconds") == later / 1000
            assert registry.get_sample_value("engagewatch_evaluation_timestamp_seconds") == later / 1000
            assert registry.get_sample_value(
                "engagewatch_stream_last_event_timestamp_seconds", {"account": "beta", "platform": "x"}) == later / 1000


    def test_engines_are_read_under_the_lock_and_families_built_after_it(self):
        """The feeding side waits for a scrape only while snapshots are taken, not while series are formatted."""
        lock = threading.Lock()
        engine = engine_with(SCENARIO)
        seen = []

        def snapshots():
            seen.append(("snapshots", lock.locked()))
            snap = engine.snapshot(engine.event_time())

            class Watched:  # a snapshot that notes whether the lock is held when its streams are read
                def __getattr__(self, name):
                    if name == "streams":
                        seen.append(("families", lock.locked()))
                    return getattr(snap, name)

            return [Watched()]

        def extra():
            seen.append(("extra", lock.locked()))
            return []

        text = exposition(EngineCollector(snapshots, lock, extra=[extra])).decode()
        assert "engagewatch_engaged_actors" in text
        assert seen == [("snapshots", True), ("extra", True), ("families", False)]


class TestBudgets:
    """What happens past a label budget is visible as a counter."""

    def test_stream_overflow_is_counted_and_not_exported(self):
        """Streams past `max_streams` export no series; `engagewatch_label_overflow_total{budget="streams"}` counts."""
        engine = engine_with([rec("1", 0), rec("2", 0, platform="tiktok"), rec("3", 1, platform="tiktok")],
                             EngineConfig(max_streams=1))
        registry = registry_for(engine)
        assert registry.get_sample_value("engagewatch_label_overflow_total", {"budget": "streams"}) == 2
        assert registry.get_sample_value(
            "engagewatch_engaged_actors", {"account": "acme", "platform": "tiktok", "window": "1h"}) is None
        assert value(registry, "engagewatch_engaged_actors", window="1h") == 1

    def test_campaign_overflow_folds_into_other(self):
        """Campaigns past the budget are exported as `campaign="_other"` and counted."""
        engine = engine_with([rec("1", 0, campaign="c1"), rec("2", 0, actor="amy", campaign="c2"),
                              rec("3", 0, actor="ben", campaign="c3")], EngineConfig(max_campaigns_per_account=1))
        registry = registry_for(engine)
        assert value(registry, "engagewatch_campaign_engaged_actors", window="1h", campaign="c1") == 1
        assert value(registry, "engagewatch_campaign_engaged_actors", window="1h", campaign="_other") == 2
        assert value(registry, "engagewatch_campaign_engaged_actors", window="1h", campaign="c2") is None
        assert registry.get_sample_value("engagewatch_label_overflow_total", {"budget": "campaigns"}) == 2

    def test_passing_a_budget_is_logged_once_naming_its_setting(self, caplog):
        """A batch run has no alerting: the first event past each budget logs a warning, later ones do not."""
        runner = EmbeddedRunner(Engine(EngineConfig(max_streams=1, max_campaigns_per_account=1)), "event")
        with caplog.at_level(logging.WARNING, logger="engagewatch.run"):
            runner.feed(Batch([rec("1", 0, campaign="c1")], 1))
            assert caplog.records == []
            runner.feed(Batch([rec("2", 0, platform="tiktok"), rec("3", 1, campaign="c2")], 2))
            runner.feed(Batch([rec("4", 2, platform="tiktok"), rec("5", 2, campaign="c3")], 4))
        warned = [(r.getMessage(), r.engagewatch_fields) for r in caplog.records]
        assert warned == [
            ("label budget exceeded", {"budget": "streams", "limit": 1, "setting": "ENGAGEWATCH_MAX_STREAMS"}),
            ("label budget exceeded",
             {"budget": "campaigns", "limit": 1, "setting": "ENGAGEWATCH_MAX_CAMPAIGNS_PER_ACCOUNT"}),
        ]

    def test_a_worker_warns_once_for_all_its_partitions(self, caplog):
        """Budgets apply per partition's engine; the worker's log says so once, whichever partition passes first."""
        from streams.faust_app import PartitionState, WorkerRuntime
        from streams.settings import load_settings

        worker = WorkerRuntime(load_settings(max_streams=1), "event", detect=False)
        partitions = [PartitionState(Engine(worker.config), -1, -1, 0.0) for _ in range(2)]
        with caplog.at_level(logging.WARNING, logger="engagewatch.worker"):
            for partition, state in enumerate(partitions):
                worker._feed_engine(partition, state, [rec("1", 0), rec("2", 0, platform="tiktok")])
        assert [partition.engine.overflow["streams"] for partition in partitions] == [1, 1]
        assert [(r.getMessage(), r.engagewatch_fields) for r in caplog.records] == [
            ("label budget exceeded", {"budget": "streams", "limit": 1, "setting": "ENGAGEWATCH_MAX_STREAMS"}),
        ]
