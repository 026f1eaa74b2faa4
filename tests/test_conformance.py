"""Every rendered tree (the example, each valid case, and the example under
Flux) against the real contracts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ruamel.yaml import YAML

import harness
from conftest import Rendered, valid_specs

SPECS = [*sorted(valid_specs()), harness.FLUX_EXAMPLE]


@pytest.fixture(scope="module")
def trees(
    rendered_trees: dict[str, Rendered], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Rendered]:
    """Both engines: every valid spec (Argo CD) and the example under Flux."""
    return {**rendered_trees, harness.FLUX_EXAMPLE: harness.flux_example(tmp_path_factory)}


def _environments(rendered: Rendered) -> list[str]:
    return rendered.result.environments


@pytest.mark.parametrize("name", SPECS)
def test_every_overlay_builds_and_every_object_is_valid(
    name: str, trees: dict[str, Rendered]
) -> None:
    upstream = harness.upstream_dir()
    rendered = trees[name]
    problems = []
    for env in _environments(rendered):
        objects = harness.kustomize_build(rendered.tree / "overlays" / env)
        assert objects, f"{env}: the overlay built nothing"
        for obj in objects:
            problems += [f"{env}: {p}" for p in harness.manifest_problems(upstream, obj)]
    assert problems == []


@pytest.mark.parametrize("name", SPECS)
def test_every_values_file_fits_its_pinned_chart(name: str, trees: dict[str, Rendered]) -> None:
    upstream = harness.upstream_dir()
    rendered = trees[name]
    gitops_path = rendered.result.platform.spec.gitops.path
    problems = []
    checked: set[Path] = set()
    for env in _environments(rendered):
        objects = harness.kustomize_build(rendered.tree / "overlays" / env)
        deployments = harness.helm_deployments(objects, rendered.tree, gitops_path, env)
        assert deployments, f"{env}: no Helm release"
        for deployment in deployments:
            chart = harness.chart_contract(upstream, deployment.chart)
            assert deployment.values, f"{deployment.owner} takes no values"
            for values in deployment.values:
                problems += [
                    f"{env}/{deployment.owner}: {p}"
                    for p in harness.values_problems(chart, values, upstream)
                ]
            checked.update(deployment.files)
        # Every values file written is one a release reads, and was checked.
        written = (rendered.tree / "overlays" / env / "values").glob("*.yaml")
        assert {p for p in written if p.name != "kustomization.yaml"} <= checked
    assert checked
    assert problems == []


@pytest.mark.parametrize("name", SPECS)
def test_kustomize_output_is_what_meshctl_emitted(name: str, trees: dict[str, Rendered]) -> None:
    """kustomize re-serializes (YAML 1.2); a string like "off" must survive it."""
    rendered = trees[name]
    for env in _environments(rendered):
        overlay = rendered.tree / "overlays" / env
        # Flux: the values ConfigMaps are kustomize's, not meshctl's (test_flux.py).
        objects = harness.without_generated(
            harness.kustomize_build(overlay), harness.generated_config_maps(overlay)
        )
        built = {harness.identity(o): o for o in objects}
        emitted = harness.emitted_documents(
            rendered.tree / "base", rendered.tree / "overlays" / env
        )
        assert built.keys() == emitted.keys()
        for key, obj in built.items():
            assert obj == emitted[key], f"{env}: {key} changed in kustomize's hands"


@pytest.mark.parametrize("name", SPECS)
def test_yaml_11_and_12_readers_see_the_same_data(name: str, trees: dict[str, Rendered]) -> None:
    """PyYAML reads as Helm and kubectl do (YAML 1.1); ruamel as kustomize (1.2)."""
    reader12 = YAML(typ="safe", pure=True)
    files = sorted(p for p in trees[name].tree.rglob("*.yaml"))
    assert files
    for path in files:
        text = path.read_text()
        as_11 = list(yaml.safe_load_all(text))
        as_12 = list(reader12.load_all(text))
        assert as_11 == as_12, f"{path} reads differently under YAML 1.1 and 1.2"


def test_harness_catches_an_unknown_chart_key() -> None:
    """The values check is not vacuous: a misspelt key and a wrong type are caught."""
    upstream = harness.upstream_dir()
    kong = harness.chart_contract(upstream, "kong")
    assert harness.values_problems(kong, {"replicaCount": 2, "podLabels": {"a": "b"}}) == []
    problems = harness.values_problems(
        kong, {"replicaCnt": 2, "admin": "off", "proxy": {"tls": {"enabeld": True}}}
    )
    assert any("replicaCnt" in p for p in problems)
    assert any("admin" in p and "map" in p for p in problems)
    assert any("proxy.tls.enabeld" in p for p in problems)


def test_harness_accepts_keys_the_chart_documents_in_comments() -> None:
    upstream = harness.upstream_dir()
    kong = harness.chart_contract(upstream, "kong")
    documented = {
        "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1},
        "deployment": {"serviceAccount": {"name": "kong"}},
        "affinity": {},
        "topologySpreadConstraints": [],
    }
    assert harness.values_problems(kong, documented) == []
    # ... but only inside the right block: `name` is not documented under `proxy.http`.
    assert harness.values_problems(kong, {"proxy": {"http": {"name": "x"}}})


def test_subchart_values_are_checked_against_the_subchart() -> None:
    upstream = harness.upstream_dir()
    stack = harness.chart_contract(upstream, "kube-prometheus-stack")
    # Grafana's own key, and one kube-prometheus-stack adds for its templates.
    good = {"grafana": {"extraSecretMounts": [], "sidecar": {"datasources": {"url": "x"}}}}
    assert harness.values_problems(stack, good, upstream) == []
    problems = harness.values_problems(stack, {"grafana": {"extraSecretMount": []}}, upstream)
    assert problems and "grafana.extraSecretMount:" in problems[0]


def test_harness_checks_kubernetes_typed_values() -> None:
    """resources, affinity, ... are checked as the Kubernetes types they are."""
    upstream = harness.upstream_dir()
    istiod = harness.chart_contract(upstream, "istiod")
    good = {"resources": {"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}}}
    assert harness.values_problems(istiod, good) == []
    bad = {"resources": {"limit": {"memory": "1Gi"}}, "nodeSelector": {"zone": 3}}
    problems = harness.values_problems(istiod, bad)
    assert any("resources" in p and "limit" in p for p in problems)
    assert any("nodeSelector" in p for p in problems)


def test_harness_checks_values_schema() -> None:
    upstream = harness.upstream_dir()
    gateway = harness.chart_contract(upstream, "gateway")
    assert gateway.schema is not None
    problems = harness.values_problems(gateway, {"kind": "StatefulSet"})
    assert any("values.schema.json" in p for p in problems)


def test_harness_rejects_unknown_kinds_and_invalid_objects() -> None:
    upstream = harness.upstream_dir()
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert harness.manifest_problems(upstream, unknown)
    bad_core = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}, "spex": {}}
    assert harness.manifest_problems(upstream, bad_core)
    bad_crd = {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "default"},
        "spec": {"mtls": {"mode": "STRICTT"}},
    }
    assert harness.manifest_problems(upstream, bad_crd)


def test_harness_rejects_duplicate_list_map_keys() -> None:
    """Valid by the schema, refused by server-side apply; a later `env` entry of
    the same name silently wins."""
    upstream = harness.upstream_dir()
    container = {
        "name": "app",
        "image": "app:1",
        "env": [{"name": "PASSWORD", "value": "changeme"}, {"name": "PASSWORD", "value": "x"}],
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j", "namespace": "n"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [container]}}},
    }
    (problem,) = harness.manifest_problems(upstream, job)
    assert problem == (
        "Job n/j: spec.template.spec.containers[0].env: name 'PASSWORD' appears more than once"
    )
    container["env"] = container["env"][:1]
    assert harness.manifest_problems(upstream, job) == []


def test_overlays_build_from_a_copy_of_the_tree(example_tree: Rendered, tmp_path: Path) -> None:
    """The tree is self-contained: no path points outside it."""
    import shutil

    copy = tmp_path / "elsewhere" / "rendered"
    shutil.copytree(example_tree.tree, copy)
    for env in example_tree.result.environments:
        assert harness.kustomize_build(copy / "overlays" / env)
