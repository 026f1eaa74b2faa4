"""Istio: charts base, istiod and (as egress gateway) gateway; mesh policy.

Per service: an AuthorizationPolicy that allows its callers' principals
(``allowFrom``) and nothing else, a DestinationRule (Istio mTLS, connection
pool, outlier detection), and, for a service with ``metrics``, the one
exception to mTLS: its metrics port accepts plain text, where only Prometheus'
``GET <path>`` is allowed (see ``meshctl.build.service_metrics``).
"""

from __future__ import annotations

from typing import Any

from meshctl import models
from meshctl.build import kong, service_metrics, telemetry
from meshctl.build.context import (
    CONTROL_WAVE,
    CRDS_WAVE,
    EDGE_WAVE,
    BuildContext,
    ComponentOutput,
    Manifest,
    Release,
    resources,
)
from meshctl.build.names import dns_label
from meshctl.validate import GATEWAY_PEER

COMPONENT = "istio"
ISTIO_NAMESPACE = "istio-system"
EGRESS_NAMESPACE = "istio-egress"
EGRESS_RELEASE = "istio-egressgateway"
TRACING_PROVIDER = "otel-tracing"


def build(ctx: BuildContext) -> ComponentOutput:
    mesh = ctx.settings.mesh
    resilience = ctx.settings.resilience
    istiod_selector = {"app": "istiod"}
    releases = [
        Release(
            "istio-base",
            "istio-base",
            ISTIO_NAMESPACE,
            ctx.render_one("istio/base-values.yaml.j2"),
            wave=CRDS_WAVE,
            component=COMPONENT,
        ),
        Release(
            "istiod",
            "istiod",
            ISTIO_NAMESPACE,
            ctx.render_one(
                "istio/istiod-values.yaml.j2",
                mesh=mesh,
                control_plane=mesh.control_plane,
                control_plane_resources=resources(mesh.control_plane.resources),
                sidecar_resources=resources(mesh.sidecar.resources),
                disruption_budgets=resilience.disruption_budgets,
                affinity=ctx.affinity(istiod_selector),
                topology_spread=ctx.zone_spread(istiod_selector),
                tracing_provider=TRACING_PROVIDER,
                collector=telemetry.collector(ctx),
            ),
            wave=CONTROL_WAVE,
            component=COMPONENT,
        ),
    ]
    egress = mesh.egress
    gateway = None
    if egress.gateway.enabled:
        selector = {"app": EGRESS_RELEASE, "istio": "egressgateway"}
        releases.append(
            Release(
                EGRESS_RELEASE,
                "istio-gateway",
                EGRESS_NAMESPACE,
                ctx.render_one(
                    "istio/egress-gateway-values.yaml.j2",
                    release=EGRESS_RELEASE,
                    gateway=egress.gateway,
                    resources=resources(egress.gateway.resources),
                    disruption_budgets=resilience.disruption_budgets,
                    affinity=ctx.affinity(selector),
                    topology_spread=ctx.zone_spread(selector),
                ),
                wave=EDGE_WAVE,
                component=COMPONENT,
            )
        )
        gateway = {
            "name": "egress",
            "namespace": EGRESS_NAMESPACE,
            "service": f"{EGRESS_RELEASE}.{EGRESS_NAMESPACE}.svc.cluster.local",
        }

    manifests = [
        Manifest(COMPONENT, "mesh", doc)
        for doc in ctx.render(
            "istio/mesh.yaml.j2",
            mesh=mesh,
            tracing_provider=TRACING_PROVIDER,
            collector=telemetry.collector(ctx),
        )
    ]
    namespaces = sorted({s.namespace for s in ctx.spec.services})
    manifests += [
        Manifest(COMPONENT, "default-deny", doc)
        for doc in ctx.render("istio/default-deny.yaml.j2", namespaces=namespaces)
    ]
    hosts = [{"host": host, "name": dns_label("egress", host)} for host in egress.hosts]
    manifests += [
        Manifest(COMPONENT, "egress", doc)
        for doc in ctx.render("istio/egress.yaml.j2", hosts=hosts, gateway=gateway)
    ]
    identities = mesh_identities(ctx)
    # Opened whether or not meshctl runs Prometheus, as Calico opens it: a
    # Prometheus of the user's own in the observability namespace scrapes too.
    scraped = {s.name: metrics for s, metrics in service_metrics.scraped(ctx)}
    for service in ctx.spec.services:
        manifests += [
            Manifest("services", service.name, doc)
            for doc in ctx.render(
                "istio/service.yaml.j2",
                service=service,
                principals=sorted({identities[peer] for peer in service.allow_from}),
                metrics=_scrape_access(scraped.get(service.name)),
                pool=mesh.traffic_policy.connection_pool,
                outlier=mesh.traffic_policy.outlier_detection,
            )
        ]
    return ComponentOutput(releases, manifests)


def _scrape_access(metrics: models.ServiceMetrics | None) -> dict[str, Any] | None:
    """What the mesh lets Prometheus do on a service's metrics port, as template input.

    Both portLevelMtls' key and an operation's port are the workload's
    (container) port, written as strings: JSON object keys, and the CRD's
    `ports: [string]`. meshctl.build.service_metrics explains the design.
    """
    if metrics is None:
        return None
    port = str(metrics.port)
    return {
        "port": port,
        "path": metrics.path,
        "methods": list(service_metrics.SCRAPE_METHODS),
        "port_level_mtls": {port: {"mode": "PERMISSIVE"}},
    }


def mesh_identities(ctx: BuildContext) -> dict[str, str]:
    """The SPIFFE identity of every possible caller: each service, and Kong."""
    trust_domain = ctx.settings.mesh.trust_domain
    identities = {
        s.name: f"{trust_domain}/ns/{s.namespace}/sa/{s.account}" for s in ctx.spec.services
    }
    identities[GATEWAY_PEER] = kong.principal(ctx)
    return identities
