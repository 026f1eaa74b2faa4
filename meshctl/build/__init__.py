"""Stage 4, build: one environment's settings -> Helm releases and resources, as data.

Each component module turns the typed settings into artifacts through its
templates under ``templates/<component>/``; the GitOps objects (Argo CD or
Flux, after ``spec.gitops.engine``) come last, from the releases the components
asked for.
"""

from __future__ import annotations

from msgspec import Struct, field

from meshctl import layout
from meshctl.build import (
    argocd,
    calico,
    elastic,
    elastic_exporter,
    flux,
    istio,
    kong,
    logs,
    monitoring,
    platform,
    postgres,
    redis,
    secrets,
    slo,
    thanos,
    tls,
    tracing,
)
from meshctl.build.context import BuildContext, Manifest, Release
from meshctl.spec import Platform

COMPONENTS = (
    platform,
    secrets,
    tls,
    calico,
    postgres,
    redis,
    elastic,
    istio,
    kong,
    monitoring,
    thanos,
    slo,
    tracing,
    logs,
    elastic_exporter,
)
MANAGED_LABELS = {"app.kubernetes.io/managed-by": "meshctl"}


class EnvironmentBuild(Struct):
    environment: str
    releases: list[Release]
    manifests: list[Manifest]  # plain resources, synced by one Application per stage
    gitops: list[Manifest]  # the GitOps objects
    stages: list[str]  # the stages with resources, in sync order
    engine: str = "argocd"  # spec.gitops.engine
    # Flux: release -> (namespace, name) of the ConfigMap generated from its values file.
    values_config_maps: dict[str, tuple[str, str]] = field(default_factory=dict)


def build_environment(target: Platform, env: str) -> EnvironmentBuild:
    ctx = BuildContext(target, target.environments[env])
    releases: list[Release] = []
    manifests: list[Manifest] = []
    for component in COMPONENTS:
        output = component.build(ctx)
        releases.extend(output.releases)
        manifests.extend(output.manifests)
    secrets.limit_store(ctx, manifests)
    part_of = {**MANAGED_LABELS, "app.kubernetes.io/part-of": target.name}
    for manifest in manifests:
        _label(manifest, part_of)
    namespaces = sorted(
        {r.namespace for r in releases}
        | {m.body["metadata"]["namespace"] for m in manifests if "namespace" in m.body["metadata"]}
        | {m.body["metadata"]["name"] for m in manifests if m.body["kind"] == "Namespace"}
    )
    present = {m.stage for m in manifests}
    stages = [stage for stage in layout.STAGES if stage in present]
    engine = target.spec.gitops.engine
    gitops = (flux if engine == "flux" else argocd).build(ctx, releases, stages, namespaces)
    for manifest in gitops:
        _label(manifest, part_of)
    config_maps = {}
    if engine == "flux":
        project = f"{target.name}-{env}"
        config_maps = {
            r.name: (target.spec.gitops.namespace, flux.values_config_map(project, r.name))
            for r in releases
        }
    return EnvironmentBuild(env, releases, manifests, gitops, stages, engine, config_maps)


def _label(manifest: Manifest, labels: dict[str, str]) -> None:
    metadata = manifest.body.setdefault("metadata", {})
    metadata["labels"] = {**labels, **(metadata.get("labels") or {})}
