"""Calico: the tigera-operator chart (the Installation in its values) and the
network policy that mirrors the spec's call graph at L3/L4.

Policies are ``crd.projectcalico.org/v1`` objects, the datastore Calico's own
components read (Felix through Typha); the Calico API server, which serves the
``projectcalico.org/v3`` view of them, is turned off. Since Calico 3.32 a
policy's datastore name is its v3 name: names carry no ``default.`` tier
prefix (kube-controllers would "migrate" a prefixed one to a new object, which
Argo CD would then prune and re-create forever). Every policy sits in the
``default`` tier, named explicitly.

The model (docs/network.md):

- ``<platform>-default-deny`` selects every pod in the platform's namespaces
  and has no rules: whatever no policy allows ends at the tier's implicit deny.
- ``<platform>-baseline`` (order 100) lets those pods reach DNS, the API
  server, istiod and the tracing collector; ``<platform>-mesh-egress`` lets
  services reach the external hosts of ``mesh.egress`` (through the egress
  gateway when there is one).
- One policy per workload the spec declares (order 200): each service, Kong,
  each data-tier endpoint. Each admits exactly its callers (``allowFrom``, the
  graph Istio's AuthorizationPolicies are made from, identified by the same
  namespace and service account) and the monitoring scrapes, may reach exactly
  its callees, and ends with an explicit Deny, so a permissive policy a chart
  ships (Bitnami's NetworkPolicies allow every source) cannot widen it.

With ``network.defaultDeny: false`` only the ingress side of the per-workload
policies stays: what the spec declares is still guarded as Istio guards it,
everything else (undeclared pods, all egress) is open.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from msgspec import Struct

from meshctl import layout, models
from meshctl.build import elastic, istio, kong, postgres, redis, telemetry, tls
from meshctl.build.context import (
    CRDS_WAVE,
    BuildContext,
    ComponentOutput,
    Endpoint,
    Manifest,
    Release,
)
from meshctl.build.names import dns_label
from meshctl.build.telemetry import Monitor
from meshctl.errors import RenderError
from meshctl.validate import GATEWAY_PEER

COMPONENT = "calico"
NAMESPACE = "tigera-operator"
RELEASE = "tigera-operator"
CALICO_SYSTEM = "calico-system"  # where the operator runs Calico's own components

# Prometheus metrics, plain HTTP, with observability on. calico-node (Felix)
# and Typha run in the host's network, so these ports are taken on every node:
# Felix's and Typha's own defaults, on which nothing meshctl deploys listens.
FELIX_METRICS_PORT = 9091
TYPHA_METRICS_PORT = 9093
TYPHA_METRICS_SERVICE = "calico-typha-metrics"  # the operator's, named like its port
# calico-kube-controllers serves metrics by default; the operator's Service
# calico-kube-controllers-metrics exposes them as `metrics-port` (9094).
KUBE_CONTROLLERS_METRICS_PORT = "metrics-port"

# Policy order inside the default tier (lower first). The baseline comes before
# the per-workload policies, whose trailing Deny would otherwise end it.
BASELINE_ORDER = 100
WORKLOAD_ORDER = 200

# Peers outside the platform's namespaces, as their charts label them.
KUBE_DNS = ("kube-system", {"k8s-app": "kube-dns"})
ISTIOD = (istio.ISTIO_NAMESPACE, {"app": "istiod"})
ISTIOD_XDS_PORT = 15012  # xDS and certificate signing over mTLS: all a sidecar uses
EGRESS_GATEWAY = (istio.EGRESS_NAMESPACE, {"istio": "egressgateway"})
EGRESS_GATEWAY_PORT = 443
PROMETHEUS_PODS = {"app.kubernetes.io/name": "prometheus"}  # the Prometheus Operator's
SIDECAR_METRICS_PORTS = (15020, 15090)  # merged app + Envoy metrics, Envoy's own
KONG_PODS = {"app.kubernetes.io/name": "kong", "app.kubernetes.io/instance": "kong"}
KONG_HTTP_PORT, KONG_TLS_PORT = 8000, 8443  # the proxy's container ports
KONG_WEBHOOK_PORT = 8080  # the ingress controller's admission webhook
KONG_STATUS_PORT = 8100  # /metrics
ACME_SOLVER = {"acme.cert-manager.io/http01-solver": "true"}
ACME_SOLVER_PORT = 8089
KIBANA = "kibana"

_IN_CLUSTER_HOST = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\.(?P<ns>[a-z0-9]([-a-z0-9]*[a-z0-9])?)\.svc(\..+)?$"
)
_SELECTOR_TEXT = re.compile(r"^[A-Za-z0-9._/-]*$")


def build(ctx: BuildContext) -> ComponentOutput:
    network = ctx.settings.network
    release = Release(
        RELEASE,
        "tigera-operator",
        NAMESPACE,
        ctx.render_one(
            "calico/values.yaml.j2",
            calico_network=_calico_network(network.calico),
            metrics_ports=(
                (FELIX_METRICS_PORT, TYPHA_METRICS_PORT)
                if ctx.settings.observability.enabled
                else None
            ),
        ),
        wave=CRDS_WAVE,
        component=COMPONENT,
    )
    graph = Graph.of(ctx)
    manifests = _namespace_policies(ctx) if network.default_deny else []
    manifests += _workload_policies(ctx, graph)
    return ComponentOutput([release], manifests)


def monitors(ctx: BuildContext) -> list[Monitor]:
    """Calico's own components, with observability on (the Installation opens
    Felix's and Typha's metrics then)."""
    if not ctx.settings.observability.enabled:
        return []
    return [
        Monitor(
            "PodMonitor",
            "calico-node",
            [CALICO_SYSTEM],
            {"matchLabels": {"k8s-app": "calico-node"}},
            [{"path": "/metrics", "relabelings": felix_relabelings()}],
            "Felix on every node (policy and route programming, dataplane errors); "
            "the operator makes no Service for it.",
        ),
        Monitor(
            "ServiceMonitor",
            "calico-typha",
            [CALICO_SYSTEM],
            {"matchLabels": {"k8s-app": TYPHA_METRICS_SERVICE}},
            [{"port": TYPHA_METRICS_SERVICE}],
            "Typha, which fans the datastore out to Felix (the operator's Service "
            f"{TYPHA_METRICS_SERVICE}).",
        ),
        Monitor(
            "ServiceMonitor",
            "calico-kube-controllers",
            [CALICO_SYSTEM],
            {"matchLabels": {"k8s-app": "calico-kube-controllers"}},
            [{"port": KUBE_CONTROLLERS_METRICS_PORT}],
            "calico-kube-controllers (IP address garbage collection, sync with the API "
            "server), through the operator's Service calico-kube-controllers-metrics.",
        ),
    ]


def felix_relabelings() -> list[dict[str, Any]]:
    """Scrape Felix's port on each calico-node pod. The operator declares no
    container port for it, and a PodMonitor's `port`/`portNumber` only match
    declared ones, so the target's address is rewritten instead: the pod's IP
    (the node's; host network) and the port, bracketed for IPv6."""
    return [
        # One target per pod: its calico-node container, not the init containers.
        {
            "action": "keep",
            "sourceLabels": ["__meta_kubernetes_pod_container_name"],
            "regex": "calico-node",
        },
        {
            "action": "replace",
            "sourceLabels": ["__meta_kubernetes_pod_ip"],
            "regex": "([0-9.]+)",
            "targetLabel": "__address__",
            "replacement": f"$1:{FELIX_METRICS_PORT}",
        },
        {
            "action": "replace",
            "sourceLabels": ["__meta_kubernetes_pod_ip"],
            "regex": "(.*:.*)",
            "targetLabel": "__address__",
            "replacement": f"[$1]:{FELIX_METRICS_PORT}",
        },
    ]


# -- the Installation ------------------------------------------------------------


def _calico_network(calico: models.Calico) -> dict[str, Any]:
    """installation.calicoNetwork: the operator's Installation spec, as Helm values.

    Each pool lists every field the operator would fill in: Argo CD compares
    the ipPools list as a whole, and a defaulted field it does not expect would
    keep the Application out of sync (and self-heal fighting the operator).
    """
    pools = [
        {
            "name": "default-ipv4-ippool" if i == 0 else f"ipv4-ippool-{i}",
            "cidr": pool.cidr,
            "blockSize": pool.block_size,
            "encapsulation": pool.encapsulation,
            "natOutgoing": "Enabled" if pool.nat_outgoing else "Disabled",
            "nodeSelector": "all()",
            "allowedUses": ["Workload", "Tunnel"],
            "assignmentMode": "Automatic",
            "disableBGPExport": False,
        }
        for i, pool in enumerate(calico.ip_pools)
    ]
    network: dict[str, Any] = {"bgp": calico.bgp, "ipPools": pools}
    if calico.mtu is not None:
        network["mtu"] = calico.mtu
    return network


# -- the graph -------------------------------------------------------------------


class Workload(Struct, frozen=True):
    """Pods the spec declares: a service, Kong, or a data-tier component."""

    name: str
    namespace: str
    pods: tuple[Mapping[str, str], ...]  # label sets; a pod matching any of them
    account: str | None = None  # its mesh identity (with the namespace), if it has one

    @property
    def selector(self) -> str:
        return any_of(self.pods)

    def source(self) -> dict[str, Any]:
        """This workload as a rule's source: by service account where it has one,
        the identity Istio authorizes, else by its pods' labels."""
        if self.account is not None:
            return {
                "namespaceSelector": namespace_is(self.namespace),
                "serviceAccounts": {"names": [self.account]},
            }
        return {"namespaceSelector": namespace_is(self.namespace), "selector": self.selector}

    def destination(self, ports: Iterable[int]) -> dict[str, Any]:
        return {
            "namespaceSelector": namespace_is(self.namespace),
            "selector": self.selector,
            "ports": sorted(set(ports)),
        }


class Edge(Struct, frozen=True):
    caller: str
    callee: str
    port: int


class Graph(Struct, frozen=True):
    """Who may call whom on which port: ``allowFrom`` (what Istio authorizes) and
    the data tier named in ``uses``. Both ends of every edge are opened."""

    workloads: dict[str, Workload]
    endpoints: dict[str, Endpoint]
    # callee -> caller -> ports, and caller -> callee -> ports
    incoming: dict[str, dict[str, set[int]]]
    outgoing: dict[str, dict[str, set[int]]]

    @classmethod
    def of(cls, ctx: BuildContext) -> Graph:
        gateway = ctx.settings.gateway
        workloads = {
            GATEWAY_PEER: Workload(
                GATEWAY_PEER, gateway.namespace, (KONG_PODS,), kong.SERVICE_ACCOUNT
            )
        }
        for service in ctx.spec.services:
            workloads[service.name] = Workload(
                service.name, service.namespace, (service.pod_selector,), service.account
            )
        endpoints = data_endpoints(ctx)
        for endpoint in endpoints.values():
            workloads[endpoint.name] = Workload(
                endpoint.name, endpoint.namespace, endpoint.selectors
            )
        # The port Istio's sidecar connects to is the pod's (targetPort);
        # meshctl knows the Service port and assumes they are equal.
        edges = {
            Edge(caller, service.name, service.port)
            for service in ctx.spec.services
            for caller in service.allow_from
        }
        edges |= {
            Edge(service.name, use, port)
            for service in ctx.spec.services
            for use in service.uses
            if use in endpoints
            for port in endpoints[use].client_ports
        }
        if postgres.kong_uses_platform_database(ctx.settings) and "postgres" in endpoints:
            edges |= {
                Edge(GATEWAY_PEER, "postgres", port) for port in endpoints["postgres"].client_ports
            }
        es = ctx.settings.data.elasticsearch
        if "elasticsearch" in endpoints and es.kibana.enabled:
            # Kibana is the one client inside the data tier the spec implies.
            kibana = Workload(
                KIBANA, ctx.settings.data.namespace, ({elastic.KIBANA_LABEL: elastic.KIBANA},)
            )
            workloads[KIBANA] = kibana
            edges.add(Edge(KIBANA, "elasticsearch", endpoints["elasticsearch"].port))
        incoming: dict[str, dict[str, set[int]]] = {}
        outgoing: dict[str, dict[str, set[int]]] = {}
        for edge in edges:
            incoming.setdefault(edge.callee, {}).setdefault(edge.caller, set()).add(edge.port)
            outgoing.setdefault(edge.caller, {}).setdefault(edge.callee, set()).add(edge.port)
        return cls(workloads, endpoints, incoming, outgoing)

    def ingress(self, name: str) -> list[dict[str, Any]]:
        """Allow rules for the callers of `name`: one per caller, with its ports."""
        ports = self.incoming.get(name, {})
        return [
            allow_tcp(ports[caller], source=self.workloads[caller].source())
            for caller in sorted(ports)
        ]

    def egress(self, name: str) -> list[dict[str, Any]]:
        """Allow rules for the callees of `name`: one per callee, with its ports."""
        ports = self.outgoing.get(name, {})
        return [
            allow_tcp(destination=self.workloads[callee].destination(ports[callee]))
            for callee in sorted(ports)
        ]


def data_endpoints(ctx: BuildContext) -> dict[str, Endpoint]:
    """The data-tier components enabled in this environment, where clients reach them."""
    found = (postgres.endpoint(ctx), redis.endpoint(ctx), elastic.endpoint(ctx))
    return {endpoint.name: endpoint for endpoint in found if endpoint is not None}


# -- namespace-wide policy (default deny only) -------------------------------------


def platform_namespaces(ctx: BuildContext) -> list[str]:
    """The namespaces meshctl guards: services', Kong's, and the data tier's when
    any data component is on."""
    data = ctx.settings.data
    namespaces = {s.namespace for s in ctx.spec.services} | {ctx.settings.gateway.namespace}
    if data.postgres.enabled or data.redis.enabled or data.elasticsearch.enabled:
        namespaces.add(data.namespace)
    return sorted(namespaces)


def _namespace_policies(ctx: BuildContext) -> list[Manifest]:
    platform = ctx.platform.name
    in_platform = f"projectcalico.org/namespace in {_set(platform_namespaces(ctx))}"
    docs = [
        _global_policy(
            ctx,
            dns_label(platform, "default-deny"),
            selector=in_platform,
            types=["Ingress", "Egress"],
            description="Everything in the platform's namespaces that no policy allows is "
            "denied (the default tier's implicit deny).",
        ),
        _global_policy(
            ctx,
            dns_label(platform, "baseline"),
            order=BASELINE_ORDER,
            selector=in_platform,
            types=["Egress"],
            egress=_baseline_egress(ctx),
            description="What every pod of the platform needs: DNS, the Kubernetes API, "
            "istiod, the tracing collector.",
        ),
    ]
    mesh_egress = _mesh_egress(ctx)
    if mesh_egress:
        services = sorted({s.namespace for s in ctx.spec.services})
        docs.append(
            _global_policy(
                ctx,
                dns_label(platform, "mesh-egress"),
                order=BASELINE_ORDER,
                selector=f"projectcalico.org/namespace in {_set(services)}",
                types=["Egress"],
                egress=mesh_egress,
                description="The services' calls to mesh.egress.hosts (HTTPS).",
            )
        )
    return [Manifest(COMPONENT, "default-deny", doc, stage=layout.FOUNDATION) for doc in docs]


def _baseline_egress(ctx: BuildContext) -> list[dict[str, Any]]:
    dns = {
        "namespaceSelector": namespace_is(KUBE_DNS[0]),
        "selector": all_of(KUBE_DNS[1]),
        "ports": [53],
    }
    rules = [
        {"action": "Allow", "protocol": "UDP", "destination": dns},
        {"action": "Allow", "protocol": "TCP", "destination": dns},
        # Calico resolves the Service to its endpoints (the API servers, often
        # on 6443 or outside the pod network), after kube-proxy's DNAT.
        {
            "action": "Allow",
            "destination": {"services": {"name": "kubernetes", "namespace": "default"}},
        },
        allow_tcp(
            destination={
                "namespaceSelector": namespace_is(ISTIOD[0]),
                "selector": all_of(ISTIOD[1]),
                "ports": [ISTIOD_XDS_PORT],
            }
        ),
    ]
    collector = telemetry.collector(ctx)
    if collector is not None:
        # OTLP over gRPC (the sidecars) and over HTTP (Kong).
        for port in sorted({collector.port, collector.http_port}):
            rules.append(allow_tcp(destination=_host(collector.host, port, ctx)))
    return rules


def _mesh_egress(ctx: BuildContext) -> list[dict[str, Any]]:
    egress = ctx.settings.mesh.egress
    if not egress.hosts:
        return []
    if egress.gateway.enabled:
        # The only way out: the egress gateway, which Istio routes these hosts through.
        namespace, pods = EGRESS_GATEWAY
        return [
            allow_tcp(
                destination={
                    "namespaceSelector": namespace_is(namespace),
                    "selector": all_of(pods),
                    "ports": [EGRESS_GATEWAY_PORT],
                }
            )
        ]
    # Calico OSS cannot match DNS names: HTTPS to anything outside the pod network.
    return [allow_tcp(destination=_outside(ctx, 443))]


def _database_ingress(ctx: BuildContext, graph: Graph) -> list[dict[str, Any]]:
    """Kong's own database, when it runs in-cluster in one of the platform's
    (default-denied) namespaces: let Kong in on its port."""
    database = ctx.settings.gateway.database
    if database.mode != "postgres" or database.host is None:
        return []
    namespace = in_cluster_namespace(database.host)
    if namespace is None or namespace not in platform_namespaces(ctx):
        return []
    return [
        _policy(
            ctx,
            "kong-database",
            namespace,
            selector="all()",
            types=["Ingress"],
            ingress=[allow_tcp([database.port], source=graph.workloads[GATEWAY_PEER].source())],
            description=f"Kong reaches its database {database.host} (not declared in the spec).",
        )
    ]


# -- one policy per declared workload -------------------------------------------------


def _workload_policies(ctx: BuildContext, graph: Graph) -> list[Manifest]:
    deny = ctx.settings.network.default_deny
    types = ["Ingress", "Egress"] if deny else ["Ingress"]
    manifests = []
    for service in ctx.spec.services:
        workload = graph.workloads[service.name]
        scrape_ports = [*SIDECAR_METRICS_PORTS]
        if service.metrics is not None:
            scrape_ports.append(service.metrics.port)
        sidecar_scrapes = [allow_tcp(scrape_ports, source=_prometheus(ctx))]
        doc = _policy(
            ctx,
            service.name,
            service.namespace,
            selector=workload.selector,
            types=types,
            ingress=[*graph.ingress(service.name), *sidecar_scrapes, DENY],
            egress=[*graph.egress(service.name), DENY] if deny else None,
            description=f"Who may call {service.name} (allowFrom) and what it may call.",
        )
        manifests.append(Manifest("services", service.name, doc, stage=layout.FOUNDATION))

    gateway = [_gateway_policy(ctx, graph, types)]
    if deny:
        gateway += _database_ingress(ctx, graph)
    manifests += [Manifest(COMPONENT, "gateway", doc, stage=layout.FOUNDATION) for doc in gateway]
    if ctx.settings.tls.issuer == "acme" and _certificate_namespaces(ctx):
        manifests += [
            Manifest(COMPONENT, "acme-solvers", doc, stage=layout.FOUNDATION)
            for doc in _acme_solver_policies(ctx, graph)
        ]
    manifests += [
        Manifest(
            COMPONENT, "data", _data_policy(ctx, graph, endpoint, types), stage=layout.FOUNDATION
        )
        for endpoint in graph.endpoints.values()
    ]
    if KIBANA in graph.workloads:
        kibana = graph.workloads[KIBANA]
        doc = _policy(
            ctx,
            KIBANA,
            kibana.namespace,
            selector=kibana.selector,
            types=types,
            # Nobody in the cluster calls Kibana; people reach it with port-forward.
            ingress=[DENY],
            egress=[*graph.egress(KIBANA), DENY] if deny else None,
            description="Kibana reaches Elasticsearch; nothing in the cluster reaches Kibana.",
        )
        manifests.append(Manifest(COMPONENT, "data", doc, stage=layout.FOUNDATION))
    return manifests


def _gateway_policy(ctx: BuildContext, graph: Graph, types: list[str]) -> dict[str, Any]:
    gateway = ctx.settings.gateway
    proxy_ports = [KONG_HTTP_PORT, KONG_TLS_PORT] if gateway.tls.enabled else [KONG_HTTP_PORT]
    scrape_ports = [
        *SIDECAR_METRICS_PORTS,
        *([KONG_STATUS_PORT] if gateway.metrics.enabled else []),
    ]
    ingress = [
        # Clients arrive from the load balancer, often SNATed to a node's
        # address: any source (loadBalancerSourceRanges filter at the balancer).
        allow_tcp(proxy_ports),
        # The API server calls the admission webhook from outside the pod network.
        allow_tcp([KONG_WEBHOOK_PORT]),
        allow_tcp(scrape_ports, source=_prometheus(ctx)),
        DENY,
    ]
    egress = None
    if ctx.settings.network.default_deny:
        egress = graph.egress(GATEWAY_PEER)
        if ctx.settings.tls.issuer == "acme" and _certificate_namespaces(ctx):
            egress.append(
                allow_tcp(
                    destination={
                        "namespaceSelector": namespace_in(_certificate_namespaces(ctx)),
                        "selector": all_of(ACME_SOLVER),
                        "ports": [ACME_SOLVER_PORT],
                    }
                )
            )
        database = gateway.database
        if database.mode == "postgres" and database.host is not None:
            egress.append(allow_tcp(destination=_host(database.host, database.port, ctx)))
        egress.append(DENY)
    return _policy(
        ctx,
        "kong",
        gateway.namespace,
        selector=all_of(KONG_PODS),
        types=types,
        ingress=ingress,
        egress=egress,
        description="Kong: public traffic in, the routed services (allowFrom: gateway) out.",
    )


def _certificate_namespaces(ctx: BuildContext) -> list[str]:
    """Where Certificates, and so HTTP-01 solver pods, live: with the routes'
    Ingresses, when the gateway serves TLS (and there is no certificate without)."""
    if not ctx.settings.gateway.tls.enabled:
        return []
    return sorted({namespace for namespace, _ in tls.route_hosts(ctx)})


def _acme_solver_policies(ctx: BuildContext, graph: Graph) -> list[dict[str, Any]]:
    kong_source = graph.workloads[GATEWAY_PEER].source()
    return [
        _policy(
            ctx,
            "acme-http01-solver",
            namespace,
            selector=all_of(ACME_SOLVER),
            types=["Ingress"],
            ingress=[allow_tcp([ACME_SOLVER_PORT], source=kong_source), DENY],
            description="cert-manager's HTTP-01 solvers answer the ACME server through Kong.",
        )
        for namespace in _certificate_namespaces(ctx)
    ]


def _data_policy(
    ctx: BuildContext, graph: Graph, endpoint: Endpoint, types: list[str]
) -> dict[str, Any]:
    own = graph.workloads[endpoint.name]
    peer_ports = sorted({endpoint.port, *endpoint.peer_ports})
    # Peers are in the policy's own namespace: a selector alone names them.
    peers = {"selector": own.selector}
    ingress = graph.ingress(endpoint.name)
    ingress.append(allow_tcp(peer_ports, source=peers))
    if endpoint.operator:
        namespace, ports = endpoint.operator
        ingress.append(allow_tcp(ports, source={"namespaceSelector": namespace_is(namespace)}))
    if endpoint.metrics_ports:
        ingress.append(allow_tcp(endpoint.metrics_ports, source=_prometheus(ctx)))
    ingress.extend(_platform_clients(endpoint))
    ingress.append(DENY)
    egress = None
    if ctx.settings.network.default_deny:
        egress = [allow_tcp(destination={**peers, "ports": peer_ports})]
        store = ctx.settings.data.object_storage
        if endpoint.name == "postgres" and ctx.settings.data.postgres.backup.enabled and store:
            egress.append(allow_tcp(destination=_object_store(store, ctx)))
        egress.append(DENY)
    return _policy(
        ctx,
        endpoint.name,
        endpoint.namespace,
        selector=own.selector,
        types=types,
        ingress=ingress,
        egress=egress,
        description=f"{endpoint.name}: the services that use it, its own peers and operator.",
    )


# -- destinations outside the graph ----------------------------------------------------


def in_cluster_namespace(host: str) -> str | None:
    """The namespace of a Service DNS name (<svc>.<namespace>.svc[.<cluster domain>])."""
    match = _IN_CLUSTER_HOST.match(host)
    return match.group("ns") if match else None


def _host(host: str, port: int, ctx: BuildContext) -> dict[str, Any]:
    """A destination known only by DNS name: its namespace if it is a Service
    (any pod there, on the port), else anything outside the pod network."""
    namespace = in_cluster_namespace(host)
    if namespace is not None:
        return {"namespaceSelector": namespace_is(namespace), "ports": [port]}
    return _outside(ctx, port)


def _outside(ctx: BuildContext, port: int) -> dict[str, Any]:
    cidrs = sorted({pool.cidr for pool in ctx.settings.network.calico.ip_pools})
    return {"notNets": cidrs, "ports": [port]}


def _object_store(store: models.ObjectStorage, ctx: BuildContext) -> dict[str, Any]:
    if store.endpoint is None:  # AWS S3
        return _outside(ctx, 443)
    url = urlsplit(store.endpoint)
    return _host(url.hostname or "", url.port or 443, ctx)


def _platform_clients(endpoint: Endpoint) -> list[dict[str, Any]]:
    """The platform's own components that call the endpoint (the observability
    stack's Elasticsearch users), one rule per namespace."""
    by_namespace: dict[str, list[Mapping[str, str]]] = {}
    for namespace, pods in endpoint.platform_clients:
        by_namespace.setdefault(namespace, []).append(pods)
    return [
        allow_tcp(
            [endpoint.port],
            source={"namespaceSelector": namespace_is(namespace), "selector": any_of(pods)},
        )
        for namespace, pods in sorted(by_namespace.items())
    ]


def _prometheus(ctx: BuildContext) -> dict[str, Any]:
    """Prometheus in the observability namespace (whether or not meshctl runs it)."""
    namespace = ctx.settings.observability.namespace
    return {"namespaceSelector": namespace_is(namespace), "selector": all_of(PROMETHEUS_PODS)}


# -- Calico rule and selector syntax ---------------------------------------------------

DENY: dict[str, Any] = {"action": "Deny"}


def allow_tcp(
    ports: Iterable[int] | None = None,
    *,
    source: dict[str, Any] | None = None,
    destination: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An Allow rule for TCP; `ports` are the destination's (or set in `destination`)."""
    rule: dict[str, Any] = {"action": "Allow", "protocol": "TCP"}
    if source:
        rule["source"] = source
    target = dict(destination or {})
    if ports is not None:
        target["ports"] = sorted(set(ports))
    if target:
        rule["destination"] = target
    return rule


def _quoted(value: str) -> str:
    if not _SELECTOR_TEXT.match(value):  # the models' patterns guarantee it
        raise RenderError(f"cannot use {value!r} in a Calico selector")
    return f"'{value}'"


def all_of(labels: Mapping[str, str]) -> str:
    """Pods carrying every label: Calico selector syntax."""
    if not labels:
        return "all()"
    return " && ".join(f"{_key(k)} == {_quoted(v)}" for k, v in sorted(labels.items()))


def any_of(label_sets: Iterable[Mapping[str, str]]) -> str:
    parts = sorted({all_of(labels) for labels in label_sets})
    if len(parts) == 1:
        return parts[0]
    return " || ".join(f"({part})" for part in parts)


def namespace_is(namespace: str) -> str:
    return f"projectcalico.org/name == {_quoted(namespace)}"


def namespace_in(namespaces: Iterable[str]) -> str:
    return f"projectcalico.org/name in {_set(namespaces)}"


def _set(values: Iterable[str]) -> str:
    return "{" + ", ".join(_quoted(v) for v in sorted(set(values))) + "}"


def _key(key: str) -> str:
    if not _SELECTOR_TEXT.match(key) or not key:
        raise RenderError(f"cannot use the label key {key!r} in a Calico selector")
    return key


# -- objects ------------------------------------------------------------------------------


def _policy(
    ctx: BuildContext,
    name: str,
    namespace: str,
    *,
    selector: str,
    types: list[str],
    ingress: list[dict[str, Any]] | None = None,
    egress: list[dict[str, Any]] | None = None,
    description: str,
) -> dict[str, Any]:
    return _render(
        ctx,
        "NetworkPolicy",
        name,
        namespace,
        order=WORKLOAD_ORDER,
        selector=selector,
        types=types,
        ingress=ingress,
        egress=egress,
        description=description,
    )


def _global_policy(
    ctx: BuildContext,
    name: str,
    *,
    selector: str,
    types: list[str],
    order: int | None = None,
    egress: list[dict[str, Any]] | None = None,
    description: str,
) -> dict[str, Any]:
    return _render(
        ctx,
        "GlobalNetworkPolicy",
        name,
        None,
        order=order,
        selector=selector,
        types=types,
        ingress=None,
        egress=egress,
        description=description,
    )


def _render(
    ctx: BuildContext,
    kind: str,
    name: str,
    namespace: str | None,
    *,
    order: int | None,
    selector: str,
    types: list[str],
    ingress: list[dict[str, Any]] | None,
    egress: list[dict[str, Any]] | None,
    description: str,
) -> dict[str, Any]:
    body = ctx.render_one(
        "calico/policy.yaml.j2",
        kind=kind,
        name=name,
        namespace=namespace,
        order=order,
        selector=selector,
        types=types,
        description=description,
    )
    # Rules are data already (built from typed settings, never from text).
    for direction, rules in (("ingress", ingress), ("egress", egress)):
        if rules is not None:
            body["spec"][direction] = list(rules)
    return body
