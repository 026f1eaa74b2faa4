"""Flux hand-off: per environment, the sources (the GitOps repository and the
catalog's chart repositories), one HelmRelease per Helm release and one Flux
Kustomization per stage of plain resources, plus a root Kustomization that
syncs the environment's apps folder itself.

Ordering reproduces Argo CD's sync waves with `dependsOn`: a HelmRelease
depends on every release of a lower wave; a stage's Kustomization depends on
the earlier stages and on its *gate*, a Kustomization that applies nothing and
is ready once the Helm releases of lower waves are (its `healthChecks`): Flux
Kustomizations can only dependOn Kustomizations, never HelmReleases.
"""

from __future__ import annotations

import re
from typing import Any

from msgspec import Struct, field

from meshctl import layout
from meshctl.build.context import STAGE_WAVES, BuildContext, Manifest, Release
from meshctl.catalog import Chart

COMPONENT = "flux"
HELM_RELEASE_API = "helm.toolkit.fluxcd.io/v2"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class HelmReleaseSpec(Struct, frozen=True):
    """What varies between the environment's HelmReleases."""

    name: str
    release_name: str
    namespace: str
    chart: str
    version: str
    repository: str
    values_config_map: str
    crds: bool
    prune: bool
    depends_on: list[dict[str, str]] = field(default_factory=list)


class KustomizationSpec(Struct, frozen=True):
    name: str
    path: str
    wait: bool
    timeout: str
    depends_on: list[dict[str, str]] = field(default_factory=list)
    health_checks: list[dict[str, str]] = field(default_factory=list)


def values_config_map(project: str, release: str) -> str:
    """The ConfigMap (before kustomize's hash suffix) holding a release's values."""
    return f"{project}-{release}-values"


def repository_name(chart: Chart) -> str:
    """A HelmRepository's name: its URL without the scheme, as a DNS label."""
    bare = chart.repo.split("://", 1)[1]
    return re.sub(r"[^a-z0-9]+", "-", bare.lower()).strip("-")[:63].rstrip("-")


def build(
    ctx: BuildContext, releases: list[Release], stages: list[str], namespaces: list[str]
) -> list[Manifest]:
    del namespaces  # each cluster runs its own Flux: no destinations to admit
    gitops = ctx.spec.gitops
    env = ctx.environment
    project = f"{ctx.platform.name}-{env}"
    common = {"gitops": gitops, "source": project}
    manifests: list[Manifest] = []

    manifests.append(
        Manifest(
            COMPONENT,
            "sources",
            ctx.render_one("flux/gitrepository.yaml.j2", **common, name=project, ref=_ref(ctx)),
        )
    )
    repositories = {repository_name(r.chart): r.chart for r in releases}
    for name, chart in sorted(repositories.items()):
        manifests.append(
            Manifest(
                COMPONENT,
                "sources",
                ctx.render_one(
                    "flux/helmrepository.yaml.j2",
                    **common,
                    name=name,
                    url=chart.repo,
                    oci=chart.oci,
                ),
            )
        )

    names = {r.name: f"{project}-{r.name}" for r in releases}
    for release in releases:
        chart = release.chart
        earlier = sorted(names[r.name] for r in releases if r.wave < release.wave)
        spec = HelmReleaseSpec(
            name=names[release.name],
            release_name=release.name,
            namespace=release.namespace,
            chart=chart.chart,
            version=chart.version,
            repository=repository_name(chart),
            values_config_map=values_config_map(project, release.name),
            crds=chart.installs_crds,
            prune=not chart.installs_crds,
            depends_on=[{"name": name} for name in earlier],
        )
        manifests.append(
            Manifest(
                COMPONENT,
                release.name,
                ctx.render_one("flux/helmrelease.yaml.j2", **common, hr=spec),
            )
        )

    kustomizations = [
        KustomizationSpec(
            name=project,
            path=_path(ctx, layout.apps_dir(env)),
            # The root only hands the objects to their controllers; the stages wait.
            wait=False,
            timeout="5m",
        )
    ]
    for index, stage in enumerate(stages):
        depends_on = [{"name": f"{project}-{earlier}"} for earlier in stages[:index]]
        needed = sorted(names[r.name] for r in releases if r.wave < STAGE_WAVES[stage])
        if needed:
            gate = f"{project}-{stage}-charts"
            kustomizations.append(
                KustomizationSpec(
                    name=gate,
                    path=_path(ctx, layout.gate_dir(env)),
                    # wait: true would check only what the gate applies (nothing).
                    wait=False,
                    timeout="15m",
                    health_checks=[
                        {
                            "apiVersion": HELM_RELEASE_API,
                            "kind": "HelmRelease",
                            "name": name,
                            "namespace": gitops.namespace,
                        }
                        for name in needed
                    ],
                )
            )
            depends_on.append({"name": gate})
        kustomizations.append(
            KustomizationSpec(
                name=f"{project}-{stage}",
                path=_path(ctx, layout.stage_dir(env, stage)),
                wait=True,
                timeout="10m",
                depends_on=depends_on,
            )
        )
    for ks in kustomizations:
        group = "root" if ks.name == project else _stage_of(ks.name, project)
        manifests.append(
            Manifest(
                COMPONENT, group, ctx.render_one("flux/kustomization.yaml.j2", **common, ks=ks)
            )
        )
    return manifests


def _stage_of(name: str, project: str) -> str:
    return name.removeprefix(project + "-").removesuffix("-charts")


def _path(ctx: BuildContext, tree_path: str) -> str:
    return "./" + layout.in_repo(ctx.spec.gitops.path, tree_path)


def _ref(ctx: BuildContext) -> dict[str, Any] | None:
    """spec.gitops.revision as a GitRepository ref: a commit SHA, a full reference
    name (refs/...), or a branch. HEAD leaves the ref out (Flux then follows
    `master`; docs/flux.md says to name the branch)."""
    revision = ctx.spec.gitops.revision
    if revision == "HEAD":
        return None
    if _COMMIT.match(revision):
        return {"commit": revision}
    if revision.startswith("refs/"):
        return {"name": revision}
    return {"branch": revision}
