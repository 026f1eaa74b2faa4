"""Metrics: the `kube-prometheus-stack` chart (Prometheus, Alertmanager,
Grafana, the Prometheus Operator and its CRDs) and a ServiceMonitor or
PodMonitor for every component meshctl deploys that exports metrics.

Alertmanager routes by the `severity` label: `page` (and the chart's own
`critical`) to the receivers that take pages, `ticket` (and `warning`) to
those that take tickets, everything else to a receiver that drops it. A
receiver's URL or routing key never appears in the configuration: it is a key
in the secret store, made into a Secret by an ExternalSecret, mounted into
Alertmanager's pods and read from a file (`api_url_file`, `routing_key_file`,
`url_file`).
"""

from __future__ import annotations

from typing import Any

from meshctl import layout, models
from meshctl.build import (
    calico,
    elastic,
    elastic_exporter,
    logs,
    postgres,
    redis,
    secrets,
    service_metrics,
    telemetry,
    thanos,
    tls,
    tracing,
)
from meshctl.build.context import (
    DATA_WAVE,
    BuildContext,
    ComponentOutput,
    Manifest,
    Release,
    container_resources,
)
from meshctl.build.telemetry import Monitor

COMPONENT = "monitoring"
RELEASE = "kube-prometheus-stack"
GRAFANA_SECRET = "grafana-admin"
NULL_RECEIVER = "null"
# The prometheus-operator mounts alertmanagerSpec.secrets here.
SECRETS_DIR = "/etc/alertmanager/secrets"

# The severities meshctl's SLO rules use, and the chart's default rules' that
# mean the same (critical: act now; warning: act this week). `info` and the
# Watchdog go nowhere.
SEVERITY_LABELS: dict[models.Severity, tuple[str, ...]] = {
    "page": ("page", "critical"),
    "ticket": ("ticket", "warning"),
}

# Per receiver type: the Alertmanager config block, its *_file field, and the
# key of the Secret that holds the value (Alertmanager 0.25+ reads all three
# from files; the chart runs 0.34).
_RECEIVER_FIELDS = {
    "slack": ("slack_configs", "api_url_file", "url"),
    "pagerduty": ("pagerduty_configs", "routing_key_file", "routing-key"),
    "webhook": ("webhook_configs", "url_file", "url"),
}

# Pod labels and ports as the upstream charts and operators set them.
KONG_PODS = {"app.kubernetes.io/name": "kong", "app.kubernetes.io/instance": "kong"}
KONG_STATUS_PORT = 8100
ISTIOD_SERVICE = {"app": "istiod"}
ISTIOD_MONITORING_PORT = "http-monitoring"  # 15014 on the istiod Service
ISTIO_NAMESPACE = "istio-system"
SIDECAR_PODS = {"key": "security.istio.io/tlsMode", "operator": "Exists"}
SIDECAR_PORT = "http-envoy-prom"  # 15090 on the istio-proxy container
SIDECAR_PATH = "/stats/prometheus"
CERT_MANAGER_PODS = {
    "app.kubernetes.io/name": "cert-manager",
    "app.kubernetes.io/instance": "cert-manager",
    "app.kubernetes.io/component": "controller",
}
CERT_MANAGER_METRICS_PORT = 9402
CNPG_OPERATOR_PODS = {
    "app.kubernetes.io/name": "cloudnative-pg",
    "app.kubernetes.io/instance": postgres.OPERATOR_RELEASE,
}
CNPG_OPERATOR_METRICS_PORT = 8080
EXTERNAL_SECRETS_PODS = {
    "app.kubernetes.io/name": "external-secrets",
    "app.kubernetes.io/instance": "external-secrets",
}
EXTERNAL_SECRETS_METRICS_PORT = 8080


def build(ctx: BuildContext) -> ComponentOutput:
    observability = ctx.settings.observability
    if not observability.enabled:
        return ComponentOutput()
    namespace = observability.namespace
    resilience = ctx.settings.resilience
    prometheus = observability.prometheus
    alerting = observability.alerting
    prometheus_pods = {"app.kubernetes.io/name": "prometheus"}
    alertmanager_pods = {"app.kubernetes.io/name": "alertmanager"}
    manifests: list[Manifest] = []
    if namespace not in _platform_namespaces(ctx):
        # The ExternalSecrets below land here at wave 1, before the chart.
        manifests.extend(
            Manifest(COMPONENT, "namespace", doc, stage=layout.FOUNDATION)
            for doc in ctx.render(
                "platform/namespaces.yaml.j2",
                namespaces=[{"name": namespace, "injection": "disabled"}],
            )
        )
    manifests.extend(
        secrets.credential(ctx, COMPONENT, "credentials", wanted) for wanted in credentials(ctx)
    )
    values = ctx.render_one(
        "monitoring/values.yaml.j2",
        prometheus=prometheus,
        prometheus_resources=container_resources(prometheus.resources),
        prometheus_storage=_storage(prometheus.storage),
        prometheus_budget=resilience.disruption_budgets and prometheus.replicas > 1,
        prometheus_spread=ctx.zone_spread(prometheus_pods) or [],
        alerting=alerting,
        alertmanager_config=alertmanager_config(alerting.receivers),
        alertmanager_secrets=[receiver_secret(r) for r in alerting.receivers],
        alertmanager_budget=resilience.disruption_budgets and alerting.replicas > 1,
        alertmanager_spread=ctx.zone_spread(alertmanager_pods) or [],
        anti_affinity=resilience.anti_affinity,
        grafana=observability.grafana,
        grafana_secret=GRAFANA_SECRET,
        grafana_datasources=grafana_datasources(ctx),
        grafana_secret_mounts=_grafana_secret_mounts(ctx),
        thanos=_thanos(ctx),
    )
    # At the data wave: Grafana and Alertmanager mount Secrets that the
    # foundation stage (wave 1) makes; at wave 0 their pods would wait for them
    # and hold every later wave. Nothing before the resources stage needs the
    # monitoring CRDs.
    release = Release(RELEASE, RELEASE, namespace, values, wave=DATA_WAVE, component=COMPONENT)
    manifests.extend(
        Manifest(COMPONENT, "monitors", doc)
        for doc in ctx.render(
            "monitoring/monitors.yaml.j2", namespace=namespace, monitors=monitors(ctx)
        )
    )
    return ComponentOutput([release], manifests)


def _platform_namespaces(ctx: BuildContext) -> set[str]:
    """The namespaces the platform component already creates."""
    data = ctx.settings.data
    found = {s.namespace for s in ctx.spec.services} | {ctx.settings.gateway.namespace}
    if data.postgres.enabled or data.redis.enabled or data.elasticsearch.enabled:
        found.add(data.namespace)
    return found


def _storage(volume: models.Volume) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": volume.size}},
    }
    if volume.storage_class:
        spec["storageClassName"] = volume.storage_class
    return {"volumeClaimTemplate": {"spec": spec}}


def _thanos(ctx: BuildContext) -> dict[str, Any] | None:
    """The sidecar's settings, when Thanos is on."""
    if not thanos.enabled(ctx):
        return None
    return {
        "secret": thanos.OBJSTORE_SECRET,
        "key": thanos.OBJSTORE_KEY,
        "external_labels": thanos.external_labels(ctx),
        "query_url": thanos.query_url(ctx),
    }


# -- Grafana's data sources ----------------------------------------------------------

GRAFANA_CLIENT = "grafana"  # its Elasticsearch user (telemetry.elasticsearch_clients)
GRAFANA_SECRETS_DIR = "/etc/secrets"
LOGS_DATASOURCE_UID = "logs"
JAEGER_DATASOURCE_UID = "jaeger"


def _grafana_reads_elasticsearch(ctx: BuildContext) -> bool:
    return any(c.name == GRAFANA_CLIENT for c in telemetry.elasticsearch_clients(ctx))


def _grafana_secret_mounts(ctx: BuildContext) -> list[dict[str, Any]]:
    if not _grafana_reads_elasticsearch(ctx):
        return []
    return [
        {
            "name": secret,
            "secretName": secret,
            "mountPath": f"{GRAFANA_SECRETS_DIR}/{secret}",
            "readOnly": True,
        }
        for secret in (
            telemetry.credentials_secret(GRAFANA_CLIENT),
            telemetry.ca_secret(GRAFANA_CLIENT),
        )
    ]


def grafana_datasources(ctx: BuildContext) -> list[dict[str, Any]]:
    """Jaeger and the logs index, next to the chart's Prometheus (or Thanos)."""
    observability = ctx.settings.observability
    if not observability.grafana:
        return []
    sources: list[dict[str, Any]] = []
    logs_on = observability.logs.enabled and _grafana_reads_elasticsearch(ctx)
    if observability.tracing.enabled:
        jaeger: dict[str, Any] = {
            "name": "Jaeger",
            "uid": JAEGER_DATASOURCE_UID,
            "type": "jaeger",
            "access": "proxy",
            "url": telemetry.jaeger_query_url(ctx),
            "editable": False,
        }
        if logs_on:
            # From a span to the logs of the same trace (Istio's access logs
            # and the services' JSON logs carry trace_id).
            jaeger["jsonData"] = {
                "tracesToLogsV2": {
                    "datasourceUid": LOGS_DATASOURCE_UID,
                    "filterByTraceID": True,
                    "spanStartTimeShift": "-5m",
                    "spanEndTimeShift": "5m",
                }
            }
        sources.append(jaeger)
    if logs_on:
        secret_dir = f"{GRAFANA_SECRETS_DIR}/{telemetry.credentials_secret(GRAFANA_CLIENT)}"
        ca_dir = f"{GRAFANA_SECRETS_DIR}/{telemetry.ca_secret(GRAFANA_CLIENT)}"
        sources.append(
            {
                "name": "Logs",
                "uid": LOGS_DATASOURCE_UID,
                "type": "elasticsearch",
                "access": "proxy",
                "url": elastic.url(ctx),
                "basicAuth": True,
                "basicAuthUser": GRAFANA_CLIENT,
                "editable": False,
                "jsonData": {
                    "index": telemetry.LOG_INDICES,
                    "timeField": "@timestamp",
                    "logMessageField": telemetry.LOG_MESSAGE_FIELD,
                    "tlsAuthWithCACert": True,
                },
                "secureJsonData": {
                    "basicAuthPassword": "$__file{" + secret_dir + "/password}",
                    "tlsCACert": "$__file{" + ca_dir + "/ca.crt}",
                },
            }
        )
    return sources


# -- credentials -------------------------------------------------------------------


def receiver_secret(receiver: models.Receiver) -> str:
    """The Secret holding a receiver's URL or routing key."""
    return f"alertmanager-{receiver.name}"


def credentials(ctx: BuildContext) -> list[secrets.Credential]:
    """The Secrets the stack reads: Grafana's admin login, each receiver's key."""
    observability = ctx.settings.observability
    namespace = observability.namespace
    wanted = []
    if observability.grafana:
        wanted.append(
            secrets.Credential(
                GRAFANA_SECRET,
                namespace,
                {"admin-user": "admin-user", "admin-password": "admin-password"},
            )
        )
    for receiver in observability.alerting.receivers:
        _, _, secret_key = _RECEIVER_FIELDS[receiver.type]
        wanted.append(
            secrets.Credential(
                receiver_secret(receiver),
                namespace,
                {secret_key: "value"},
                remote=receiver.key,
            )
        )
    return wanted


# -- Alertmanager ------------------------------------------------------------------


def _receiver(receiver: models.Receiver) -> dict[str, Any]:
    block, file_field, secret_key = _RECEIVER_FIELDS[receiver.type]
    config: dict[str, Any] = {
        file_field: f"{SECRETS_DIR}/{receiver_secret(receiver)}/{secret_key}",
        "send_resolved": True,
    }
    if receiver.type == "slack" and receiver.channel:
        config["channel"] = (
            receiver.channel if receiver.channel.startswith("#") else ("#" + receiver.channel)
        )
    return {"name": receiver.name, block: [config]}


def _severity_matcher(severities: list[models.Severity]) -> str:
    labels = sorted({label for s in severities for label in SEVERITY_LABELS[s]})
    return f'severity =~ "{"|".join(labels)}"'


def alertmanager_config(receivers: list[models.Receiver]) -> dict[str, Any]:
    """The whole Alertmanager configuration (`alertmanager.config`)."""
    routes: list[dict[str, Any]] = [
        # The chart's always-firing heartbeat and the inhibitor of info alerts.
        {"receiver": NULL_RECEIVER, "matchers": ['alertname = "Watchdog"']},
        {"receiver": NULL_RECEIVER, "matchers": ['alertname = "InfoInhibitor"']},
    ]
    routes.extend(
        {
            "receiver": receiver.name,
            "matchers": [_severity_matcher(receiver.severities)],
            # Every receiver that takes a severity gets it, not only the first.
            "continue": True,
        }
        for receiver in receivers
        if receiver.severities
    )
    return {
        "global": {"resolve_timeout": "5m"},
        "inhibit_rules": [
            # A page silences the ticket for the same problem.
            {
                "source_matchers": ['severity =~ "page|critical"'],
                "target_matchers": ['severity =~ "ticket|warning|info"'],
                "equal": ["namespace", "alertname"],
            },
            {
                "source_matchers": ['severity =~ "ticket|warning"'],
                "target_matchers": ['severity = "info"'],
                "equal": ["namespace", "alertname"],
            },
            {
                "source_matchers": ['alertname = "InfoInhibitor"'],
                "target_matchers": ['severity = "info"'],
                "equal": ["namespace"],
            },
        ],
        "route": {
            "receiver": NULL_RECEIVER,
            "group_by": ["alertname", "namespace"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": routes,
        },
        "receivers": [{"name": NULL_RECEIVER}, *(_receiver(r) for r in receivers)],
        "templates": ["/etc/alertmanager/config/*.tmpl"],
    }


# -- monitors ----------------------------------------------------------------------


def monitors(ctx: BuildContext) -> list[dict[str, Any]]:
    """A monitor for every component that exports metrics, as template input."""
    settings = ctx.settings
    found: list[Monitor] = []
    gateway = settings.gateway
    if gateway.metrics.enabled:
        found.append(
            Monitor(
                "PodMonitor",
                "kong",
                [gateway.namespace],
                {"matchLabels": dict(KONG_PODS)},
                [{"portNumber": KONG_STATUS_PORT, "path": "/metrics"}],
                "Kong's status listener: the prometheus plugin's request metrics.",
            )
        )
    found.append(
        Monitor(
            "ServiceMonitor",
            "istiod",
            [ISTIO_NAMESPACE],
            {"matchLabels": dict(ISTIOD_SERVICE)},
            [{"port": ISTIOD_MONITORING_PORT}],
            "istiod's control-plane metrics (port 15014).",
        )
    )
    mesh_namespaces = sorted({s.namespace for s in ctx.spec.services} | {gateway.namespace})
    found.append(
        Monitor(
            "PodMonitor",
            "envoy-stats",
            mesh_namespaces,
            {"matchExpressions": [dict(SIDECAR_PODS)]},
            [{"port": SIDECAR_PORT, "path": SIDECAR_PATH}],
            "Every Istio sidecar's Envoy (istio_requests_total and friends).",
        )
    )
    data = settings.data
    if data.postgres.enabled:
        found.append(
            Monitor(
                "PodMonitor",
                "postgres",
                [data.namespace],
                {
                    "matchLabels": {
                        "cnpg.io/cluster": postgres.CLUSTER,
                        "cnpg.io/podRole": "instance",
                    }
                },
                [{"portNumber": postgres.METRICS_PORT}],
                "CloudNativePG's exporter in each PostgreSQL instance.",
            )
        )
        found.append(
            Monitor(
                "PodMonitor",
                "postgres-poolers",
                [data.namespace],
                {
                    "matchExpressions": [
                        {
                            "key": "cnpg.io/poolerName",
                            "operator": "In",
                            "values": [postgres.pooler_name("rw"), postgres.pooler_name("ro")],
                        }
                    ]
                },
                [{"portNumber": postgres.POOLER_METRICS_PORT}],
                "PgBouncer's exporter in each pooler pod.",
            )
        )
        found.append(
            Monitor(
                "PodMonitor",
                "cloudnative-pg",
                [postgres.OPERATOR_NAMESPACE],
                {"matchLabels": dict(CNPG_OPERATOR_PODS)},
                [{"portNumber": CNPG_OPERATOR_METRICS_PORT}],
                "The CloudNativePG operator (reconciliation, backups).",
            )
        )
    if data.redis.enabled and data.redis.metrics:
        found.append(
            Monitor(
                "PodMonitor",
                "redis",
                [data.namespace],
                {"matchLabels": dict(redis.POD_LABELS)},
                [{"portNumber": redis.EXPORTER_PORT}],
                "The redis_exporter sidecar of each Redis pod.",
            )
        )
    found.append(
        Monitor(
            "PodMonitor",
            "cert-manager",
            [tls.NAMESPACE],
            {"matchLabels": dict(CERT_MANAGER_PODS)},
            [{"portNumber": CERT_MANAGER_METRICS_PORT}],
            "cert-manager's controller (certificate expiry, ACME calls).",
        )
    )
    if settings.secrets is not None:
        found.append(
            Monitor(
                "PodMonitor",
                "external-secrets",
                [secrets.NAMESPACE],
                {"matchLabels": dict(EXTERNAL_SECRETS_PODS)},
                [{"portNumber": EXTERNAL_SECRETS_METRICS_PORT}],
                "External Secrets Operator's controller (sync errors).",
            )
        )
    for component in (calico, elastic, service_metrics, thanos, tracing, logs, elastic_exporter):
        found.extend(component.monitors(ctx))
    return [
        {
            "kind": m.kind,
            "name": m.name,
            "namespaces": m.namespaces,
            "selector": m.selector,
            "endpoints": m.endpoints,
            "description": m.description,
        }
        for m in found
    ]
