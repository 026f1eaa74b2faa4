"""Cluster-level plumbing every environment needs: the namespaces that hold
plain resources, created in the foundation stage before anything lands in them."""

from __future__ import annotations

from meshctl import layout
from meshctl.build.context import BuildContext, ComponentOutput, Manifest

COMPONENT = "platform"


def build(ctx: BuildContext) -> ComponentOutput:
    data = ctx.settings.data
    # Services' namespaces get sidecar injection; the data tier stays out of
    # the mesh (its operators and replication speak TLS of their own) and is
    # guarded by network policy instead. Kong's pods ask for their sidecar.
    namespaces: list[dict[str, str | None]] = [
        {"name": ns, "injection": "enabled"}
        for ns in sorted({s.namespace for s in ctx.spec.services})
    ]
    namespaces.append({"name": ctx.settings.gateway.namespace, "injection": None})
    if data.postgres.enabled or data.redis.enabled or data.elasticsearch.enabled:
        namespaces.append({"name": data.namespace, "injection": "disabled"})
    return ComponentOutput(
        manifests=[
            Manifest(COMPONENT, "namespaces", doc, stage=layout.FOUNDATION)
            for doc in ctx.render("platform/namespaces.yaml.j2", namespaces=namespaces)
        ]
    )
