"""Argo CD hand-off: per environment, an AppProject, an app-of-apps root, one
Application per Helm release (multi-source: chart + `$values`) and one for the
environment's plain resources. Sync waves put CRDs and operators first."""

from __future__ import annotations

import json
from typing import Any

from msgspec import Struct, field

from meshctl import layout
from meshctl.build.context import STAGE_WAVES, BuildContext, Manifest, Release
from meshctl.catalog import Chart

COMPONENT = "argocd"
IN_CLUSTER = "https://kubernetes.default.svc"
RESOURCES_NAMESPACE = "istio-system"


class App(Struct, frozen=True):
    """What varies between the environment's Applications."""

    name: str
    wave: int
    cascade: bool  # delete the app's resources with it (resources finalizer)
    destination: dict[str, str]
    source: dict[str, str] | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    sync_options: list[str] = field(default_factory=list)
    ignore_differences: list[dict[str, Any]] = field(default_factory=list)
    namespace_labels: dict[str, str] = field(default_factory=dict)


def build(
    ctx: BuildContext, releases: list[Release], stages: list[str], namespaces: list[str]
) -> list[Manifest]:
    gitops = ctx.spec.gitops
    env = ctx.environment
    project = f"{ctx.platform.name}-{env}"
    cluster = _cluster(ctx)
    common = {"gitops": gitops, "project": project}

    apps = [
        App(
            name=project,
            wave=0,
            cascade=False,
            source=_git_source(ctx, layout.apps_dir(env)),
            destination={"server": IN_CLUSTER, "namespace": gitops.namespace},
        )
    ]
    for release in releases:
        chart = release.chart
        values = f"$values/{layout.in_repo(gitops.path, layout.values_file(env, release.name))}"
        options = ["CreateNamespace=true"]
        if chart.server_side_apply:
            options.append("ServerSideApply=true")
        if chart.ignore_differences:
            # Without it a sync would still write the ignored fields back.
            options.append("RespectIgnoreDifferences=true")
        apps.append(
            App(
                name=f"{project}-{release.name}",
                wave=release.wave,
                cascade=not chart.installs_crds,
                sources=[
                    {
                        **_chart_source(chart),
                        "targetRevision": chart.version,
                        "helm": {"releaseName": release.name, "valueFiles": [values]},
                    },
                    {
                        "repoURL": gitops.repo_url,
                        "targetRevision": gitops.revision,
                        "ref": "values",
                    },
                ],
                destination={**cluster, "namespace": release.namespace},
                ignore_differences=chart.ignore_differences,
                sync_options=options,
                namespace_labels=release.namespace_labels,
            )
        )
    apps += [
        App(
            name=f"{project}-{stage}",
            wave=STAGE_WAVES[stage],
            cascade=True,
            source=_git_source(ctx, layout.stage_dir(env, stage)),
            # Every resource names its namespace; the AppProject still admits only
            # destinations with one, so give it one the project allows.
            destination={**cluster, "namespace": RESOURCES_NAMESPACE},
            # On the first sync the charts' CRDs may be seconds old.
            sync_options=["SkipDryRunOnMissingResource=true"],
        )
        for stage in stages
    ]

    destinations = [{"server": IN_CLUSTER, "namespace": gitops.namespace}]
    destinations += [{**cluster, "namespace": ns} for ns in namespaces]
    waivers = [{"policy": w.policy, "reason": w.reason} for w in ctx.plan.environment.waivers]
    description = ctx.platform.document.metadata.description or f"{ctx.platform.name} platform"
    project_doc = ctx.render_one(
        "argocd/project.yaml.j2",
        **common,
        description=f"{description} ({env})",
        source_repos=sorted(
            {gitops.repo_url, *(_chart_source(r.chart)["repoURL"] for r in releases)}
        ),
        destinations=destinations,
        waivers=json.dumps(waivers, sort_keys=True, ensure_ascii=False) if waivers else "",
    )
    manifests = [Manifest(COMPONENT, "project", project_doc)]
    for app in apps:
        group = "root" if app.name == project else app.name.removeprefix(project + "-")
        manifests.append(
            Manifest(
                COMPONENT, group, ctx.render_one("argocd/application.yaml.j2", **common, app=app)
            )
        )
    return manifests


def _chart_source(chart: Chart) -> dict[str, str]:
    if chart.oci:
        # Argo CD's native OCI source (3.1+): the chart is the artifact at the
        # path; nothing to register, unlike a Helm repository with enableOCI.
        return {"repoURL": f"{chart.repo}/{chart.chart}", "path": "."}
    return {"repoURL": chart.repo, "chart": chart.chart}


def _cluster(ctx: BuildContext) -> dict[str, str]:
    cluster = ctx.plan.environment.cluster
    return {"server": cluster.server} if cluster.server else {"name": cluster.name or ""}


def _git_source(ctx: BuildContext, tree_path: str) -> dict[str, str]:
    gitops = ctx.spec.gitops
    return {
        "repoURL": gitops.repo_url,
        "targetRevision": gitops.revision,
        "path": layout.in_repo(gitops.path, tree_path),
    }
