"""SLO alerts: PrometheusRules from each environment's availability and latency
targets (multi-window, multi-burn-rate, see meshctl/slo.py and docs/slo.md),
and basic health alerts for the data tier.

The service level indicators are Kong's own request metrics (prometheus
plugin, Kong 3.x, enabled globally by meshctl/build/kong.py):

- ``kong_http_requests_total{service, route, code, source, consumer, workspace}``:
  a request is bad when ``code`` is 5xx (whoever answered: the upstream or Kong);
- ``kong_request_latency_ms`` (histogram of the total request time, buckets 25,
  50, 80, 100, 250, 400, 700, 1000, ... ms): a request is slow when it falls
  above the bucket of the latency target.

Kong labels requests with the Kong service the ingress controller generated
from the Ingress backend: ``<namespace>.<service>.pnum-<port>`` (KIC 2.10+ and
3.x), which is how the per-service rules pick a service.
"""

from __future__ import annotations

from typing import Any

from msgspec import Struct

from meshctl import models
from meshctl.build import elastic_exporter
from meshctl.build.context import BuildContext, ComponentOutput, Manifest
from meshctl.slo import WINDOWS, BurnWindow, budget_consumed, burn_rate, error_budget, threshold

COMPONENT = "slo"
RUNBOOK = "docs/slo.md"
# kong_request_latency_ms's buckets in Kong 3.x (UPSTREAM_LATENCY_BUCKETS of
# kong/plugins/prometheus/exporter.lua; not configurable in 3.9).
KONG_LATENCY_BUCKETS_MS = (25, 50, 80, 100, 250, 400, 700, 1000, 2000, 5000, 10000, 30000, 60000)
# The share of requests allowed to be slower than the p95 / p99 target.
LATENCY_OBJECTIVES = (("p95", 95.0), ("p99", 99.0))
# Replication lag (seconds) above which a PostgreSQL standby is worth a ticket:
# failover to it would lose that much.
REPLICATION_LAG_SECONDS = 30


class Indicator(Struct, frozen=True):
    """One SLO: what a bad event is, and the objective in percent."""

    slo: str  # availability | latency-p95 | latency-p99: the `slo` label
    title: str  # for rule names: Availability, LatencyP95
    objective: float  # percent of good events
    bad: str  # PromQL template of bad events per second: {selector}, {window}, {by}
    total: str  # PromQL template of all events per second
    meaning: str  # what a bad event is, for the annotations


def build(ctx: BuildContext) -> ComponentOutput:
    observability = ctx.settings.observability
    if not observability.enabled:
        return ComponentOutput()
    manifests: list[Manifest] = []
    if ctx.settings.gateway.metrics.enabled:
        indicators = indicators_for(observability.slo)
        manifests.append(
            _rule(ctx, "gateway", [_slo_group(ctx, "gateway", i, None) for i in indicators])
        )
        services = kong_services(ctx)
        if services:
            # DNS labels and dots: only the dots need escaping (twice: a
            # PromQL string holding a regular expression).
            names = "|".join(s.replace(".", "\\\\.") for s in services)
            selector = f'service=~"{names}"'
            manifests.append(
                _rule(
                    ctx, "services", [_slo_group(ctx, "service", i, selector) for i in indicators]
                )
            )
    health = _data_health(ctx)
    if health["rules"]:
        manifests.append(_rule(ctx, "data", [health]))
    return ComponentOutput(manifests=manifests)


def kong_services(ctx: BuildContext) -> list[str]:
    """The Kong services the ingress controller makes for the spec's routed services."""
    return sorted(
        kong_service_name(service.namespace, service.name, service.port)
        for service in ctx.spec.services
        if service.routes
    )


def kong_service_name(namespace: str, service: str, port: int) -> str:
    """KIC's name for the Kong service of an Ingress backend (numeric port)."""
    return f"{namespace}.{service}.pnum-{port}"


def latency_bucket(target_ms: int) -> int:
    """The histogram bucket a latency target is measured at: the largest bucket
    not above the target (stricter than the target when it is not a bucket
    boundary), or the smallest bucket for a target below all of them."""
    below = [b for b in KONG_LATENCY_BUCKETS_MS if b <= target_ms]
    return below[-1] if below else KONG_LATENCY_BUCKETS_MS[0]


def indicators_for(slo: models.Slo) -> list[Indicator]:
    total_requests = "sum{by}(rate(kong_http_requests_total{{{selector}}}[{window}]))"
    out = [
        Indicator(
            slo="availability",
            title="Availability",
            objective=slo.availability,
            bad='sum{by}(rate(kong_http_requests_total{{code=~"5..",{selector}}}[{window}]))',
            total=total_requests,
            meaning="requests answered with a 5xx status",
        )
    ]
    latency_total = "sum{by}(rate(kong_request_latency_ms_count{{{selector}}}[{window}]))"
    for quantile, objective in LATENCY_OBJECTIVES:
        target = slo.latency_p95_ms if quantile == "p95" else slo.latency_p99_ms
        bucket = latency_bucket(target)
        # Prometheus 2 keeps the exporter's `le` text ("50"), Prometheus 3
        # normalizes it to a float ("50.0"): match either.
        good = (
            "sum{by}(rate(kong_request_latency_ms_bucket"
            f'{{{{le=~"0*{bucket}(\\\\.0+)?",{{selector}}}}}}[{{window}}]))'
        )
        out.append(
            Indicator(
                slo=f"latency-{quantile}",
                title=f"Latency{quantile.upper()}",
                objective=objective,
                bad=f"({latency_total} - {good})",
                total=latency_total,
                meaning=f"requests slower than {bucket} ms",
            )
        )
    return out


def _windows() -> list[str]:
    seen: list[str] = []
    for window in WINDOWS:
        for duration in (window.short, window.long):
            if duration not in seen:
                seen.append(duration)
    return sorted(seen, key=lambda d: BurnWindow("", d, d, 0).long_hours)


def record_name(scope: str, indicator: Indicator, window: str) -> str:
    kind = indicator.slo.replace("-", "_")
    return f"{scope}:slo_{kind}_errors:ratio_rate{window}"


def _number(value: float) -> str:
    return f"{value:.10g}"


def _slo_group(
    ctx: BuildContext, scope: str, indicator: Indicator, selector: str | None
) -> dict[str, Any]:
    """Recording rules (the error ratio over each window) and the four burn-rate
    alerts, in one group: Prometheus evaluates a group's rules in order, so the
    alerts read this evaluation's ratios."""
    by = " by (service)" if scope == "service" else ""
    where = selector or ""
    rules: list[dict[str, Any]] = []
    for duration in _windows():
        bad = indicator.bad.format(by=by, selector=where, window=duration)
        total = indicator.total.format(by=by, selector=where, window=duration)
        rules.append(
            {
                "record": record_name(scope, indicator, duration),
                "expr": _tidy(f"{bad}\n/\n{total}"),
                "labels": {"slo": indicator.slo},
            }
        )
    period = ctx.settings.observability.slo.period_days
    budget = error_budget(indicator.objective)
    subject = "Kong service {{ $labels.service }}" if scope == "service" else "The gateway"
    for window in WINDOWS:
        limit = threshold(window, indicator.objective, period)
        rate = burn_rate(window, period)
        consumed = budget_consumed(window, period)
        long_record = record_name(scope, indicator, window.long)
        short_record = record_name(scope, indicator, window.short)
        rules.append(
            {
                "alert": alert_name(scope, indicator, window),
                "expr": (
                    f"{long_record} > {_number(limit)}\nand\n{short_record} > {_number(limit)}"
                ),
                "labels": {
                    "severity": window.severity,
                    "slo": indicator.slo,
                    "environment": ctx.environment,
                    "long_window": window.long,
                    "short_window": window.short,
                },
                "annotations": {
                    "summary": (
                        f"{subject} burns its {indicator.slo} error budget {_number(rate)}x "
                        f"too fast ({window.long} and {window.short})"
                    ),
                    "description": (
                        f"{subject} in {ctx.environment}: {indicator.meaning} are "
                        "{{ $value | humanizePercentage }} of all over the last "
                        f"{window.long}, and above {_number(limit * 100)} % over the last "
                        f"{window.short} too. Objective {_number(indicator.objective)} % over "
                        f"{period} days (error budget {_number(budget * 100)} %); at this "
                        f"rate {_number(consumed * 100)} % of the budget went in "
                        f"{window.long}, and all of it goes in "
                        f"{_duration_text(period * 24 / rate)}."
                    ),
                    "runbook": (
                        f"{RUNBOOK}#what-an-alert-means: find the failing routes with "
                        "sum by (service, route, code) "
                        f"(rate(kong_http_requests_total[{window.short}]))"
                        if indicator.slo == "availability"
                        else f"{RUNBOOK}#what-an-alert-means: compare "
                        "kong_upstream_latency_ms (the service) with kong_kong_latency_ms (Kong)"
                    ),
                },
            }
        )
    return {"name": f"slo-{scope}-{indicator.slo}", "rules": rules}


def _tidy(expr: str) -> str:
    """Drop the empty matchers a selector-less (gateway-wide) rule leaves."""
    return expr.replace(",}", "}").replace("{}", "")


def alert_name(scope: str, indicator: Indicator, window: BurnWindow) -> str:
    return f"SLO{scope.title()}{indicator.title}Burn{window.long}"


def _duration_text(hours: float) -> str:
    return (
        f"{_number(round(hours / 24, 1))} days" if hours >= 48 else f"{_number(round(hours, 1))} h"
    )


def _data_health(ctx: BuildContext) -> dict[str, Any]:
    """Up/down alerts for the data tier's exporters (Elasticsearch's from the
    exporter meshctl runs, see docs/elasticsearch-metrics.md)."""
    data = ctx.settings.data
    namespace = data.namespace
    labels = {"environment": ctx.environment, "slo": "health"}
    rules: list[dict[str, Any]] = []
    if data.postgres.enabled:
        rules += [
            {
                "alert": "PostgresCollectorDown",
                "expr": f'cnpg_collector_up{{namespace="{namespace}"}} == 0',
                "for": "5m",
                "labels": {**labels, "severity": "page"},
                "annotations": {
                    "summary": "PostgreSQL instance {{ $labels.pod }} is down",
                    "description": (
                        "The CloudNativePG instance manager of {{ $labels.pod }} (cluster "
                        "{{ $labels.cluster }}) cannot reach PostgreSQL for 5 minutes."
                    ),
                    "runbook": f"{RUNBOOK}#data-tier-health",
                },
            },
            {
                "alert": "PostgresReplicationLag",
                "expr": (
                    f'cnpg_pg_replication_lag{{namespace="{namespace}"}} > '
                    f"{REPLICATION_LAG_SECONDS}"
                ),
                "for": "10m",
                "labels": {**labels, "severity": "ticket"},
                "annotations": {
                    "summary": "PostgreSQL standby {{ $labels.pod }} lags behind the primary",
                    "description": (
                        "{{ $labels.pod }} replays WAL {{ $value | humanizeDuration }} behind "
                        f"the primary (more than {REPLICATION_LAG_SECONDS} s for 10 minutes): "
                        "a failover to it now would lose that much."
                    ),
                    "runbook": f"{RUNBOOK}#data-tier-health",
                },
            },
        ]
    if data.redis.enabled and data.redis.metrics:
        rules.append(
            {
                "alert": "RedisDown",
                "expr": f'redis_up{{namespace="{namespace}"}} == 0',
                "for": "5m",
                "labels": {**labels, "severity": "page"},
                "annotations": {
                    "summary": "Redis {{ $labels.pod }} is down",
                    "description": (
                        "The Redis exporter beside {{ $labels.pod }} cannot reach Redis "
                        "for 5 minutes."
                    ),
                    "runbook": f"{RUNBOOK}#data-tier-health",
                },
            }
        )
    # Elasticsearch's come from its exporter's series (elastic_exporter.py).
    rules += elastic_exporter.health_rules(ctx)
    return {"name": "data-health", "rules": rules}


def _rule(ctx: BuildContext, group: str, groups: list[dict[str, Any]]) -> Manifest:
    body = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": f"slo-{group}",
            "namespace": ctx.settings.observability.namespace,
            "labels": {"app.kubernetes.io/managed-by": "meshctl"},
        },
        "spec": {"groups": groups},
    }
    return Manifest(COMPONENT, group, body)
