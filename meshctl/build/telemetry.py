"""What the observability components share with the rest of the build, without
building anything: the monitor shape, the tracing collector Istio and Kong send
spans to, and the platform's own clients of Elasticsearch (their users, roles
and pods), which the Elasticsearch component makes users for and the network
policy admits.

Every index the platform writes starts with ``platform-``: logs in
``platform-logs-*``, spans in ``platform-jaeger-*``. A service's own indices
are ``<name>`` and ``<name>-*``, so no service may be called ``platform`` (or
any of the clients' names) when it uses Elasticsearch.
"""

from __future__ import annotations

from typing import Any

from msgspec import Struct, field

from meshctl import models
from meshctl.build.context import BuildContext

INDEX_PREFIX = "platform"
LOG_INDEX_PREFIX = f"{INDEX_PREFIX}-logs"
LOG_INDICES = f"{LOG_INDEX_PREFIX}-*"
JAEGER_INDEX_PREFIX = INDEX_PREFIX  # Jaeger appends -jaeger-span-..., -jaeger-service-...
JAEGER_INDICES = f"{JAEGER_INDEX_PREFIX}-jaeger-*"

# The jaeger chart's release and Service (OTLP gRPC 4317, OTLP HTTP 4318).
JAEGER_RELEASE = "jaeger"
OTLP_GRPC_PORT = 4317
OTLP_HTTP_PORT = 4318
JAEGER_QUERY_PORT = 16686  # the UI and its HTTP API (Grafana's Jaeger data source)
# The field that holds a log line's text in the log indices (Fluent Bit's `log`).
LOG_MESSAGE_FIELD = "log"

# Pods of the platform's Elasticsearch clients, as their charts label them.
FLUENT_BIT_PODS = {
    "app.kubernetes.io/name": "fluent-bit",
    "app.kubernetes.io/instance": "fluent-bit",
}
# Istio's per-pod opt-out (its label, which the injector honours before the
# namespace's setting): the observability stack's Jobs, whose pods would never
# complete with a sidecar running.
NO_SIDECAR = {"sidecar.istio.io/inject": "false"}
JAEGER_PODS = {"app.kubernetes.io/name": "jaeger", "app.kubernetes.io/instance": JAEGER_RELEASE}
GRAFANA_PODS = {"app.kubernetes.io/name": "grafana"}
LOG_RETENTION_PODS = {"app.kubernetes.io/name": "log-retention"}
ELASTICSEARCH_EXPORTER_PODS = {"app.kubernetes.io/name": "elasticsearch-exporter"}


class Monitor(Struct, frozen=True):
    """A ServiceMonitor or PodMonitor: pods (or a Service) in namespaces, a port."""

    kind: str  # PodMonitor | ServiceMonitor
    name: str
    namespaces: list[str]
    selector: dict[str, Any]
    endpoints: list[dict[str, Any]]
    description: str


class ElasticsearchClient(Struct, frozen=True):
    """A platform component that talks to Elasticsearch as a file-realm user.

    Its password is the store key ``<prefix>/elasticsearch-<name>`` (property
    ``password``); it gets the Secret ``<name>-elasticsearch`` (url, host, port,
    username, password) and ``<name>-elasticsearch-ca`` (ECK's CA) in
    ``namespace``, like a service that uses Elasticsearch.
    """

    name: str  # the user, and the role's name suffix
    namespace: str
    pods: dict[str, str]
    cluster: tuple[str, ...]
    indices: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    kind: str = "platform"  # the role is <kind>-<name>


def credentials_secret(client: str) -> str:
    """The Secret with an Elasticsearch client's url, host, port, username, password."""
    return f"{client}-elasticsearch"


def ca_secret(client: str) -> str:
    """The Secret with ECK's CA (`ca.crt`), copied next to an Elasticsearch client."""
    return f"{client}-elasticsearch-ca"


def _indices(names: list[str], privileges: list[str]) -> dict[str, Any]:
    return {"names": names, "privileges": privileges}


def elasticsearch_clients(ctx: BuildContext) -> list[ElasticsearchClient]:
    """The observability stack's users of the data tier's Elasticsearch."""
    observability = ctx.settings.observability
    if not (observability.enabled and ctx.settings.data.elasticsearch.enabled):
        return []
    namespace = observability.namespace
    clients = []
    if observability.logs.enabled:
        clients.append(
            ElasticsearchClient(
                "fluent-bit",
                namespace,
                FLUENT_BIT_PODS,
                ("monitor",),
                (_indices([LOG_INDICES], ["create_index", "create_doc", "view_index_metadata"]),),
            )
        )
        clients.append(
            ElasticsearchClient(
                "log-retention",
                namespace,
                LOG_RETENTION_PODS,
                ("manage_ilm", "manage_index_templates"),
                (_indices([LOG_INDICES], ["manage", "manage_ilm", "view_index_metadata"]),),
            )
        )
    if observability.tracing.enabled:
        clients.append(
            ElasticsearchClient(
                "jaeger",
                namespace,
                JAEGER_PODS,
                ("monitor", "manage_index_templates"),
                (_indices([JAEGER_INDICES], ["all"]),),
            )
        )
    read = [LOG_INDICES] * observability.logs.enabled + [JAEGER_INDICES] * (
        observability.tracing.enabled
    )
    if observability.grafana and read:
        clients.append(
            ElasticsearchClient(
                "grafana",
                namespace,
                GRAFANA_PODS,
                ("monitor",),
                (_indices(read, ["read", "view_index_metadata"]),),
            )
        )
    clients.append(
        ElasticsearchClient(
            "elasticsearch-exporter",
            namespace,
            ELASTICSEARCH_EXPORTER_PODS,
            ("monitor",),
            (_indices(["*"], ["monitor"]),),
        )
    )
    return clients


def jaeger_host(ctx: BuildContext) -> str:
    return f"{JAEGER_RELEASE}.{ctx.settings.observability.namespace}.svc"


def jaeger_query_url(ctx: BuildContext) -> str:
    return f"http://{jaeger_host(ctx)}:{JAEGER_QUERY_PORT}"


def collector(ctx: BuildContext) -> models.Collector | None:
    """Where Istio and Kong send spans: the spec's collector, else Jaeger when
    meshctl deploys it, else nowhere."""
    configured = ctx.settings.mesh.tracing.collector
    if configured is not None:
        return configured
    observability = ctx.settings.observability
    if observability.enabled and observability.tracing.enabled:
        return models.Collector.model_validate(
            {"host": jaeger_host(ctx), "port": OTLP_GRPC_PORT, "httpPort": OTLP_HTTP_PORT}
        )
    return None
