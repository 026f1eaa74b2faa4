"""Istio: charts base, istiod and (as egress gateway) gateway; mesh policy."""

from __future__ import annotations

from typing import Any

from meshctl import models
from meshctl.build import kong
from meshctl.build.context import BuildContext, ComponentOutput, Manifest, Release, resources
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
            wave=0,
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
            ),
            wave=1,
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
                wave=2,
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
        for doc in ctx.render("istio/mesh.yaml.j2", mesh=mesh, tracing_provider=TRACING_PROVIDER)
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
    for service in ctx.spec.services:
        manifests += [
            Manifest("services", service.name, doc)
            for doc in ctx.render(
                "istio/service.yaml.j2",
                service=service,
                principals=allowed_principals(ctx, service),
                pool=mesh.traffic_policy.connection_pool,
                outlier=mesh.traffic_policy.outlier_detection,
            )
        ]
    return ComponentOutput(releases, manifests)


def allowed_principals(ctx: BuildContext, service: models.Service) -> list[str]:
    """Mesh identities allowed to call the service: its allowFrom, resolved."""
    by_name = {s.name: s for s in ctx.spec.services}
    trust_domain = ctx.settings.mesh.trust_domain
    principals: list[Any] = []
    for peer in service.allow_from:
        if peer == GATEWAY_PEER:
            principals.append(kong.principal(ctx))
        else:
            caller = by_name[peer]
            principals.append(f"{trust_domain}/ns/{caller.namespace}/sa/{caller.account}")
    return sorted(set(principals))
