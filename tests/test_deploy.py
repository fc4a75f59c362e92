"""Static consistency of the deployment files: Grafana dashboards, docker-compose, Dockerfile, Kubernetes.

Nothing here starts a service: the files are parsed and checked against each other and against the code
(the CLI parser, the settings object, the metric names the exporter writes).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from prerequisites import tool

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCE_FILES = sorted((GRAFANA / "provisioning" / "datasources").glob("*.yml"))
DASHBOARD_PROVIDER_FILES = sorted((GRAFANA / "provisioning" / "dashboards").glob("*.yml"))
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S = ROOT / "deploy" / "k8s"
ENV_PREFIX = "ENGAGEWATCH_"

# Series that Prometheus itself creates.
PROMETHEUS_BUILTIN = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds", "scrape_samples_scraped"}
# Metrics the deployment relies on that are promised but not (yet) written by the code in streams/ or
# processors/: the worker's Kafka consumer lag. Remove a name once it lands.
PENDING_METRICS = {"engagewatch_consumer_lag"}

PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
    "inf", "nan", "atan2",
}
SAMPLE_VARIABLES = {"account": "acme", "platform": "instagram", "window": "24h", "__rate_interval": "1m",
                    "__interval": "30s", "__range": "1h"}
GRAFANA_BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range", "__range_s", "__interval_ms"}


# ------------------------------------------------------------------------------------------------------- helpers


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (Grafana variables allowed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+\S+", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    names = set()
    for m in re.finditer(r"(?<![\w.:$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        name, call = m.group(1), m.group(2)
        if call or name in PROMQL_KEYWORDS:
            continue
        names.add(name)
    return names


def exported_metrics() -> set[str]:
    """Every `engagewatch_*` metric family the code writes; a counter family `x` is exposed as `x_total`."""
    names: set[str] = set()
    for path in [*ROOT.joinpath("streams").rglob("*.py"), *ROOT.joinpath("processors").rglob("*.py")]:
        text = path.read_text(encoding="utf-8")
        for kind, name in re.findall(r"\b(\w*)MetricFamily\(\s*[\"'](engagewatch_[a-z0-9_]+)[\"']", text):
            names.add(f"{name}_total" if kind == "Counter" else name)
    return names


def recorded_metrics() -> set[str]:
    return {
        rule["record"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def known_metrics() -> set[str]:
    return exported_metrics() | PENDING_METRICS | recorded_metrics() | PROMETHEUS_BUILTIN


def variables_used(text: str) -> set[str]:
    return set(re.findall(r"\$\{?(\w+)", text))


def substitute(expr: str) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: SAMPLE_VARIABLES[m.group(1)], expr)


def is_setting(env_name: str) -> bool:
    """Whether `ENGAGEWATCH_X` / `ENGAGEWATCH_SECTION__X` names a field of `streams.settings.Settings`."""
    from pydantic import BaseModel

    from streams.settings import Settings

    if not env_name.startswith(ENV_PREFIX):
        return False
    parts = env_name[len(ENV_PREFIX):].lower().split("__")
    field = Settings.model_fields.get(parts[0])
    if field is None:
        return False
    nested = isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    if len(parts) == 1:
        return not nested
    return nested and len(parts) == 2 and parts[1] in field.annotation.model_fields


def parse_cli(argv: list[str]) -> None:
    """Parse `engagewatch ARGV` with the real parser; fails the test on an unknown command, flag or value."""
    from streams.cli import build_parser

    try:
        build_parser(argv).parse_args(argv)
    except SystemExit as e:
        pytest.fail(f"`engagewatch {shlex.join(argv)}` does not parse (exit {e.code})")


def load_settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Validate the values with the settings object itself, as a process with exactly this environment would."""
    from streams.settings import load_settings

    for name in [n for n in list(__import__("os").environ) if n.upper().startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    load_settings()


def dashboards() -> list[tuple[str, dict]]:
    return [(path.name, json.loads(path.read_text(encoding="utf-8"))) for path in DASHBOARD_FILES]


def panel_targets(dashboard: dict) -> list[tuple[dict, dict]]:
    return [(p, t) for p in dashboard["panels"] for t in p.get("targets", [])]


def all_queries(dashboard: dict) -> list[str]:
    """Every PromQL text of a dashboard: panel targets, annotations, query variables."""
    exprs = [t["expr"] for _, t in panel_targets(dashboard)]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((.*),\s*\w+\)", var["query"].strip())
            assert m, f"variable {var['name']}: only label_values(selector, label) queries are used"
            exprs.append(m.group(1))
    return exprs


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose_environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def engagewatch_invocations(service: dict) -> list[list[str]]:
    """The `engagewatch` argument lists a compose service runs (its image's entrypoint is `engagewatch`)."""
    entrypoint = service.get("entrypoint")
    command = service.get("command")
    if entrypoint is None:
        return [[str(a) for a in command]] if command else [[]]
    assert entrypoint[:2] == ["/bin/sh", "-c"], "a custom entrypoint must be /bin/sh -c"
    script = command[0] if isinstance(command, list) else command
    script = script.replace("$$", "$")
    runs = []
    for statement in re.split(r"[;\n]|&&", script):
        for stage in statement.split("|"):
            words = shlex.split(stage)
            if words and words[0] == "engagewatch":
                runs.append([re.sub(r"^\$\{?\w+\}?$", "0", w) for w in words[1:]])
    assert runs, "the shell script runs no engagewatch command"
    return runs


def engagewatch_services() -> dict[str, dict]:
    return {name: s for name, s in compose()["services"].items() if s.get("image", "").startswith("engagewatch")}


def k8s_documents() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def k8s_by_kind(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in k8s_documents() if d["kind"] == kind}


def pod_specs() -> list[tuple[str, dict]]:
    specs = [(f"StatefulSet/{n}", d["spec"]["template"]["spec"]) for n, d in k8s_by_kind("StatefulSet").items()]
    specs += [(f"Job/{n}", d["spec"]["template"]["spec"]) for n, d in k8s_by_kind("Job").items()]
    return specs


def datasource_uids() -> set[str]:
    return {ds["uid"] for path in DATASOURCE_FILES for ds in yaml.safe_load(path.read_text())["datasources"]}


# --------------------------------------------------------------------------------------------------------- tests


class TestMetricNameExtraction:
    @pytest.mark.parametrize(
        ("expr", "names"),
        [
            ('sum by (type) (rate(engagewatch_engagements_total{account="$account"}[$__rate_interval]))',
             {"engagewatch_engagements_total"}),
            ("a:b:c / on (account) group_left () (x > 0)", {"a:b:c", "x"}),
            ('time() - max by (instance) (w_seconds offset 1h)', {"w_seconds"}),
            ('topk(10, m{window="$window"})', {"m"}),
            ('ALERTS{alertstate="firing", account="$account"}', {"ALERTS"}),
        ],
    )
    def test_extracts_selected_metrics(self, expr: str, names: set[str]) -> None:
        """Metric names are found; functions, keywords, labels, strings and variables are not."""
        assert metric_names(expr) == names


class TestDashboards:
    def test_dashboards_exist(self) -> None:
        """The three dashboards are committed."""
        assert {p.name for p in DASHBOARD_FILES} == {"audience-quality.json", "account.json", "pipeline.json"}

    def test_committed_json_is_what_the_builder_writes(self) -> None:
        """deploy/grafana/build_dashboards.py --check finds nothing stale."""
        result = subprocess.run([sys.executable, str(GRAFANA / "build_dashboards.py"), "--check"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr

    def test_uids_are_unique(self) -> None:
        """Every dashboard has its own uid."""
        uids = [d["uid"] for _, d in dashboards()]
        assert len(set(uids)) == len(uids)

    @pytest.mark.parametrize(("name", "dashboard"), dashboards())
    def test_panel_ids_are_unique(self, name: str, dashboard: dict) -> None:
        """Panel ids do not repeat within a dashboard."""
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(set(ids)) == len(ids)

    @pytest.mark.parametrize(("name", "dashboard"), dashboards())
    def test_panels_fit_the_grid(self, name: str, dashboard: dict) -> None:
        """Every panel lies within Grafana's 24 columns."""
        for p in dashboard["panels"]:
            assert 0 <= p["gridPos"]["x"] and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]

    @pytest.mark.parametrize(("name", "dashboard"), dashboards())
    def test_datasource_is_the_provisioned_one(self, name: str, dashboard: dict) -> None:
        """Panels, targets, variables and annotations use the provisioned Prometheus datasource uid."""
        uids = datasource_uids()
        used = [p["datasource"] for p in dashboard["panels"]]
        used += [t["datasource"] for _, t in panel_targets(dashboard)]
        used += [v["datasource"] for v in dashboard["templating"]["list"] if "datasource" in v]
        used += [a["datasource"] for a in dashboard["annotations"]["list"] if a.get("type") != "dashboard"]
        assert used and all(ds["type"] == "prometheus" and ds["uid"] in uids for ds in used)

    @pytest.mark.parametrize(("name", "dashboard"), dashboards())
    def test_every_panel_has_a_query(self, name: str, dashboard: dict) -> None:
        """Each panel has at least one target, each with a PromQL expression and a distinct refId."""
        for p in dashboard["panels"]:
            refs = [t["refId"] for t in p["targets"]]
            assert refs and len(set(refs)) == len(refs), p["title"]
            assert all(t["expr"].strip() for t in p["targets"]), p["title"]

    @pytest.mark.parametrize(("name", "dashboard"), dashboards())
    def test_variables_are_defined_before_use(self, name: str, dashboard: dict) -> None:
        """A variable's query only uses variables defined above it; panels only use defined variables."""
        defined: set[str] = set()
        for var in dashboard["templating"]["list"]:
            assert variables_used(var.get("query", "")) <= defined | GRAFANA_BUILTIN_VARIABLES, var["name"]
            defined.add(var["name"])
        texts = [t["expr"] for _, t in panel_targets(dashboard)] + [p["title"] for p in dashboard["panels"]]
        texts += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
        for text in texts:
            assert variables_used(text) <= defined | GRAFANA_BUILTIN_VARIABLES, text

    @pytest.mark.parametrize(("name", "dashboard"), dashboards())
    def test_queries_name_only_known_metrics(self, name: str, dashboard: dict) -> None:
        """Every metric a query names is exported by engagewatch, recorded by our rules, or Prometheus' own."""
        known = known_metrics()
        for expr in all_queries(dashboard):
            assert metric_names(expr) <= known, (expr, metric_names(expr) - known)

    @pytest.mark.parametrize(("name", "dashboard"), dashboards())
    def test_counter_rates_use_the_rate_interval(self, name: str, dashboard: dict) -> None:
        """rate()/increase() in panels use Grafana's $__rate_interval."""
        for _, t in panel_targets(dashboard):
            for window in re.findall(r"\b(?:rate|increase|irate)\([^\[]*\[([^\]]+)\]", t["expr"]):
                assert window == "$__rate_interval", t["expr"]

    def test_account_dashboard_has_the_stream_variables(self) -> None:
        """The Account dashboard selects account, platform and window with label_values() queries."""
        account = dict(dashboards())["account.json"]
        variables = {v["name"]: v for v in account["templating"]["list"]}
        assert list(variables) == ["account", "platform", "window"]
        assert all(v["query"].startswith("label_values(") for v in variables.values())

    @pytest.mark.prometheus
    def test_queries_are_valid_promql(self, tmp_path: Path) -> None:
        """Every query, variables substituted, is accepted by `promtool check rules` as a recording rule."""
        promtool = tool("promtool", "prometheus")
        rules = [
            {"record": f"dashboard_query_{i}", "expr": substitute(expr)}
            for i, expr in enumerate(e for _, d in dashboards() for e in all_queries(d))
        ]
        path = tmp_path / "queries.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
        result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


class TestRuleMetrics:
    @pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
    def test_rules_name_only_known_metrics(self, path: Path) -> None:
        """Every metric a recording or alerting rule reads is exported, recorded, or Prometheus' own."""
        known = known_metrics()
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                assert metric_names(rule["expr"]) <= known, (rule.get("alert") or rule["record"], rule["expr"])


class TestGrafanaProvisioning:
    def test_one_prometheus_datasource_with_a_fixed_uid(self) -> None:
        """The provisioned datasource is Prometheus, default, with a fixed uid."""
        sources = [ds for path in DATASOURCE_FILES for ds in yaml.safe_load(path.read_text())["datasources"]]
        assert [(ds["type"], ds["isDefault"]) for ds in sources] == [("prometheus", True)]
        assert sources[0]["uid"]

    def test_datasource_points_at_the_compose_prometheus(self) -> None:
        """The datasource URL is the `prometheus` compose service on its port."""
        ds = yaml.safe_load(DATASOURCE_FILES[0].read_text())["datasources"][0]
        assert ds["url"] == "http://prometheus:9090"
        assert "prometheus" in compose()["services"]

    def test_dashboard_provider_path_is_mounted(self) -> None:
        """The dashboard provider reads the directory where compose mounts deploy/grafana/dashboards."""
        provider = yaml.safe_load(DASHBOARD_PROVIDER_FILES[0].read_text())["providers"][0]
        mounts = compose()["services"]["grafana"]["volumes"]
        assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in mounts


class TestCompose:
    def test_no_top_level_version(self) -> None:
        """The obsolete top-level `version:` key is absent."""
        assert "version" not in compose()

    def test_bind_mounts_exist(self) -> None:
        """Every bind-mounted host path exists in the repository."""
        for name, service in compose()["services"].items():
            for volume in service.get("volumes", []):
                source = volume.split(":")[0]
                if source.startswith((".", "/")):
                    assert (ROOT / source).exists(), f"{name}: {source}"

    def test_named_volumes_are_declared(self) -> None:
        """Every named volume a service uses is declared at the top level."""
        declared = set(compose().get("volumes") or {})
        for service in compose()["services"].values():
            for volume in service.get("volumes", []):
                source = volume.split(":")[0]
                if not source.startswith((".", "/")):
                    assert source in declared

    def test_published_ports_are_loopback_only(self) -> None:
        """Published ports are bound to 127.0.0.1."""
        for name, service in compose()["services"].items():
            for port in service.get("ports", []):
                assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"

    def test_worker_is_scalable(self) -> None:
        """The worker has no fixed container name and publishes no host port, so --scale works."""
        worker = compose()["services"]["worker"]
        assert "container_name" not in worker and "ports" not in worker

    def test_every_service_has_a_restart_policy(self) -> None:
        """Each service states what happens when it exits."""
        for name, service in compose()["services"].items():
            assert service.get("restart") in {"no", "on-failure", "always", "unless-stopped"}, name

    def test_long_running_services_have_health_checks(self) -> None:
        """Kafka, the workers, Prometheus, Alertmanager and Grafana report their health."""
        services = compose()["services"]
        for name in ("kafka", "worker", "prometheus", "alertmanager", "grafana"):
            assert services[name]["healthcheck"]["test"], name

    def test_kafka_is_the_official_image_in_kraft_mode(self) -> None:
        """Kafka runs apache/kafka:3.9.1 configured through the image's KRaft variables."""
        kafka = compose()["services"]["kafka"]
        assert kafka["image"] == "apache/kafka:3.9.1"
        env = compose_environment(kafka)
        for name in ("KAFKA_NODE_ID", "KAFKA_PROCESS_ROLES", "KAFKA_CONTROLLER_QUORUM_VOTERS", "KAFKA_LISTENERS",
                     "KAFKA_ADVERTISED_LISTENERS", "KAFKA_CONTROLLER_LISTENER_NAMES", "CLUSTER_ID"):
            assert env.get(name), name
        assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}

    def test_clients_use_the_advertised_internal_listener(self) -> None:
        """ENGAGEWATCH_KAFKA__BOOTSTRAP_SERVERS names a listener Kafka advertises on the compose network."""
        advertised = compose_environment(compose()["services"]["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
        addresses = {item.split("://", 1)[1] for item in advertised.split(",")}
        for name, service in engagewatch_services().items():
            bootstrap = compose_environment(service).get("ENGAGEWATCH_KAFKA__BOOTSTRAP_SERVERS")
            if name != "demo":
                assert bootstrap in addresses, name

    def test_one_shot_topics_before_workers(self) -> None:
        """Workers and the simulator wait for `engagewatch topics create` to complete."""
        services = compose()["services"]
        assert engagewatch_invocations(services["topics"]) == [["topics", "create"]]
        for name in ("worker", "simulator"):
            assert services[name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"

    @pytest.mark.parametrize("name", sorted(engagewatch_services()))
    def test_engagewatch_commands_exist(self, name: str) -> None:
        """Every engagewatch command line a service runs parses with the real CLI (commands, flags, values)."""
        for argv in engagewatch_invocations(compose()["services"][name]):
            parse_cli(argv)

    def test_simulator_feeds_the_topic(self) -> None:
        """The simulator pipes `engagewatch simulate` into `engagewatch replay -`."""
        runs = engagewatch_invocations(compose()["services"]["simulator"])
        assert [r[0] for r in runs] == ["simulate", "replay"] and runs[1][-1] == "-"

    @pytest.mark.parametrize("name", sorted(engagewatch_services()))
    def test_environment_names_real_settings(self, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """Every ENGAGEWATCH_* variable is a setting of streams.settings.Settings with a valid value."""
        env = {k: v for k, v in compose_environment(compose()["services"][name]).items() if k.startswith(ENV_PREFIX)}
        assert all(is_setting(k) for k in env), [k for k in env if not is_setting(k)]
        load_settings_from(env, monkeypatch)

    def test_prometheus_discovers_the_workers(self) -> None:
        """The `engagewatch` scrape job resolves the `worker` service on the workers' metrics port."""
        config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
        job = next(j for j in config["scrape_configs"] if j["job_name"] == "engagewatch")
        port = int(compose_environment(compose()["services"]["worker"])["ENGAGEWATCH_METRICS_PORT"])
        sd = {(name, c["port"]) for c in job["dns_sd_configs"] for name in c["names"]}
        assert ("worker", port) in sd
        services = compose()["services"]
        assert all(name in services for name, _ in sd)

    def test_prometheus_alerts_the_compose_alertmanager(self) -> None:
        """Prometheus sends alerts to the `alertmanager` service, and the rule files are mounted with the config."""
        config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
        targets = [t for am in config["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]]
        assert targets == ["alertmanager:9093"]
        assert "./deploy/prometheus:/etc/prometheus:ro" in compose()["services"]["prometheus"]["volumes"]


class TestDockerfile:
    def test_base_image_is_a_pinned_slim_python_311(self) -> None:
        """The image starts from a pinned python:3.11.x slim tag."""
        assert re.search(r"^FROM python:3\.11\.\d+-slim(-\w+)?\s*$", DOCKERFILE.read_text(), flags=re.M)

    def test_runs_as_non_root(self) -> None:
        """The last USER is not root."""
        users = re.findall(r"^USER\s+(\S+)", DOCKERFILE.read_text(), flags=re.M)
        assert users and users[-1].split(":")[0] not in {"root", "0"}

    def test_installs_the_project_with_pip(self) -> None:
        """The project is installed with `pip install .` (extras allowed)."""
        assert re.search(r"pip install \"?\.(\[[\w,]+\])?\"?", DOCKERFILE.read_text())

    def test_copied_paths_exist_and_are_not_ignored(self) -> None:
        """Every COPY source exists and is re-included by .dockerignore."""
        allowed = {line[1:].rstrip("/") for line in DOCKERIGNORE.read_text().splitlines() if line.startswith("!")}
        for line in re.findall(r"^COPY\s+(?!--from)(.+)$", DOCKERFILE.read_text(), flags=re.M):
            *sources, _ = line.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert source.rstrip("/") in allowed, source

    def test_entrypoint_is_the_cli(self) -> None:
        """The entrypoint is the `engagewatch` command, so compose and Kubernetes pass sub-commands as args."""
        assert 'ENTRYPOINT ["engagewatch"]' in DOCKERFILE.read_text()

    def test_image_environment_names_real_settings(self) -> None:
        """ENGAGEWATCH_* variables set in the image are real settings."""
        for name in re.findall(r"\b(ENGAGEWATCH_\w+)=", DOCKERFILE.read_text()):
            assert is_setting(name), name


class TestKubernetes:
    def test_kustomization_lists_every_manifest(self) -> None:
        """kustomization.yaml lists exactly the manifests of deploy/k8s."""
        listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
        present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
        assert sorted(listed) == sorted(present)

    def test_manifests_parse_with_kind_and_name(self) -> None:
        """Every document has apiVersion, kind and metadata.name."""
        docs = k8s_documents()
        assert docs and all(d["apiVersion"] and d["kind"] and d["metadata"]["name"] for d in docs)

    def test_statefulset_selector_matches_its_pods(self) -> None:
        """The StatefulSet's selector matches its pod template labels."""
        for sts in k8s_by_kind("StatefulSet").values():
            labels = sts["spec"]["template"]["metadata"]["labels"]
            assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()

    def test_statefulset_has_its_headless_service(self) -> None:
        """serviceName names a headless Service that selects the StatefulSet's pods."""
        services = k8s_by_kind("Service")
        for sts in k8s_by_kind("StatefulSet").values():
            service = services[sts["spec"]["serviceName"]]
            assert service["spec"]["clusterIP"] == "None"
            assert service["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()

    def test_statefulset_keeps_state_on_a_volume(self) -> None:
        """The RocksDB data directory lies on a volume claim template."""
        config = next(iter(k8s_by_kind("ConfigMap").values()))["data"]
        for sts in k8s_by_kind("StatefulSet").values():
            claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
            container = sts["spec"]["template"]["spec"]["containers"][0]
            mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
            state_mounts = [mounts[c] for c in claims if c in mounts]
            assert config["ENGAGEWATCH_KAFKA__STORE"] == "rocksdb://"
            assert any(config["ENGAGEWATCH_KAFKA__DATA_DIR"].startswith(m) for m in state_mounts)

    def test_servicemonitor_selects_the_service_port(self) -> None:
        """The ServiceMonitor selects the worker Service and scrapes one of its named ports."""
        services = k8s_by_kind("Service")
        for monitor in k8s_by_kind("ServiceMonitor").values():
            selected = [s for s in services.values()
                        if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
            assert selected
            ports = {p["name"] for s in selected for p in s["spec"]["ports"]}
            assert all(e["port"] in ports for e in monitor["spec"]["endpoints"])

    def test_servicemonitor_job_is_engagewatch(self) -> None:
        """The ServiceMonitor's job label resolves to `engagewatch`, the job the alert rules expect."""
        services = k8s_by_kind("Service")
        for monitor in k8s_by_kind("ServiceMonitor").values():
            for service in services.values():
                assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "engagewatch"

    def test_scrape_annotations_match_the_metrics_port(self) -> None:
        """prometheus.io/port equals the container's metrics port and ENGAGEWATCH_METRICS_PORT."""
        config = next(iter(k8s_by_kind("ConfigMap").values()))["data"]
        for sts in k8s_by_kind("StatefulSet").values():
            annotations = sts["spec"]["template"]["metadata"]["annotations"]
            container = sts["spec"]["template"]["spec"]["containers"][0]
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert annotations["prometheus.io/scrape"] == "true"
            assert int(annotations["prometheus.io/port"]) == ports["metrics"] == int(config["ENGAGEWATCH_METRICS_PORT"])

    @pytest.mark.parametrize(("where", "spec"), pod_specs(), ids=[w for w, _ in pod_specs()])
    def test_pods_reference_existing_config(self, where: str, spec: dict) -> None:
        """envFrom names an existing ConfigMap/Secret; required secret volumes exist; probes use named ports."""
        configmaps, secrets = k8s_by_kind("ConfigMap"), k8s_by_kind("Secret")
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets
            port_names = {p["name"] for p in container.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe"):
                if probe in container:
                    assert container[probe]["httpGet"]["port"] in port_names
            volumes = {v["name"] for v in spec.get("volumes", [])}
            claims = set()
            assert {m["name"] for m in container.get("volumeMounts", [])} <= volumes | claims | {"state"}
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"].get("optional") or volume["secret"]["secretName"] in secrets

    @pytest.mark.parametrize(("where", "spec"), pod_specs(), ids=[w for w, _ in pod_specs()])
    def test_pods_run_non_root(self, where: str, spec: dict) -> None:
        """Pods run as a non-root user without privilege escalation."""
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False

    @pytest.mark.parametrize(("where", "spec"), pod_specs(), ids=[w for w, _ in pod_specs()])
    def test_container_args_are_engagewatch_commands(self, where: str, spec: dict) -> None:
        """Container args parse with the real CLI."""
        for container in spec["containers"]:
            parse_cli([str(a) for a in container["args"]])

    def test_config_names_real_settings(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Every key of the ConfigMap and Secret is a real setting, and together they validate."""
        env: dict[str, str] = {}
        for cm in k8s_by_kind("ConfigMap").values():
            env.update(cm["data"])
        for secret in k8s_by_kind("Secret").values():
            env.update(secret.get("stringData", {}))
        assert all(is_setting(k) for k in env), [k for k in env if not is_setting(k)]
        load_settings_from(env, monkeypatch)

    def test_everything_lives_in_the_kustomize_namespace(self) -> None:
        """No manifest pins another namespace than the one kustomization.yaml sets."""
        namespace = yaml.safe_load((K8S / "kustomization.yaml").read_text())["namespace"]
        for doc in k8s_documents():
            assert doc["metadata"].get("namespace", namespace) == namespace
        assert namespace in k8s_by_kind("Namespace")
