"""TLS: cert-manager, the environment's ClusterIssuer and a Certificate for
every route host, in the namespace of the Ingress that serves it (Kong reads
an Ingress's certificate from the Ingress's own namespace)."""

from __future__ import annotations

from meshctl import layout
from meshctl.build import secrets
from meshctl.build.context import CRDS_WAVE, BuildContext, ComponentOutput, Manifest, Release
from meshctl.build.names import tls_secret
from meshctl.spec import route_host

COMPONENT = "tls"
NAMESPACE = "cert-manager"
RELEASE = "cert-manager"


def issuer_name(ctx: BuildContext) -> str:
    return ctx.platform.name


def route_hosts(ctx: BuildContext) -> list[tuple[str, str]]:
    """(namespace, host) of every route, once each."""
    domain = ctx.settings.domain
    return sorted(
        {
            (service.namespace, route_host(route.host, domain))
            for service in ctx.spec.services
            for route in service.routes
        }
    )


def build(ctx: BuildContext) -> ComponentOutput:
    if not ctx.settings.gateway.tls.enabled:
        return ComponentOutput()
    tls = ctx.settings.tls
    resilience = ctx.settings.resilience
    values = ctx.render_one(
        "tls/values.yaml.j2",
        replicas=2 if resilience.disruption_budgets else 1,
        disruption_budgets=resilience.disruption_budgets,
    )
    name = issuer_name(ctx)
    ca_secret = f"{name}-ca"
    manifests = [
        Manifest(COMPONENT, "issuer", doc, stage=layout.FOUNDATION)
        for doc in ctx.render(
            "tls/issuer.yaml.j2",
            name=name,
            issuer=tls.issuer,
            acme=tls.acme,
            namespace=NAMESPACE,
            ca_secret=ca_secret,
            ca_common_name=f"{name} {ctx.environment} CA",
        )
    ]
    if tls.issuer == "ca" and tls.ca:
        manifests.append(
            secrets.credential(
                ctx,
                COMPONENT,
                "issuer",
                secrets.Credential(
                    name=ca_secret,
                    namespace=NAMESPACE,
                    properties={"tls.crt": "tls.crt", "tls.key": "tls.key"},
                    remote=tls.ca.key,
                    type="kubernetes.io/tls",
                ),
            )
        )
    for namespace, host in route_hosts(ctx):
        secret = tls_secret(host)
        manifests.append(
            Manifest(
                COMPONENT,
                "certificates",
                ctx.render_one(
                    "tls/certificate.yaml.j2",
                    secret=secret,
                    namespace=namespace,
                    host=host,
                    tls=tls,
                    issuer=name,
                ),
                # With the routes, after Kong: an ACME HTTP-01 challenge is
                # answered through Kong, so issuing earlier could never finish.
                stage=layout.RESOURCES,
            )
        )
    return ComponentOutput(
        releases=[Release(RELEASE, "cert-manager", NAMESPACE, values, CRDS_WAVE, COMPONENT)],
        manifests=manifests,
    )
