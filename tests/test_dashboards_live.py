"""Live proof of the dashboards: a real Prometheus scrapes a running `engagewatch demo`, and every query of every
panel of every Grafana dashboard returns data, for every value its template variables can take.

The stack, all on 127.0.0.1 and free ports:

* `engagewatch demo` at a high simulated speed (7200: a simulated day takes 12 s), with a week of warm-up history
  (so every account has had campaigns and every window is full) and some dirt (so there are dead letters);
* Debian's `prometheus` with a configuration derived from deploy/prometheus/prometheus-local.yml: the
  `engagewatch` job pointed at the demo, 1 s scrape and rule evaluation, the project's rule files loaded (the
  *Audience quality* dashboard reads the recording rules), no Alertmanager.

Template variables are resolved as Grafana does, in order (a variable's query may use the earlier ones):
`label_values(selector, label)` through `/api/v1/label/<label>/values?match[]=selector`. Every combination of
their values is checked. Grafana's built-in interval variables get the values Grafana computes for a 1 s scrape
interval. Each query is polled through `/api/v1/query` until it has returned a non-empty result once, or the
deadline passes; the assertion lists the panels, variable values and queries that never did.

The only exemptions are the metrics a Kafka worker alone exports (`WORKER_ONLY_METRICS` of
deploy/grafana/build_dashboards.py): their queries must still evaluate without error.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prerequisites import tool

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
LOCAL_CONFIG = PROMETHEUS_DIR / "prometheus-local.yml"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
pytestmark = pytest.mark.prometheus

SCRAPE_INTERVAL_S = 1
# Grafana's built-in variables for this scrape interval: $__rate_interval = max(4 x scrape interval,
# $__interval + scrape interval); $__interval is the finest step, the scrape interval.
BUILTIN_VARIABLES = {
    "__interval": f"{SCRAPE_INTERVAL_S}s",
    "__interval_ms": str(SCRAPE_INTERVAL_S * 1000),
    "__rate_interval": f"{4 * SCRAPE_INTERVAL_S}s",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}
DEMO_ARGS = [
    "--speed", "7200",  # simulated seconds per real second: the detectors' ratio baseline needs a simulated day
    "--warmup", "7d",  # every window full, campaigns for every account, replayed in ~2 s
    "--rate", "100",  # events per stream per simulated hour: ~1 800 events/s for the 9 streams
    "--dirt", "0.02",  # dirty records, so that the dead-letter panel has reasons to show
    "--seed", "7",
]
READY_TIMEOUT_S = 30
DATA_TIMEOUT_S = 75  # from Prometheus' readiness; the slowest series (the ratio baseline) comes after ~15 s


def _build_dashboards_module():
    spec = importlib.util.spec_from_file_location("build_dashboards", GRAFANA / "build_dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WORKER_ONLY_METRICS = _build_dashboards_module().WORKER_ONLY_METRICS


# ------------------------------------------------------------------------------------------------------- helpers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _api(base: str, path: str, params: list[tuple[str, str]]) -> dict:
    """A Prometheus HTTP API call; the decoded body, `status` "success" or "error"."""
    status, body = _get(f"{base}{path}?{urllib.parse.urlencode(params)}")
    try:
        return json.loads(body)
    except ValueError:
        return {"status": "error", "error": f"HTTP {status}: {body[:200]!r}"}


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def substitute(text: str, values: dict[str, str]) -> str:
    """Grafana's `$name` / `${name}` substitution; an unknown variable is an error of the dashboard."""

    def value(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        assert name in values, f"unknown variable ${name} in {text!r}"
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, text)


def worker_only(expr: str) -> set[str]:
    return {name for name in WORKER_ONLY_METRICS if re.search(rf"(?<![\w:]){re.escape(name)}(?![\w:])", expr)}


def dashboards() -> list[tuple[str, dict]]:
    return [(p.name, json.loads(p.read_text(encoding="utf-8"))) for p in DASHBOARD_FILES]


def variable_combinations(base: str, dashboard: dict) -> list[dict[str, str]]:
    """Every assignment of the dashboard's template variables, each resolved against Prometheus as Grafana
    resolves it (in order, a later variable's query seeing the earlier ones' values). Empty when a variable has
    no value yet."""
    combos: list[dict[str, str]] = [dict(BUILTIN_VARIABLES)]
    for var in dashboard["templating"]["list"]:
        assert var["type"] == "query", f"variable {var['name']}: only query variables are supported here"
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", var["query"].strip())
        assert m, f"variable {var['name']}: only label_values(selector, label) queries are supported here"
        selector, label = m.groups()
        extended = []
        for combo in combos:
            reply = _api(base, f"/api/v1/label/{label}/values", [("match[]", substitute(selector, combo))])
            assert reply["status"] == "success", f"variable {var['name']}: {reply.get('error')}"
            extended += [{**combo, var["name"]: v} for v in sorted(reply["data"])]
        combos = extended
    return combos


def panel_queries(dashboard: dict) -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) of every panel target, rows' nested panels included."""
    out = []
    for panel in dashboard["panels"]:
        for p in [panel, *panel.get("panels", [])]:
            for t in p.get("targets", []):
                out.append((p["title"], t.get("refId", "?"), t["expr"]))
    return out


# ------------------------------------------------------------------------------------------------------- the stack


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> dict:
    """`engagewatch demo` and a Prometheus scraping it, both ready; yields the Prometheus base URL and logs."""
    prometheus = tool("prometheus", "prometheus")
    tmp = tmp_path_factory.mktemp("dashboards-live")
    demo_port, prom_port = _free_port(), _free_port()
    while prom_port == demo_port:
        prom_port = _free_port()

    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGEWATCH_")}
    env.update(ENGAGEWATCH_METRICS_HOST="127.0.0.1", ENGAGEWATCH_LOG_LEVEL="warning")
    demo_log = tmp / "demo.log"
    run_for = f"{READY_TIMEOUT_S + DATA_TIMEOUT_S + 60}s"  # a bound in case the test dies without cleaning up
    with open(demo_log, "wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "demo", "--metrics-port", str(demo_port), "--for", run_for,
             *DEMO_ARGS],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )

    config = yaml.safe_load(LOCAL_CONFIG.read_text())
    config["global"]["scrape_interval"] = f"{SCRAPE_INTERVAL_S}s"
    config["global"]["evaluation_interval"] = f"{SCRAPE_INTERVAL_S}s"
    config["rule_files"] = [str(p) for p in RULE_FILES]
    config.pop("alerting", None)  # nothing to notify; the rules' health is checked through the API
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert "engagewatch" in jobs, "prometheus-local.yml has no `engagewatch` job, which the dashboards select"
    jobs["engagewatch"]["static_configs"] = [
        {**sc, "targets": [f"127.0.0.1:{demo_port}"]} for sc in jobs["engagewatch"]["static_configs"]
    ]
    if "prometheus" in jobs:
        jobs["prometheus"]["static_configs"] = [{"targets": [f"127.0.0.1:{prom_port}"]}]
    config_path = tmp / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    prom_log = tmp / "prometheus.log"
    with open(prom_log, "wb") as out:
        prom = subprocess.Popen(
            [prometheus, f"--config.file={config_path}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
            cwd=tmp, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{prom_port}"
    stack = {"base": base, "demo_log": demo_log, "prometheus_log": prom_log, "demo": demo, "prometheus": prom}
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            for name, proc, log in (("demo", demo, demo_log), ("prometheus", prom, prom_log)):
                if proc.poll() is not None:
                    pytest.fail(f"{name} exited with {proc.returncode}:\n{_tail(log)}")
            try:
                if _get(f"{base}/-/ready", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"Prometheus not ready after {READY_TIMEOUT_S} s:\n{_tail(prom_log)}")
            time.sleep(0.2)
        stack["ready_at"] = time.monotonic()
        yield stack
    finally:
        _stop(prom)
        _stop(demo)


def _diagnostics(stack: dict) -> str:
    return (f"\n--- demo log ---\n{_tail(stack['demo_log'])}"
            f"\n--- prometheus log ---\n{_tail(stack['prometheus_log'])}")


# ------------------------------------------------------------------------------------------------------- the tests


@pytest.mark.timeout(180)
def test_every_panel_query_returns_data(live: dict) -> None:
    """Every query of every panel of every dashboard returns a non-empty result from the live demo, for every
    combination of template-variable values; worker-only metrics are exempt from data but not from evaluating."""
    base = live["base"]
    boards = dashboards()
    assert boards, "no dashboard under deploy/grafana/dashboards/"
    deadline = live["ready_at"] + DATA_TIMEOUT_S
    shown: set[tuple[str, str, str, str]] = set()  # (dashboard, panel, refId, substituted expr) that showed data
    errors: dict[tuple[str, str, str, str], str] = {}
    while True:
        pending: dict[tuple[str, str, str, str], str] = {}  # -> the variable values, for the report
        exempt: set[tuple[str, str, str, str]] = set()
        unresolved = []
        for name, board in boards:
            combos = variable_combinations(base, board)
            if not combos:
                unresolved.append(name)
            for combo in combos:
                shown_vars = ", ".join(f"{k}={v}" for k, v in combo.items() if not k.startswith("__")) or "-"
                for title, ref, expr in panel_queries(board):
                    key = (name, title, ref, substitute(expr, combo))
                    if key not in shown:
                        pending.setdefault(key, shown_vars)
                        if worker_only(expr):
                            exempt.add(key)
        for key in pending:
            reply = _api(base, "/api/v1/query", [("query", key[3])])
            if reply["status"] != "success":
                errors[key] = reply.get("error", "?")
            elif reply["data"]["result"] or key in exempt:
                # The exempt queries are evaluated (an error is reported) but not required to have data.
                shown.add(key)
        missing = {k: v for k, v in pending.items() if k not in shown}
        if errors or (not missing and not unresolved) or time.monotonic() > deadline:
            break
        time.sleep(0.5)

    assert not errors, "queries Prometheus rejects:\n" + "\n".join(
        f"  {d} / {p} [{r}]: {e}\n      {q}" for (d, p, r, q), e in sorted(errors.items())) + _diagnostics(live)
    assert not unresolved, f"template variables without any value: {unresolved}" + _diagnostics(live)
    assert not missing, (
        f"panel queries that returned no data within {DATA_TIMEOUT_S} s:\n"
        + "\n".join(f"  {d} / {p} [{r}] ({v}):\n      {q}" for (d, p, r, q), v in sorted(missing.items()))
        + _diagnostics(live)
    )


def test_every_rule_evaluates_without_error(live: dict) -> None:
    """Every recording and alerting rule loaded from deploy/prometheus/rules/ evaluates on the live series
    without error (the recording rules feed the Audience quality dashboard)."""
    base = live["base"]
    expected = {
        rule.get("record") or rule.get("alert")
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    }
    deadline = time.monotonic() + 15
    while True:
        reply = _api(base, "/api/v1/rules", [])
        assert reply["status"] == "success", reply
        rules = [r for g in reply["data"]["groups"] for r in g["rules"]]
        unevaluated = [r["name"] for r in rules if r["health"] == "unknown"]
        if not unevaluated or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {r["name"] for r in rules} == expected
    bad = [f"{r['name']}: {r['health']} {r.get('lastError', '')}" for r in rules if r["health"] != "ok"]
    assert not bad, "\n".join(bad) + _diagnostics(live)


def test_exemptions_are_only_worker_metrics() -> None:
    """The exempt metrics are exported by the Kafka worker code alone, never by the demo's embedded runner:
    the exemption cannot hide a panel the demo could fill."""
    embedded = [ROOT / "streams" / "exporter.py", ROOT / "streams" / "runner.py", ROOT / "streams" / "alerts.py",
                ROOT / "streams" / "commands" / "demo.py"]
    text = "\n".join(p.read_text(encoding="utf-8") for p in embedded if p.exists())
    for name in WORKER_ONLY_METRICS:
        assert f'"{name}"' not in text, f"{name} is exported by the embedded runner: remove its exemption"
