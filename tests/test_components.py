"""What the components render, asserted where a mistake would hurt on a cluster."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

import yaml

import harness
from conftest import Rendered


def _objects(tree: Path, env: str) -> list[dict[str, Any]]:
    return harness.kustomize_build(tree / "overlays" / env)


def _by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def _values(tree: Path, env: str, release: str) -> dict[str, Any]:
    return yaml.safe_load((tree / f"overlays/{env}/values/{release}.yaml").read_text())  # type: ignore[no-any-return]


def _admits(project: dict[str, Any], destination: dict[str, str]) -> bool:
    """Argo CD's AppProject destination check: cluster equal, namespace glob (never empty)."""
    for allowed in project["spec"]["destinations"]:
        same_cluster = (
            allowed.get("server") == destination.get("server")
            if "server" in destination
            else allowed.get("name") == destination.get("name")
        )
        namespace = destination.get("namespace", "")
        if same_cluster and namespace and fnmatch.fnmatch(namespace, allowed["namespace"]):
            return True
    return False


def test_every_application_is_admitted_by_its_project(
    rendered_trees: dict[str, Rendered],
) -> None:
    for rendered in rendered_trees.values():
        if rendered.result.platform.spec.gitops.engine != "argocd":
            continue  # Flux has no AppProject (tests/test_flux.py)
        for env in rendered.result.environments:
            objects = _objects(rendered.tree, env)
            (project,) = _by_kind(objects, "AppProject")
            for app in _by_kind(objects, "Application"):
                assert app["spec"]["project"] == project["metadata"]["name"]
                destination = app["spec"]["destination"]
                assert _admits(project, destination), (rendered.name, env, app["metadata"]["name"])
                for source in app["spec"].get("sources", [app["spec"].get("source")]):
                    assert source["repoURL"] in project["spec"]["sourceRepos"]


def test_charts_that_install_crds_are_never_cascade_deleted(example_tree: Rendered) -> None:
    apps = {
        a["metadata"]["name"]: a
        for a in _by_kind(_objects(example_tree.tree, "prod"), "Application")
    }
    finalizer = "resources-finalizer.argocd.argoproj.io"
    assert finalizer not in apps["parallel-ai-prod-istio-base"]["metadata"].get("finalizers", [])
    assert finalizer not in apps["parallel-ai-prod-kong"]["metadata"].get("finalizers", [])
    assert finalizer in apps["parallel-ai-prod-istiod"]["metadata"]["finalizers"]
    assert finalizer in apps["parallel-ai-prod-resources"]["metadata"]["finalizers"]
    for app in apps.values():
        if app["spec"].get("ignoreDifferences"):
            assert "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"]["syncOptions"]
    kong_ignored = {d["kind"] for d in apps["parallel-ai-prod-kong"]["spec"]["ignoreDifferences"]}
    assert kong_ignored == {"Secret", "ValidatingWebhookConfiguration"}


def test_kong_routes_leave_the_host_to_the_mesh_and_redirect_with_308(
    example_tree: Rendered,
) -> None:
    ingresses = _by_kind(_objects(example_tree.tree, "prod"), "Ingress")
    assert {i["metadata"]["name"] for i in ingresses} == {"api", "console"}
    for ingress in ingresses:
        annotations = ingress["metadata"]["annotations"]
        assert annotations["konghq.com/preserve-host"] == "false"
        assert annotations["konghq.com/https-redirect-status-code"] == "308"
        assert (
            ingress["spec"]["tls"][0]["secretName"]
            == ingress["spec"]["tls"][0]["hosts"][0] + "-tls"
        )


def test_kongs_sidecar_is_sized_for_the_gateway(example_tree: Rendered) -> None:
    expected = {
        "dev": ("250m", "256Mi", "1Gi"),
        "staging": ("500m", "512Mi", "1Gi"),
        "prod": ("1", "512Mi", "2Gi"),
    }
    for env, (cpu, memory, limit) in expected.items():
        annotations = _values(example_tree.tree, env, "kong")["podAnnotations"]
        assert annotations["sidecar.istio.io/proxyCPU"] == cpu
        assert annotations["sidecar.istio.io/proxyMemory"] == memory
        assert annotations["sidecar.istio.io/proxyMemoryLimit"] == limit
        assert "sidecar.istio.io/proxyCPULimit" not in annotations


def test_default_deny_and_one_allow_policy_per_service(example_tree: Rendered) -> None:
    policies = _by_kind(_objects(example_tree.tree, "prod"), "AuthorizationPolicy")
    allow_nothing = [p for p in policies if p["metadata"]["name"] == "allow-nothing"]
    assert {p["metadata"]["namespace"] for p in allow_nothing} == {
        "web",
        "ai-api",
        "ai-jobs",
        "ai-serving",
    }
    assert all(p["spec"] == {} for p in allow_nothing)
    inference = next(p for p in policies if p["metadata"]["name"] == "inference")
    assert inference["spec"]["rules"][0]["from"][0]["source"]["principals"] == [
        "cluster.local/ns/ai-api/sa/api",
        "cluster.local/ns/ai-jobs/sa/orchestrator",
    ]


def test_removed_amounts_delete_the_chart_default(example_tree: Rendered) -> None:
    """The egress gateway chart defaults to a 2-CPU limit; the profile sets none."""
    resources = _values(example_tree.tree, "prod", "istio-egressgateway")["resources"]
    assert resources["limits"] == {"cpu": None, "memory": "512Mi"}
