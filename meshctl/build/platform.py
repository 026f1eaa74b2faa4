"""Cluster-level plumbing every environment needs: the services' namespaces."""

from __future__ import annotations

from meshctl.build.context import BuildContext, ComponentOutput, Manifest

COMPONENT = "platform"


def build(ctx: BuildContext) -> ComponentOutput:
    namespaces = sorted({s.namespace for s in ctx.spec.services})
    return ComponentOutput(
        manifests=[
            Manifest(COMPONENT, "namespaces", doc)
            for doc in ctx.render("platform/namespaces.yaml.j2", namespaces=namespaces)
        ]
    )
