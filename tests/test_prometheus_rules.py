"""Prometheus rules, their promtool unit tests, and the Alertmanager sample configuration.

The promtool/amtool tests run Debian's `prometheus` and `prometheus-alertmanager` binaries (see prerequisites.py
for when they are missing); the conventions checks only read the YAML.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from prerequisites import tool

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
PROMETHEUS_CONFIGS = [PROMETHEUS_DIR / "prometheus.yml", PROMETHEUS_DIR / "prometheus-local.yml"]
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"

SEVERITIES = {"critical", "warning", "info"}


def _run(*argv: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=120, cwd=ROOT)


def _rules() -> list[dict]:
    return [rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def _alerts() -> list[dict]:
    return [rule for rule in _rules() if "alert" in rule]


def _recordings() -> list[dict]:
    return [rule for rule in _rules() if "record" in rule]


def _unit_tests() -> list[dict]:
    return [group for path in RULE_TEST_FILES for group in yaml.safe_load(path.read_text())["tests"]]


def _anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def _runbook_anchors() -> set[str]:
    return {_anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", RUNBOOK.read_text(), flags=re.M)}


@pytest.fixture(scope="module")
def promtool() -> str:
    return tool("promtool", "prometheus")


@pytest.fixture(scope="module")
def amtool() -> str:
    return tool("amtool", "prometheus-alertmanager")


@pytest.mark.prometheus
class TestPromtoolCheckRules:
    @pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
    def test_rule_file_is_valid(self, promtool: str, path: Path) -> None:
        """Every rule file passes `promtool check rules` (syntax, PromQL, duplicate rules)."""
        result = _run(promtool, "check", "rules", path)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.prometheus
class TestPromtoolCheckConfig:
    @pytest.mark.parametrize("path", PROMETHEUS_CONFIGS, ids=lambda p: p.name)
    def test_config_is_valid(self, promtool: str, path: Path) -> None:
        """Every Prometheus configuration passes `promtool check config`, rule files included."""
        result = _run(promtool, "check", "config", path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"{len(RULE_FILES)} rule files found" in result.stdout


@pytest.mark.prometheus
class TestPromtoolTestRules:
    @pytest.mark.parametrize("path", RULE_TEST_FILES, ids=lambda p: p.name)
    def test_unit_tests_pass(self, promtool: str, path: Path) -> None:
        """Every promtool unit-test file passes `promtool test rules`."""
        result = _run(promtool, "test", "rules", path)
        assert result.returncode == 0, result.stdout + result.stderr


class TestRuleCoverage:
    def test_there_are_rules_and_tests(self) -> None:
        """Rule files and unit-test files exist."""
        assert RULE_FILES and RULE_TEST_FILES

    def test_every_rule_file_is_loaded_by_a_unit_test(self) -> None:
        """Each rule file is listed in the `rule_files` of some unit-test file."""
        loaded = {
            (path.parent / name).resolve()
            for path in RULE_TEST_FILES
            for name in yaml.safe_load(path.read_text())["rule_files"]
        }
        assert set(RULE_FILES) <= loaded

    @pytest.mark.parametrize("record", [r["record"] for r in _recordings()])
    def test_every_recording_rule_is_tested(self, record: str) -> None:
        """Each recorded series is the subject of a `promql_expr_test` with expected samples."""
        tested = {
            case["expr"].strip()
            for group in _unit_tests()
            for case in group.get("promql_expr_test", [])
            if case.get("exp_samples")
        }
        assert record in tested

    @pytest.mark.parametrize(
        ("alertname", "severity"),
        sorted({(r["alert"], r["labels"]["severity"]) for r in _alerts()}),
    )
    def test_every_alert_is_tested_firing(self, alertname: str, severity: str) -> None:
        """Each alert, at each of its severities, is expected to fire in some `alert_rule_test`."""
        fired = {
            (case["alertname"], alert["exp_labels"].get("severity"))
            for group in _unit_tests()
            for case in group.get("alert_rule_test", [])
            for alert in case.get("exp_alerts") or []
        }
        assert (alertname, severity) in fired

    @pytest.mark.parametrize("alertname", sorted({r["alert"] for r in _alerts()}))
    def test_every_alert_is_tested_quiet(self, alertname: str) -> None:
        """Each alert also has a case where it must not fire (below threshold or still pending)."""
        quiet = {
            case["alertname"]
            for group in _unit_tests()
            for case in group.get("alert_rule_test", [])
            if not case.get("exp_alerts")
        }
        assert alertname in quiet


class TestAlertConventions:
    @pytest.mark.parametrize("rule", _alerts(), ids=lambda r: f"{r['alert']}-{r['labels'].get('severity')}")
    def test_labels(self, rule: dict) -> None:
        """Each alert carries a known `severity` label."""
        assert rule["labels"]["severity"] in SEVERITIES

    @pytest.mark.parametrize("rule", _alerts(), ids=lambda r: f"{r['alert']}-{r['labels'].get('severity')}")
    def test_annotations(self, rule: dict) -> None:
        """Each alert has a summary, a description and a runbook_url pointing into docs/runbook.md."""
        annotations = rule["annotations"]
        assert annotations["summary"].strip()
        assert annotations["description"].strip()
        url = annotations["runbook_url"]
        assert url.split("#")[0].endswith("docs/runbook.md")
        assert url.split("#")[1] == rule["alert"].lower()

    @pytest.mark.parametrize("alertname", sorted({r["alert"] for r in _alerts()}))
    def test_runbook_has_a_section_per_alert(self, alertname: str) -> None:
        """The runbook anchor of each alert exists."""
        assert alertname.lower() in _runbook_anchors()

    def test_runbook_documents_only_existing_alerts(self) -> None:
        """Every third-level runbook section is named after an existing alert."""
        sections = set(re.findall(r"^### (\w+)$", RUNBOOK.read_text(), flags=re.M))
        assert sections == {r["alert"] for r in _alerts()}

    def test_runbook_urls_share_one_base(self) -> None:
        """All runbook URLs have the same base, so that publishing the docs elsewhere is one substitution."""
        assert len({r["annotations"]["runbook_url"].split("#")[0] for r in _alerts()}) == 1

    def test_decay_alerts_follow_the_decay_state(self) -> None:
        """The alerts on `engagewatch_decay_state` have `Decay` in their name and cover warning and critical."""
        decay = [r for r in _alerts() if "engagewatch_decay_state" in r["expr"]]
        assert {r["labels"]["severity"] for r in decay} == {"warning", "critical"}
        assert all("Decay" in r["alert"] for r in decay)

    def test_recording_rule_names_follow_the_convention(self) -> None:
        """Recorded series are named `level:metric:operations`."""
        for rule in _recordings():
            assert re.fullmatch(r"[a-z_]+:engagewatch_[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]


@pytest.mark.alertmanager
class TestAlertmanagerConfig:
    def test_config_is_valid(self, amtool: str) -> None:
        """The sample Alertmanager configuration passes `amtool check-config`."""
        result = _run(amtool, "check-config", ALERTMANAGER_CONFIG)
        assert result.returncode == 0, result.stdout + result.stderr

    @pytest.mark.parametrize(
        ("labels", "receiver"),
        [
            (["alertname=EngagementDecay", "severity=warning", "account=acme"], "marketing-webhook"),
            (["alertname=EngagementDecay", "severity=critical", "account=acme"], "marketing-critical-webhook"),
            (["alertname=EngagewatchWorkerDown", "severity=critical", "job=engagewatch"], "ops-pager-webhook"),
            (["alertname=EngagewatchConsumerLagHigh", "severity=warning", "job=engagewatch"], "ops-webhook"),
        ],
    )
    def test_routes(self, amtool: str, labels: list[str], receiver: str) -> None:
        """Alerts are routed by audience-or-pipeline and severity to the expected webhook receiver."""
        result = _run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
                      f"--verify.receivers={receiver}", *labels)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_marketing_alerts_are_grouped_by_account(self) -> None:
        """Alerts with an `account` label have their own route, grouped per account."""
        config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
        marketing = next(r for r in config["route"]["routes"] if 'account=~".+"' in r.get("matchers", []))
        assert marketing["group_by"] == ["account"]

    def test_audience_alerts_keep_the_detector_identity(self) -> None:
        """Alerts on the detector's gauges keep only its labels, so Alertmanager merges them with pushed alerts."""
        detector_gauges = ("engagewatch_decay_state", "engagewatch_stream_silent", "engagewatch_hollow_growth",
                           "engagewatch_onboarding_collapse")
        mirrored = [r for r in _alerts() if any(g in r["expr"] for g in detector_gauges)]
        assert {r["alert"] for r in mirrored} == {"EngagementDecay", "EngagementStreamSilent", "HollowFollowerGrowth",
                                                  "OnboardingCollapse"}
        for rule in mirrored:
            assert set(rule["labels"]) <= {"severity", "window"}
            assert re.search(r"max by \(account, platform(, window)?\)", rule["expr"])

    def test_receivers_are_webhooks(self) -> None:
        """Every receiver is a webhook (Alertmanager API v2 payload) that also sends resolutions."""
        config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
        for receiver in config["receivers"]:
            hooks = receiver["webhook_configs"]
            assert hooks and all(h["send_resolved"] for h in hooks), receiver["name"]
