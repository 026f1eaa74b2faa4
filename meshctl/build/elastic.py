"""Elasticsearch and Kibana through ECK (Elastic Cloud on Kubernetes).

The `eck-operator` chart runs the operator in ``elastic-system`` with its
CRDs; the data stage holds an ``Elasticsearch`` named ``elasticsearch`` (one
node set ``default`` with every role) and, when enabled, a ``Kibana`` named
``kibana`` in the data namespace. ECK keeps TLS on for HTTP (its own
self-signed CA) and transport.

Services never get the ``elastic`` superuser. Each service that
``uses: [elasticsearch]`` is a user of ECK's file realm: the store key
``<prefix>/elasticsearch-<service>`` (property ``password``) becomes a
basic-auth Secret in the data namespace (username = the service's name, role
``service-<name>``: its own indices ``<name>`` and ``<name>-*``) and, from
the same key, the Secret ``<service>-elasticsearch`` in the service's
namespace with the URL and credentials. ECK's HTTP CA lives in the data
namespace only; a Kubernetes-provider ClusterSecretStore that may read that one
Secret copies it as ``<service>-elasticsearch-ca``. The observability stack's
components (Fluent Bit, Jaeger, Grafana, the log retention job, the metrics
exporter: ``telemetry.elasticsearch_clients``) are users the same way, each
with a role ``platform-<name>`` that grants what it needs. See docs/data.md.
"""

from __future__ import annotations

from typing import Any

from meshctl import layout, models, yamlio
from meshctl.build import secrets, telemetry
from meshctl.build.context import (
    CRDS_WAVE,
    BuildContext,
    ComponentOutput,
    Endpoint,
    Manifest,
    Release,
    container_resources,
)
from meshctl.build.telemetry import Monitor
from meshctl.dependencies import ELASTICSEARCH_RESERVED_NAMES, memory_bytes
from meshctl.errors import RenderError

COMPONENT = "elastic"
OPERATOR_RELEASE = "eck-operator"
OPERATOR_NAMESPACE = "elastic-system"
# The operator's pods (the chart's selector labels: its nameOverride and the
# release) and, with observability on, its metrics: plain HTTP on the manager
# container's port `metrics` (config.metrics.port; the chart's default 0 is off).
OPERATOR_PODS = {
    "app.kubernetes.io/name": "elastic-operator",
    "app.kubernetes.io/instance": OPERATOR_RELEASE,
}
OPERATOR_METRICS_PORT = 9090
NAME = "elasticsearch"  # the Elasticsearch resource; ECK derives every name from it
KIBANA = "kibana"
NODE_SET = "default"
HTTP_SERVICE = f"{NAME}-es-http"
HTTP_PORT = 9200
TRANSPORT_PORT = 9300
# ECK's public half of the HTTP certificate: ca.crt and tls.crt, no key.
CA_SECRET = f"{NAME}-es-http-certs-public"
CA_READER = f"{NAME}-ca-reader"
ROLES_SECRET = f"{NAME}-roles"
DATA_VOLUME = "elasticsearch-data"  # ECK's data volume claim name
# Labels ECK puts on the pods it runs.
CLUSTER_LABEL = "elasticsearch.k8s.elastic.co/cluster-name"
KIBANA_LABEL = "kibana.k8s.elastic.co/name"
# Elasticsearch's default with a TLS 1.3 JDK; stated so no setting can lower it.
TLS_PROTOCOLS = ["TLSv1.3", "TLSv1.2"]
# ECK rotates its certificates a day before they expire (caRotateBefore).
CA_REFRESH = "1h"


def endpoint(ctx: BuildContext) -> Endpoint | None:
    if not ctx.settings.data.elasticsearch.enabled:
        return None
    return Endpoint(
        name="elasticsearch",
        namespace=ctx.settings.data.namespace,
        host=host(ctx),
        port=HTTP_PORT,
        selectors=({CLUSTER_LABEL: NAME},),
        # Transport (9300) between the nodes, and HTTP: a node's own tooling
        # reaches the cluster through the HTTP Service, which may pick another node.
        peer_ports=(HTTP_PORT, TRANSPORT_PORT),
        operator=(OPERATOR_NAMESPACE, (HTTP_PORT,)),
        platform_clients=tuple(
            (client.namespace, dict(client.pods)) for client in telemetry.elasticsearch_clients(ctx)
        ),
    )


def kibana_pods(ctx: BuildContext) -> dict[str, str] | None:
    """Kibana's pods (data namespace), which call Elasticsearch on HTTP_PORT; None
    when Kibana is off. Not part of the Endpoint: they are a client, not a server."""
    es = ctx.settings.data.elasticsearch
    return {KIBANA_LABEL: KIBANA} if es.enabled and es.kibana.enabled else None


def host(ctx: BuildContext) -> str:
    return f"{HTTP_SERVICE}.{ctx.settings.data.namespace}.svc"


def url(ctx: BuildContext) -> str:
    return f"https://{host(ctx)}:{HTTP_PORT}"


def java_heap(quantity: str) -> str:
    """A Kubernetes memory quantity as a JVM size: 2Gi -> 2g, 512Mi -> 512m.

    A size that is no whole number of MiB (decimal units: 1G) is rounded down
    to one: the JVM wants multiples of 1024, and the heap must stay under the
    size asked for.
    """
    size = memory_bytes(quantity)  # the model's pattern guarantees the form
    if size >= 2**30 and size % 2**30 == 0:
        return f"{size // 2**30}g"
    if size < 2**21:  # the JVM refuses a heap under 2 MiB
        raise RenderError(f"the heap size {quantity} is too small for a JVM")
    return f"{size // 2**20}m"


def build(ctx: BuildContext) -> ComponentOutput:
    es = ctx.settings.data.elasticsearch
    if not es.enabled:
        return ComponentOutput()
    consumers = [
        *(_service_client(s) for s in ctx.spec.services if "elasticsearch" in s.uses),
        *telemetry.elasticsearch_clients(ctx),
    ]
    for service in ctx.spec.services:
        if "elasticsearch" in service.uses and service.name in ELASTICSEARCH_RESERVED_NAMES:
            # validate refuses it first
            raise RenderError(f"service {service.name!r} would take over a reserved user")
    values = ctx.render_one(
        "elastic/operator-values.yaml.j2",
        managed_namespaces=[ctx.settings.data.namespace],
        metrics_port=str(OPERATOR_METRICS_PORT) if ctx.settings.observability.enabled else None,
    )
    release = Release(
        OPERATOR_RELEASE, "eck-operator", OPERATOR_NAMESPACE, values, CRDS_WAVE, COMPONENT
    )
    manifests = [_elasticsearch(ctx, es, consumers)]
    if consumers:
        manifests.append(_roles(ctx, consumers))
    if es.kibana.enabled:
        manifests.extend(
            Manifest(COMPONENT, "kibana", doc, stage=layout.DATA) for doc in _kibana(ctx, es)
        )
    manifests.extend(_credentials(ctx, consumers))
    if consumers:
        manifests.extend(_ca_copies(ctx, consumers))
    return ComponentOutput([release], manifests)


Client = telemetry.ElasticsearchClient


def monitors(ctx: BuildContext) -> list[Monitor]:
    if not (ctx.settings.data.elasticsearch.enabled and ctx.settings.observability.enabled):
        return []
    return [
        Monitor(
            "PodMonitor",
            OPERATOR_RELEASE,
            [OPERATOR_NAMESPACE],
            {"matchLabels": dict(OPERATOR_PODS)},
            [{"portNumber": OPERATOR_METRICS_PORT, "path": "/metrics"}],
            "The ECK operator: reconciliations and their errors, webhook calls.",
        )
    ]


def _service_client(service: models.Service) -> Client:
    """A service: its own indices, and cluster monitoring."""
    return Client(
        service.name,
        service.namespace,
        service.pod_selector,
        ("monitor",),
        ({"names": [service.name, f"{service.name}-*"], "privileges": ["all"]},),
        kind="service",
    )


def _role(client: Client) -> str:
    return f"{client.kind}-{client.name}"


def _user_secret(client: Client) -> str:
    return f"{NAME}-{client.name}-user"


def _store_key(client: Client) -> str:
    return f"elasticsearch-{client.name}"


def _elasticsearch(
    ctx: BuildContext, es: models.Elasticsearch, consumers: list[Client]
) -> Manifest:
    resilience = ctx.settings.resilience
    config: dict[str, Any] = {
        # Default deny keeps nodes off the internet: no GeoIP database downloads.
        "ingest.geoip.downloader.enabled": False,
        "xpack.security.http.ssl.supported_protocols": TLS_PROTOCOLS,
        "xpack.security.transport.ssl.supported_protocols": TLS_PROTOCOLS,
    }
    if not es.mmap:
        # No privileged init container to raise vm.max_map_count (pods stay
        # non-root): Elasticsearch does without mmap. See the docs.
        config["node.store.allow_mmap"] = False
    auth: dict[str, Any] = {}
    if consumers:
        auth = {
            "fileRealm": [{"secretName": _user_secret(s)} for s in consumers],
            "roles": [{"secretName": ROLES_SECRET}],
        }
    volume: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": es.storage.size}},
    }
    if es.storage.storage_class:
        volume["storageClassName"] = es.storage.storage_class
    heap = java_heap(es.heap)
    body = ctx.render_one(
        "elastic/elasticsearch.yaml.j2",
        name=NAME,
        namespace=ctx.settings.data.namespace,
        version=es.version,
        nodes=es.nodes,
        node_set=NODE_SET,
        disruption_budget=resilience.disruption_budgets,
        auth=auth,
        config=config,
        zone_awareness=resilience.zone_spread,
        # ECK's default is this same preferred rule; {} is how ECK is told "none".
        affinity=ctx.affinity({CLUSTER_LABEL: NAME}) or {},
        java_opts=f"-Xms{heap} -Xmx{heap}",
        resources=container_resources(es.resources),
        data_volume=DATA_VOLUME,
        volume=volume,
    )
    return Manifest(COMPONENT, "elasticsearch", body, stage=layout.DATA)


def _roles(ctx: BuildContext, consumers: list[Client]) -> Manifest:
    """One role per client, with the privileges it needs."""
    roles = {
        _role(c): {"cluster": list(c.cluster), "indices": [dict(i) for i in c.indices]}
        for c in consumers
    }
    text = yamlio.dump(roles)
    body = ctx.render_one(
        "elastic/roles.yaml.j2",
        name=ROLES_SECRET,
        namespace=ctx.settings.data.namespace,
        roles=text,
    )
    return Manifest(COMPONENT, "elasticsearch", body, stage=layout.DATA)


def _kibana(ctx: BuildContext, es: models.Elasticsearch) -> list[dict[str, Any]]:
    resilience = ctx.settings.resilience
    selector = {KIBANA_LABEL: KIBANA}
    return ctx.render(
        "elastic/kibana.yaml.j2",
        name=KIBANA,
        namespace=ctx.settings.data.namespace,
        version=es.version,
        count=es.kibana.count,
        elasticsearch=NAME,
        tls_protocols=sorted(TLS_PROTOCOLS),
        resources=container_resources(es.kibana.resources),
        affinity=ctx.affinity(selector),
        topology_spread=ctx.zone_spread(selector),
        disruption_budget=resilience.disruption_budgets,
        selector=selector,
    )


def _credentials(ctx: BuildContext, consumers: list[Client]) -> list[Manifest]:
    """Per client: its file-realm user next to Elasticsearch, and its connection
    Secret in its own namespace, both from one store key."""
    namespace = ctx.settings.data.namespace
    out = []
    for client in consumers:
        remote = secrets.remote_key(ctx, _store_key(client))
        out.append(
            secrets.credential(
                ctx,
                COMPONENT,
                "credentials",
                secrets.Credential(
                    _user_secret(client),
                    namespace,
                    properties={"password": "password"},
                    remote=remote,
                    type="kubernetes.io/basic-auth",
                    literals={"username": client.name, "roles": _role(client)},
                ),
            )
        )
        out.append(
            secrets.credential(
                ctx,
                COMPONENT,
                "credentials",
                secrets.Credential(
                    telemetry.credentials_secret(client.name),
                    client.namespace,
                    properties={"password": "password"},
                    remote=remote,
                    literals={
                        "url": url(ctx),
                        "host": host(ctx),
                        "port": str(HTTP_PORT),
                        "username": client.name,
                    },
                ),
            )
        )
    return out


def ca_store_name(ctx: BuildContext) -> str:
    return f"{ctx.platform.name}-{NAME}-ca"


def _ca_copies(ctx: BuildContext, consumers: list[Client]) -> list[Manifest]:
    """ECK's HTTP CA, copied into each client's namespace.

    A ClusterSecretStore of External Secrets' Kubernetes provider reads the data
    namespace as a service account that may get exactly one Secret, ECK's
    public certificates, and only ExternalSecrets in the consumers' namespaces
    may use it. The services' copies are in the resources stage: ECK makes the
    Secret when the data stage creates the cluster.
    """
    namespace = ctx.settings.data.namespace
    store = ca_store_name(ctx)
    plumbing = [
        Manifest(COMPONENT, "ca-store", doc, stage=layout.FOUNDATION)
        for doc in ctx.render(
            "elastic/ca-store.yaml.j2",
            store=store,
            namespace=namespace,
            account=CA_READER,
            secret=CA_SECRET,
            consumer_namespaces=sorted({c.namespace for c in consumers}),
        )
    ]
    copies = [
        Manifest(
            COMPONENT,
            "ca",
            ctx.render_one(
                "elastic/ca-secret.yaml.j2",
                name=telemetry.ca_secret(client.name),
                namespace=client.namespace,
                store=store,
                secret=CA_SECRET,
                refresh_interval=CA_REFRESH,
            ),
            # The platform's own clients (Grafana at the data wave) cannot
            # wait for the resources stage; ECK makes the CA as soon as the
            # data stage creates the cluster, and the copy follows within
            # seconds (External Secrets retries a missing source).
            stage=layout.DATA if client.kind == "platform" else layout.RESOURCES,
        )
        for client in consumers
    ]
    return plumbing + copies
