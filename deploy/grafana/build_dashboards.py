#!/usr/bin/env python3
"""Build the engagewatch Grafana dashboards as JSON into deploy/grafana/dashboards/.

    python deploy/grafana/build_dashboards.py          # rewrite the JSON files
    python deploy/grafana/build_dashboards.py --check  # exit 1 if a committed file differs from what is built

Plain dictionaries, no Grafana library. Every panel query is a plain PromQL `expr` that Prometheus' HTTP API can
evaluate once `$account`, `$platform`, `$window` and `$__rate_interval` are substituted; the *Audience quality*
dashboard reads the recording rules of deploy/prometheus/rules/engagewatch-recording.yml.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent / "dashboards"

DATASOURCE_UID = "engagewatch-prometheus"  # deploy/grafana/provisioning/datasources/engagewatch.yml
DS = {"type": "prometheus", "uid": DATASOURCE_UID}

# Metrics that only a Kafka worker exports (not `engagewatch demo` / `engagewatch run`): the one exemption of
# tests/test_dashboards_live.py, which checks every other panel query for data against a live demo. (The
# dead-letter series appear with the demo's dirty records; the label-overflow counters are always exported, at 0;
# ALERTS only feeds the Account dashboard's annotation, whose rules need minutes of `for`.)
WORKER_ONLY_METRICS = frozenset({"engagewatch_consumer_lag", "engagewatch_worker_partitions"})

STREAM = 'account="$account", platform="$platform"'
STREAM_WINDOW = 'account="$account", platform="$platform", window="$window"'

DECAY_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "ok", "color": "green", "index": 0},
            "1": {"text": "warning", "color": "orange", "index": 1},
            "2": {"text": "critical", "color": "red", "index": 2},
        },
    }
]
DECAY_THRESHOLDS = {
    "mode": "absolute",
    "steps": [{"color": "green", "value": None}, {"color": "orange", "value": 1}, {"color": "red", "value": 2}],
}


# --------------------------------------------------------------------------------------------------- building blocks


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False, table: bool = False) -> dict:
    t = {"refId": ref, "datasource": DS, "expr": expr, "legendFormat": legend, "range": not instant, "instant": instant}
    if table:
        t["format"] = "table"
    return t


def query_variable(name: str, label: str, query: str) -> dict:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": query,
        "definition": query,
        "refresh": 2,  # on time range change
        "sort": 1,
        "multi": False,
        "includeAll": False,
        "hide": 0,
        "current": {},
        "options": [],
    }


class Layout:
    """Hands out panel ids and grid positions, left to right, top to bottom, on Grafana's 24-column grid."""

    def __init__(self) -> None:
        self.next_id = 1
        self.x = 0
        self.y = 0
        self.row_height = 0

    def place(self, w: int, h: int) -> tuple[int, dict]:
        if self.x + w > 24:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_height = max(self.row_height, h)
        panel_id, self.next_id = self.next_id, self.next_id + 1
        return panel_id, pos


def panel(layout: Layout, kind: str, title: str, description: str, targets: list[dict], *, w: int = 12, h: int = 8,
          unit: str | None = None, decimals: int | None = None, min_value: float | None = None,
          max_value: float | None = None, mappings: list | None = None, thresholds: dict | None = None,
          overrides: list | None = None, options: dict | None = None, transformations: list | None = None) -> dict:
    panel_id, pos = layout.place(w, h)
    defaults: dict = {}
    if unit:
        defaults["unit"] = unit
    if decimals is not None:
        defaults["decimals"] = decimals
    if min_value is not None:
        defaults["min"] = min_value
    if max_value is not None:
        defaults["max"] = max_value
    if mappings:
        defaults["mappings"] = mappings
    if thresholds:
        defaults["thresholds"] = thresholds
        defaults["color"] = {"mode": "thresholds"}
    if kind == "timeseries":
        defaults.setdefault("custom", {"lineWidth": 1, "fillOpacity": 10, "showPoints": "never", "spanNulls": False})
    p = {
        "id": panel_id,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": pos,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options
        or (
            {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
             "tooltip": {"mode": "multi", "sort": "desc"}}
            if kind == "timeseries"
            else {}
        ),
    }
    if transformations:
        p["transformations"] = transformations
    return p


def dashboard(uid: str, title: str, description: str, variables: list[dict], panels: list[dict],
              annotations: list[dict] = (), time_from: str = "now-24h") -> dict:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["engagewatch"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": time_from, "to": "now"},
        "links": [{"type": "dashboards", "tags": ["engagewatch"], "asDropdown": True, "title": "engagewatch",
                   "includeVars": False, "keepTime": True}],
        "templating": {"list": variables},
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                },
                *annotations,
            ]
        },
        "panels": panels,
    }


# ------------------------------------------------------------------------------------------------------ dashboards


def audience_quality() -> dict:
    """Every account at a glance: ratios, audience, activation, influencers, decay."""
    lay = Layout()
    window = '{window="$window"}'
    panels = [
        panel(lay, "timeseries", "Active-follower ratio by account ($window)",
              "Active followers over the window / audience, summed over the account's platforms.",
              [target(f"account_window:engagewatch_active_followers_per_audience_followers:ratio{window}",
                      "{{account}}")],
              unit="percentunit", min_value=0),
        panel(lay, "table", "Active-follower ratio per window",
              "Current ratio of every account for every window (rows: accounts, columns: windows).",
              [target("account_window:engagewatch_active_followers_per_audience_followers:ratio",
                      instant=True, table=True)],
              unit="percentunit", decimals=2,
              transformations=[{"id": "groupingToMatrix",
                                "options": {"columnField": "window", "rowField": "account", "valueField": "Value"}}],
              options={"showHeader": True, "cellHeight": "sm"}),
        panel(lay, "timeseries", "Audience by account",
              "Followers summed over the account's platforms (latest snapshot plus net follows since).",
              [target("account:engagewatch_audience_followers:sum", "{{account}}")],
              unit="short", min_value=0, w=8),
        panel(lay, "timeseries", "New-follower activation by account",
              "Share of the new-follower cohort that engaged since following (activated / new followers).",
              [target("account:engagewatch_new_followers_activated_per_new_followers:ratio", "{{account}}")],
              unit="percentunit", min_value=0, max_value=1, w=8),
        panel(lay, "timeseries", "Influencer share of active followers ($window)",
              "Share of the active followers whose own follower count reaches the influencer threshold.",
              [target(f"account_window:engagewatch_influencer_active_followers_per_active_followers:ratio{window}",
                      "{{account}}")],
              unit="percentunit", min_value=0, max_value=1, w=8),
        panel(lay, "state-timeline", "Decay state by stream (worst window)",
              "The decay detector's state of each stream, the worst over the windows it tests (1h and 24h by "
              "default; it has no decay test for the other windows): ok, warning, critical.",
              [target("max by (account, platform) (engagewatch_decay_state)", "{{account}} / {{platform}}")],
              mappings=DECAY_MAPPINGS, thresholds=DECAY_THRESHOLDS, w=14, h=10,
              options={"showValue": "never", "mergeValues": True, "rowHeight": 0.8,
                       "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}),
        panel(lay, "bargauge", "Streams decaying most ($window)",
              "Top 10 streams by how far their ratio is below its baseline (0.25 = 25 % below).",
              [target("topk(10, account_platform_window:engagewatch_active_follower_ratio:drop_vs_baseline"
                      f"{window})", "{{account}} / {{platform}}", instant=True)],
              unit="percentunit", min_value=0, max_value=1, w=10, h=10,
              thresholds={"mode": "absolute", "steps": [{"color": "green", "value": None},
                                                       {"color": "orange", "value": 0.2},
                                                       {"color": "red", "value": 0.5}]},
              options={"orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True,
                       "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}),
    ]
    variables = [query_variable("window", "Window", "label_values(engagewatch_active_follower_ratio, window)")]
    return dashboard("engagewatch-audience-quality", "engagewatch / Audience quality",
                     "Audience quality of every monitored account: active-follower ratios, activation, decay.",
                     variables, panels)


def account() -> dict:
    """One stream in depth: ratio against its baseline, engagement mix, campaigns, follows."""
    lay = Layout()
    panels = [
        panel(lay, "timeseries", "Active-follower ratio vs baseline ($window)",
              "The stream's ratio with the decay detector's baseline; the band between them is shaded.",
              [target(f"max(engagewatch_active_follower_ratio{{{STREAM_WINDOW}}})", "ratio", "A"),
               target(f"max(engagewatch_active_follower_ratio_baseline{{{STREAM_WINDOW}}})", "baseline", "B")],
              unit="percentunit", min_value=0, w=18,
              overrides=[
                  {"matcher": {"id": "byName", "options": "ratio"},
                   "properties": [{"id": "custom.fillBelowTo", "value": "baseline"},
                                  {"id": "custom.lineWidth", "value": 2}]},
                  {"matcher": {"id": "byName", "options": "baseline"},
                   "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                                  {"id": "custom.fillOpacity", "value": 0},
                                  {"id": "color", "value": {"mode": "fixed", "fixedColor": "text"}}]},
              ]),
        panel(lay, "stat", "Decay state by window",
              "The decay detector's current state for this stream, per window it tests (1h and 24h by default; "
              "it has no decay test for the other windows).",
              [target(f"max by (window) (engagewatch_decay_state{{{STREAM}}})", "{{window}}")],
              mappings=DECAY_MAPPINGS, thresholds=DECAY_THRESHOLDS, w=6,
              options={"colorMode": "background", "graphMode": "none", "textMode": "value_and_name",
                       "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}),
        panel(lay, "timeseries", "Audience, active followers and engaged actors ($window)",
              "Followers, followers who engaged in the window, and every actor who engaged in the window.",
              [target(f"sum(engagewatch_audience_followers{{{STREAM}}})", "audience", "A"),
               target(f"sum(engagewatch_active_followers{{{STREAM_WINDOW}}})", "active followers", "B"),
               target(f"sum(engagewatch_engaged_actors{{{STREAM_WINDOW}}})", "engaged actors", "C"),
               target(f"sum(engagewatch_influencer_active_followers{{{STREAM_WINDOW}}})", "influencers", "D")],
              unit="short", min_value=0),
        panel(lay, "timeseries", "Engagements by type",
              "Applied engaging and passive events per second, by type.",
              [target("sum by (type) (rate(engagewatch_engagements_total"
                      f'{{{STREAM}, type!~"follow|unfollow"}}[$__rate_interval]))', "{{type}}")],
              unit="ops", min_value=0),
        panel(lay, "timeseries", "Campaign engaged actors ($window)",
              "Distinct actors who engaged with each campaign's tagged events in the window.",
              [target(f"sum by (campaign) (engagewatch_campaign_engaged_actors{{{STREAM_WINDOW}}})", "{{campaign}}")],
              unit="short", min_value=0),
        panel(lay, "timeseries", "Follows vs unfollows",
              "Follow and unfollow events per second.",
              [target("sum by (type) (rate(engagewatch_engagements_total"
                      f'{{{STREAM}, type=~"follow|unfollow"}}[$__rate_interval]))', "{{type}}")],
              unit="ops", min_value=0,
              overrides=[{"matcher": {"id": "byName", "options": "unfollow"},
                          "properties": [{"id": "custom.transform", "value": "negative-Y"},
                                         {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}}]}]),
        panel(lay, "timeseries", "New-follower activation",
              "Cohort of new followers, those who engaged since following, and the activated share.",
              [target(f"sum(engagewatch_new_followers{{{STREAM}}})", "new followers", "A"),
               target(f"sum(engagewatch_new_followers_activated{{{STREAM}}})", "activated", "B"),
               target(f"sum(engagewatch_new_followers_activated{{{STREAM}}})"
                      f" / (sum(engagewatch_new_followers{{{STREAM}}}) > 0)", "activated share", "C")],
              unit="short", min_value=0,
              overrides=[{"matcher": {"id": "byName", "options": "activated share"},
                          "properties": [{"id": "unit", "value": "percentunit"},
                                         {"id": "custom.axisPlacement", "value": "right"},
                                         {"id": "max", "value": 1}]}]),
        panel(lay, "stat", "Time since the last event",
              "How long ago the newest applied event of this stream happened (event time).",
              [target(f"time() - max(engagewatch_stream_last_event_timestamp_seconds{{{STREAM}}})", "age")],
              unit="s", w=12,
              thresholds={"mode": "absolute", "steps": [{"color": "green", "value": None},
                                                       {"color": "orange", "value": 3600},
                                                       {"color": "red", "value": 21600}]},
              options={"colorMode": "value", "graphMode": "area", "textMode": "value",
                       "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}),
    ]
    variables = [
        query_variable("account", "Account", "label_values(engagewatch_audience_followers, account)"),
        query_variable("platform", "Platform",
                       'label_values(engagewatch_audience_followers{account="$account"}, platform)'),
        query_variable("window", "Window",
                       'label_values(engagewatch_active_followers{account="$account", platform="$platform"}, window)'),
    ]
    alerts = {
        "name": "Alerts",
        "datasource": DS,
        "enable": True,
        "hide": False,
        "iconColor": "red",
        "expr": 'ALERTS{alertstate="firing", account="$account", platform="$platform"}',
        "step": "60s",
        "titleFormat": "{{alertname}}",
        "textFormat": "{{severity}} ({{window}})",
        "tagKeys": "severity,window",
        "useValueForTime": False,
    }
    return dashboard("engagewatch-account", "engagewatch / Account",
                     "One account on one platform: ratio against its baseline, engagement mix, campaigns, follows.",
                     variables, panels, annotations=[alerts], time_from="now-7d")


def pipeline() -> dict:
    """The workers themselves: throughput, rejects, Kafka lag, event-time delay, scrape health."""
    lay = Layout()
    panels = [
        panel(lay, "stat", "Workers up", "Scraped engagewatch targets that answer / all of them.",
              [target('sum(up{job="engagewatch"})', "up", "A"), target('count(up{job="engagewatch"})', "targets", "B")],
              unit="short", w=6, h=4,
              options={"colorMode": "value", "graphMode": "none", "textMode": "value_and_name",
                       "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}),
        panel(lay, "stat", "Streams tracked", "(account, platform) streams held by the workers.",
              [target("sum(engagewatch_streams)", "streams")], unit="short", w=6, h=4,
              options={"colorMode": "value", "graphMode": "area", "textMode": "value",
                       "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}),
        panel(lay, "timeseries", "Target health", "1 when Prometheus scraped the target, 0 when it failed.",
              [target('up{job="engagewatch"}', "{{instance}}")], min_value=0, max_value=1, w=12, h=4),
        panel(lay, "timeseries", "Events by outcome", "Records consumed per second: applied, duplicate, late, invalid.",
              [target("sum by (outcome) (rate(engagewatch_events_total[$__rate_interval]))", "{{outcome}}")],
              unit="ops", min_value=0),
        panel(lay, "timeseries", "Dead letters by reason", "Records sent to the dead-letter sink per second.",
              [target("sum by (reason) (rate(engagewatch_dead_letters_total[$__rate_interval]))", "{{reason}}")],
              unit="ops", min_value=0),
        panel(lay, "timeseries", "Consumer lag", "Messages not yet consumed, per topic partition (Kafka workers).",
              [target("sum by (topic, partition) (engagewatch_consumer_lag)", "{{topic}}[{{partition}}]")],
              unit="short", min_value=0),
        panel(lay, "timeseries", "Watermark delay", "Wall clock minus the largest applied event time, per worker.",
              [target("time() - max by (instance) (engagewatch_watermark_timestamp_seconds)", "{{instance}}")],
              unit="s"),
        panel(lay, "timeseries", "Evaluation delay", "Wall clock minus the evaluation time of the exported gauges.",
              [target("time() - max by (instance) (engagewatch_evaluation_timestamp_seconds)", "{{instance}}")],
              unit="s", min_value=0),
        panel(lay, "timeseries", "Partitions per worker", "Interactions partitions each worker owns.",
              [target("sum by (instance) (engagewatch_worker_partitions)", "{{instance}}")],
              unit="short", min_value=0, decimals=0),
        panel(lay, "timeseries", "Label budget overflow", "Events per second beyond a label budget, by budget.",
              [target("sum by (budget) (rate(engagewatch_label_overflow_total[$__rate_interval]))", "{{budget}}")],
              unit="ops", min_value=0, w=24),
    ]
    return dashboard("engagewatch-pipeline", "engagewatch / Pipeline",
                     "Health of the engagewatch workers: throughput, dead letters, Kafka lag, event-time delay.",
                     [], panels, time_from="now-6h")


DASHBOARDS = {
    "audience-quality.json": audience_quality,
    "account.json": account,
    "pipeline.json": pipeline,
}


def render(build) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    args = parser.parse_args(argv)
    stale = []
    OUT_DIR.mkdir(exist_ok=True)
    for name, build in DASHBOARDS.items():
        path, text = OUT_DIR / name, render(build)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale dashboards (run {Path(__file__).name}): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
