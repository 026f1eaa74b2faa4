"""SLO alerts: the arithmetic, and the rules proven with Prometheus' own promtool."""

from __future__ import annotations

import copy
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
    return harness.promtool()


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
    groups = rules[(env, "gateway")]["spec"]["groups"]
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
    harness.promtool_test(groups, tests, tmp_path)


# -- ticket alerts: the slow burns, over days ------------------------------------------

# The ticket tests' counters are sampled (and the rules evaluated) every 10
# minutes: the shortest ticket window (2h) still holds 12 samples, and the
# three days the 3d window needs stay 432 samples per series. At 1 minute,
# promtool would evaluate every rule 4,320 times over ranges of up to 4,320
# samples (minutes of run time instead of seconds).
TICKET_STEP_MINUTES = 10
REQUESTS_PER_MINUTE = 10000


def _minutes(duration: str) -> int:
    return round(slo.BurnWindow("", duration, duration, 0).long_hours * 60)


def _counters(segments: list[tuple[int, float]], step_minutes: int) -> list[dict[str, str]]:
    """Kong's request counters through `segments` of (steps, error ratio): a
    constant request rate, of which that share answered 503. Promtool's
    expanding notation, one `start+increment x count` run per segment."""
    per_step = REQUESTS_PER_MINUTE * step_minutes
    runs: dict[str, list[str]] = {"200": [], "503": []}
    totals = {"200": 0.0, "503": 0.0}
    for index, (steps, ratio) in enumerate(segments):
        increments = {"200": per_step * (1 - ratio), "503": per_step * ratio}
        for code, increment in increments.items():
            # The first run starts at 0; each later one a step after the last value.
            start = totals[code] + (increment if index else 0)
            count = steps if index == 0 else steps - 1
            runs[code].append(f"{start:.6f}+{increment:.6f}x{count}")
            totals[code] = start + increment * count
    labels = 'service="ai.api.pnum-8080",route="ai.api.api.example.com.80",source="service"'
    return [
        {
            "series": f'kong_http_requests_total{{{labels},code="{code}",consumer=""}}',
            "values": " ".join(run),
        }
        for code, run in runs.items()
    ]


def _availability_rules(rules: dict[tuple[str, str], dict[str, Any]], env: str) -> dict[str, Any]:
    """The gateway's availability group alone (the latency groups read series
    these tests do not feed), without annotations: the expressions are under test."""
    (group,) = [
        copy.deepcopy(g)
        for g in rules[(env, "gateway")]["spec"]["groups"]
        if g["name"].endswith("availability")
    ]
    for rule in group["rules"]:
        rule.pop("annotations", None)
    return {"groups": [group]}


def _burn_alert(
    rules: dict[str, Any], env: str, window: slo.BurnWindow
) -> tuple[str, int, dict[str, str]]:
    """The window's availability alert: its name, its `for` in minutes, its labels."""
    name = f"SLOGatewayAvailabilityBurn{window.long}"
    (rule,) = [r for r in rules["groups"][0]["rules"] if r.get("alert") == name]
    labels = {
        "severity": window.severity,
        "slo": "availability",
        "environment": env,
        "long_window": window.long,
        "short_window": window.short,
    }
    assert rule["labels"] == labels
    return name, _minutes(rule.get("for", "0m")), labels


def _promtool_test(
    tmp_path: Path, rules: dict[str, Any], step_minutes: int, tests: list[Any]
) -> None:
    harness.promtool_test(rules["groups"], tests, tmp_path, f"{step_minutes}m")


def _period_days(example_tree: Rendered, env: str) -> int:
    return example_tree.result.platform.environments[env].settings.observability.slo.period_days


@pytest.mark.parametrize(("env", "objective"), [("dev", 99.9), ("prod", 99.99)])
@pytest.mark.parametrize("window", [TICKET_1D, TICKET_3D], ids=lambda w: w.long)
def test_ticket_alerts_fire_at_their_burn_rate_and_not_below(
    example_tree: Rendered,
    rules: dict[tuple[str, str], dict[str, Any]],
    tmp_path: Path,
    *,
    env: str,
    objective: float,
    window: slo.BurnWindow,
) -> None:
    """A steady error ratio just above the threshold for the whole long window
    (and the alert's `for`) fires; just below it does not."""
    step = TICKET_STEP_MINUTES
    group = _availability_rules(rules, env)
    name, wait, labels = _burn_alert(group, env, window)
    period = _period_days(example_tree, env)
    assert (
        example_tree.result.platform.environments[env].settings.observability.slo.availability
        == objective
    )
    limit = slo.threshold(window, objective, period)
    # The long window full of the ratio, the `for` run out, and an hour more.
    at = _minutes(window.long) + wait + 60
    tests = [
        {
            "interval": f"{step}m",
            "input_series": _counters([(at // step, limit * factor)], step),
            "alert_rule_test": [{"eval_time": f"{at}m", "alertname": name, "exp_alerts": expected}],
        }
        for factor, expected in ((1.05, [{"exp_labels": labels}]), (0.95, []))
    ]
    _promtool_test(tmp_path, group, step, tests)


@pytest.mark.parametrize("window", slo.WINDOWS, ids=lambda w: w.long)
def test_burn_alerts_wait_for_their_long_window(
    example_tree: Rendered,
    rules: dict[tuple[str, str], dict[str, Any]],
    tmp_path: Path,
    window: slo.BurnWindow,
) -> None:
    """After a healthy stretch, errors at 1.05x the threshold: the alert waits
    until the long window's average crosses it (a long window's worth of
    errors), not the short window's. At 90 % of the long window the average
    is 0.945x the threshold: silent."""
    env = "prod"
    # The short windows need several samples: 1 minute for the pages' 5m and 30m.
    step = TICKET_STEP_MINUTES if window.severity == "ticket" else 1
    group = _availability_rules(rules, env)
    name, wait, labels = _burn_alert(group, env, window)
    settings = example_tree.result.platform.environments[env].settings.observability.slo
    limit = slo.threshold(window, settings.availability, settings.period_days)
    long = _minutes(window.long)
    healthy = long  # a full long window without errors first
    end = healthy + long + wait + 2 * step
    series = _counters([(healthy // step, 0.0), ((end - healthy) // step + 1, limit * 1.05)], step)
    early = healthy + long * 9 // 10 // step * step  # on the evaluation grid
    due = healthy + long + wait + step
    tests = [
        {
            "interval": f"{step}m",
            "input_series": series,
            "alert_rule_test": [
                {"eval_time": f"{early}m", "alertname": name, "exp_alerts": []},
                {"eval_time": f"{due}m", "alertname": name, "exp_alerts": [{"exp_labels": labels}]},
            ],
        }
    ]
    _promtool_test(tmp_path, group, step, tests)


# -- data-tier health --------------------------------------------------------------

POSTGRES_POD = {"namespace": "data", "pod": "postgres-2", "cluster": "postgres"}
REDIS_POD = {"namespace": "data", "pod": "redis-node-0"}
LAG = slo_build.REPLICATION_LAG_SECONDS

# alert -> (metric, labels, bad value, good value); each is fed for an hour.
HEALTH_CASES: dict[str, tuple[str, dict[str, str], float, float]] = {
    "PostgresCollectorDown": ("cnpg_collector_up", POSTGRES_POD, 0, 1),
    # More than the limit fires; the limit itself does not.
    "PostgresReplicationLag": ("cnpg_pg_replication_lag", POSTGRES_POD, LAG + 1, LAG),
    "RedisDown": ("redis_up", REDIS_POD, 0, 1),
}


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_data_health_alerts_fire_after_their_for_and_not_otherwise(
    rules: dict[tuple[str, str], dict[str, Any]], tmp_path: Path, env: str
) -> None:
    """Each alert: silent while healthy, silent while the problem is younger
    than its `for`, firing after it; and blind to another namespace's pods."""
    (group,) = copy.deepcopy(rules[(env, "data")]["spec"]["groups"])
    alerts = {r["alert"]: r for r in group["rules"] if "alert" in r}
    # Elasticsearch's come from the exporter (tests/test_elastic_exporter.py).
    ours = {name for name in alerts if not name.startswith("Elasticsearch")}
    assert ours == set(HEALTH_CASES)
    for rule in group["rules"]:
        rule.pop("annotations", None)
    tests = []
    for name, (metric, labels, bad, good) in HEALTH_CASES.items():
        rule = alerts[name]
        wait = _minutes(rule["for"])
        assert wait > 0, name
        expected = [{"exp_labels": {**labels, **rule["labels"]}}]

        def series(value: float, pod: dict[str, str], metric: str = metric) -> dict[str, str]:
            selector = ",".join(f'{k}="{v}"' for k, v in sorted(pod.items()))
            return {"series": f"{metric}{{{selector}}}", "values": f"{value}x60"}

        elsewhere = {**labels, "namespace": "other"}
        for case, fed, checks in (
            ("healthy", [series(good, labels)], [(59, [])]),
            ("failing", [series(bad, labels)], [(wait - 1, []), (wait + 1, expected)]),
            ("elsewhere", [series(bad, elsewhere)], [(59, [])]),
        ):
            tests.append(
                {
                    "name": f"{name} {case}",
                    "interval": "1m",
                    "input_series": fed,
                    "alert_rule_test": [
                        {"eval_time": f"{minute}m", "alertname": name, "exp_alerts": exp}
                        for minute, exp in checks
                    ],
                }
            )
    _promtool_test(tmp_path, {"groups": [group]}, 1, tests)
