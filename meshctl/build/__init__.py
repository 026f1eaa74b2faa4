"""Stage 4, build: one environment's settings -> Helm releases and resources, as data.

Each component module turns the typed settings into artifacts through its
templates under ``templates/<component>/``; the Argo CD objects come last,
from the releases the components asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshctl.build import argocd, istio, kong, platform
from meshctl.build.context import BuildContext, Manifest, Release
from meshctl.spec import Platform

COMPONENTS = (platform, istio, kong)
MANAGED_LABELS = {"app.kubernetes.io/managed-by": "meshctl"}


@dataclass
class EnvironmentBuild:
    environment: str
    releases: list[Release]
    manifests: list[Manifest]  # plain resources, synced by the resources Application
    gitops: list[Manifest]  # the GitOps objects


def build_environment(target: Platform, env: str) -> EnvironmentBuild:
    ctx = BuildContext(target, target.environments[env])
    releases: list[Release] = []
    manifests: list[Manifest] = []
    for component in COMPONENTS:
        output = component.build(ctx)
        releases.extend(output.releases)
        manifests.extend(output.manifests)
    part_of = {**MANAGED_LABELS, "app.kubernetes.io/part-of": target.name}
    for manifest in manifests:
        _label(manifest, part_of)
    namespaces = sorted(
        {r.namespace for r in releases}
        | {m.body["metadata"]["namespace"] for m in manifests if "namespace" in m.body["metadata"]}
        | {m.body["metadata"]["name"] for m in manifests if m.body["kind"] == "Namespace"}
    )
    gitops = argocd.build(ctx, releases, namespaces)
    for manifest in gitops:
        _label(manifest, part_of)
    return EnvironmentBuild(env, releases, manifests, gitops)


def _label(manifest: Manifest, labels: dict[str, str]) -> None:
    metadata = manifest.body.setdefault("metadata", {})
    metadata["labels"] = {**labels, **(metadata.get("labels") or {})}
