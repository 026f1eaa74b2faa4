"""SLO alerts: the arithmetic, and the rules proven with Prometheus' own promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshctl import layout, slo
from meshctl.build import slo as slo_build
from meshctl.build.context import BuildContext

import harness
from conftest import Rendered

PAGE_1H, PAGE_6H, TICKET_1D, TICKET_3D = slo.WINDOWS


def test_error_budget() -> None:
    assert slo.error_budget(99.9) == 0.001
    assert slo.error_budget(99.95) == 0.0005
    assert slo.error_budget(99.99) == 0.0001


@pytest.mark.parametrize(
    ("objective", "thresholds"),
    [
        (99.9, (0.0144, 0.006, 0.003, 0.001)),
        (99.95, (0.0072, 0.003, 0.0015, 0.0005)),
        (99.99, (0.00144, 0.0006, 0.0003, 0.0001)),
    ],
)
def test_thresholds_over_the_workbooks_30_days(
    objective: float, thresholds: tuple[float, ...]
) -> None:
    assert tuple(slo.threshold(w, objective, 30) for w in slo.WINDOWS) == thresholds


def test_other_periods_keep_the_budget_fraction() -> None:
    # 28 days: a page still means 2 % of the budget went in an hour.
    assert slo.burn_rate(PAGE_1H, 28) == 13.44
    assert slo.threshold(PAGE_1H, 99.99, 28) == 0.001344
    assert slo.threshold(PAGE_6H, 99.9, 28) == 0.0056
    for period in (7, 28, 30, 90):
        assert [slo.budget_consumed(w, period) for w in slo.WINDOWS] == [0.02, 0.05, 0.1, 0.1]
    assert (PAGE_1H.severity, TICKET_3D.severity) == ("page", "ticket")
    assert (TICKET_1D.long, TICKET_1D.short) == ("1d", "2h")


def test_latency_targets_sit_on_kong_buckets() -> None:
    assert slo_build.latency_bucket(50) == 50
    assert slo_build.latency_bucket(100) == 100
    assert slo_build.latency_bucket(120) == 100
    assert slo_build.latency_bucket(10) == 25


def test_kong_service_names_follow_the_ingress_controller() -> None:
    assert slo_build.kong_service_name("ai", "api", 8080) == "ai.api.pnum-8080"


def promtool() -> str:
    return harness.tool("promtool", "the rules cannot be checked (Debian package `prometheus`)")


@pytest.fixture(scope="module")
def rules(example_tree: Rendered) -> dict[tuple[str, str], dict[str, Any]]:
    """The example's rules (it turns observability on): (environment, file) -> PrometheusRule."""
    platform = example_tree.result.platform
    assert platform.environments["prod"].settings.observability.enabled
    # The component alone: the rules do not depend on the rest of the render.
    out = {}
    for env, plan in platform.environments.items():
        for manifest in slo_build.build(BuildContext(platform, plan)).manifests:
            assert manifest.stage == layout.RESOURCES
            out[(env, manifest.group)] = manifest.body
    assert {group for _, group in out} == {"gateway", "services", "data"}
    return out


def test_every_rule_group_passes_promtool_check(
    rules: dict[tuple[str, str], dict[str, Any]], tmp_path: Path
) -> None:
    tool = promtool()
    for (env, group), rule in rules.items():
        path = tmp_path / f"{env}-{group}.yaml"
        path.write_text(yaml.safe_dump(rule["spec"]))
        result = subprocess.run(
            [tool, "check", "rules", str(path)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"{env}/{group}: {result.stdout}{result.stderr}"


def _series(error_ratio: float, minutes: int) -> list[dict[str, str]]:
    per_minute = 10000
    errors = per_minute * error_ratio
    labels = 'service="ai.api.pnum-8080",route="ai.api.api.example.com.80",source="service"'
    return [
        {
            "series": f'kong_http_requests_total{{{labels},code="200",consumer=""}}',
            "values": f"0+{per_minute - errors:.6f}x{minutes}",
        },
        {
            "series": f'kong_http_requests_total{{{labels},code="503",consumer=""}}',
            "values": f"0+{errors:.6f}x{minutes}",
        },
    ]


@pytest.mark.parametrize(("env", "objective"), [("dev", 99.9), ("prod", 99.99)])
@pytest.mark.parametrize("window", [PAGE_1H, PAGE_6H], ids=lambda w: w.long)
def test_page_alerts_fire_at_their_burn_rate_and_not_below(
    rules: dict[tuple[str, str], dict[str, Any]],
    tmp_path: Path,
    env: str,
    objective: float,
    window: slo.BurnWindow,
) -> None:
    tool = promtool()
    groups = rules[(env, "gateway")]["spec"]["groups"]
    for group in groups:  # the expressions are under test, not the texts
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    limit = slo.threshold(window, objective, 28)
    name = f"SLOGatewayAvailabilityBurn{window.long}"
    labels = {
        "severity": window.severity,
        "slo": "availability",
        "environment": env,
        "long_window": window.long,
        "short_window": window.short,
    }
    tests = []
    for factor, expected in ((1.05, [{"exp_labels": labels}]), (0.95, [])):
        tests.append(
            {
                "interval": "1m",
                "input_series": _series(limit * factor, 420),
                "alert_rule_test": [
                    {"eval_time": "6h30m", "alertname": name, "exp_alerts": expected}
                ],
            }
        )
    test_file = tmp_path / "test.yaml"
    test_file.write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests})
    )
    result = subprocess.run(
        [tool, "test", "rules", str(test_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
