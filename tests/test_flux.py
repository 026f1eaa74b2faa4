"""Flux as the GitOps engine: sources, HelmReleases with generated values
ConfigMaps, and the order Argo CD's sync waves give, as dependsOn.

The conformance harness (test_conformance.py) builds and validates the same
tree against the Flux CRD schemas and checks the values against the charts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from meshctl import layout, pipeline
from meshctl.build import build_environment
from meshctl.build.context import STAGE_WAVES
from meshctl.catalog import CHARTS
from meshctl.spec import load_platform

import harness
from conftest import Rendered

NAMESPACE = "flux-system"


@pytest.fixture(scope="module")
def flux(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return harness.flux_example(tmp_path_factory)  # type: ignore[no-any-return]


def _built(rendered: Rendered, env: str) -> list[dict[str, Any]]:
    return harness.kustomize_build(rendered.tree / "overlays" / env)


def _of(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _waves(rendered: Rendered, env: str) -> dict[str, int]:
    """HelmRelease name -> the release's Argo CD sync wave."""
    releases = build_environment(rendered.result.platform, env).releases
    return {f"parallel-ai-{env}-{r.name}": r.wave for r in releases}


def test_the_gitops_namespace_defaults_to_flux_system(flux: Rendered) -> None:
    assert flux.result.platform.spec.gitops.namespace == NAMESPACE
    for env in flux.result.environments:
        for obj in _built(flux, env):
            if obj["apiVersion"].split("/")[0].endswith("toolkit.fluxcd.io"):
                assert obj["metadata"]["namespace"] == NAMESPACE


def test_no_argo_cd_object_under_flux(flux: Rendered) -> None:
    for env in flux.result.environments:
        assert not [o for o in _built(flux, env) if o["apiVersion"].startswith("argoproj.io/")]


def test_every_values_config_map_is_generated_hashed_and_equal_to_the_values_file(
    flux: Rendered,
) -> None:
    for env in flux.result.environments:
        objects = _built(flux, env)
        generated = harness.generated_config_maps(flux.tree / "overlays" / env)
        releases = _of(objects, "HelmRelease")
        assert releases
        for name, release in releases.items():
            ((config_map, text),) = harness.flux_values(objects, release)
            # kustomize's hash suffix, wired into the HelmRelease by name reference.
            assert harness.HASH_SUFFIX.search(config_map), config_map
            assert harness.HASH_SUFFIX.sub("", config_map) in generated
            values = flux.tree / layout.values_file(env, release["spec"]["releaseName"])
            assert text == values.read_text(), name
        # One ConfigMap per release, none unused.
        config_maps = {
            n for n in _of(objects, "ConfigMap") if harness.HASH_SUFFIX.sub("", n) in generated
        }
        assert config_maps == {r["spec"]["valuesFrom"][0]["name"] for r in releases.values()}


def test_a_values_change_rolls_a_new_config_map(flux: Rendered, tmp_path: Path) -> None:
    spec = tmp_path / "platform.yaml"
    text = harness.flux_spec_text()
    assert "maxReplicas: 30\n" in text
    spec.write_text(text.replace("maxReplicas: 30\n", "maxReplicas: 31\n"))
    tree = tmp_path / "rendered"
    pipeline.render(spec, tree, ["prod"], display_name="platform.yaml")

    def config_maps(root: Path) -> dict[str, str]:
        releases = _of(harness.kustomize_build(root / "overlays" / "prod"), "HelmRelease")
        return {n: r["spec"]["valuesFrom"][0]["name"] for n, r in releases.items()}

    before, after = config_maps(flux.tree), config_maps(tree)
    changed = {n for n in before if before[n] != after[n]}
    assert changed == {"parallel-ai-prod-kong"}


def test_helm_releases_pin_the_catalog_chart_from_its_repository(flux: Rendered) -> None:
    for env in flux.result.environments:
        objects = _built(flux, env)
        repositories = _of(objects, "HelmRepository")
        used = set()
        for name, release in _of(objects, "HelmRelease").items():
            spec = release["spec"]
            chart = spec["chart"]["spec"]
            repository = repositories[chart["sourceRef"]["name"]]
            used.add(repository["metadata"]["name"])
            pinned = [
                c
                for c in CHARTS.values()
                if (c.repo, c.chart, c.version)
                == (repository["spec"]["url"], chart["chart"], chart["version"])
            ]
            assert len(pinned) == 1, name
            (catalog,) = pinned
            assert (repository["spec"].get("type") == "oci") == catalog.oci
            assert spec["targetNamespace"] == spec["storageNamespace"]
            assert spec["install"]["createNamespace"] is True
            assert spec["install"]["remediation"]["retries"] == -1
            assert spec["upgrade"]["remediation"]["remediateLastFailure"] is True
            annotations = release["metadata"].get("annotations", {})
            if catalog.installs_crds:
                assert spec["install"]["crds"] == spec["upgrade"]["crds"] == "CreateReplace"
                # Removing it from the tree must not uninstall it (and its CRDs).
                assert annotations["kustomize.toolkit.fluxcd.io/prune"] == "disabled"
            else:
                assert "crds" not in spec["install"]
                assert "kustomize.toolkit.fluxcd.io/prune" not in annotations
        # Exactly the repositories the environment's releases use.
        assert used == set(repositories)
    redis = repositories["registry-1-docker-io-bitnamicharts"]["spec"]
    assert redis == {
        "interval": "1h",
        "type": "oci",
        "url": "oci://registry-1.docker.io/bitnamicharts",
    }


def test_helm_release_dependencies_reproduce_the_sync_waves(flux: Rendered) -> None:
    for env in flux.result.environments:
        waves = _waves(flux, env)
        releases = _of(_built(flux, env), "HelmRelease")
        assert set(releases) == set(waves)
        for name, release in releases.items():
            depends_on = [d["name"] for d in release["spec"].get("dependsOn", [])]
            assert depends_on == sorted(n for n, w in waves.items() if w < waves[name]), name
        # istio-base first, istiod after it, Kong after istiod.
        assert "dependsOn" not in releases[f"parallel-ai-{env}-istio-base"]["spec"]
        kong = [d["name"] for d in releases[f"parallel-ai-{env}-kong"]["spec"]["dependsOn"]]
        assert f"parallel-ai-{env}-istiod" in kong


def test_every_stage_waits_for_the_earlier_stages_and_the_charts_it_needs(
    flux: Rendered,
) -> None:
    for env in flux.result.environments:
        project = f"parallel-ai-{env}"
        waves = _waves(flux, env)
        kustomizations = _of(_built(flux, env), "Kustomization")
        stages = build_environment(flux.result.platform, env).stages
        assert stages == list(layout.STAGES)
        root = kustomizations.pop(project)
        assert root["spec"]["path"] == f"./rendered/overlays/{env}/apps"
        for index, stage in enumerate(stages):
            ks = kustomizations[f"{project}-{stage}"]["spec"]
            assert ks["path"] == f"./rendered/overlays/{env}/{stage}"
            assert ks["prune"] is True and ks["wait"] is True
            assert ks["sourceRef"] == {"kind": "GitRepository", "name": project}
            gate_name = f"{project}-{stage}-charts"
            assert [d["name"] for d in ks["dependsOn"]] == [
                *(f"{project}-{s}" for s in stages[:index]),
                gate_name,
            ]
            # The gate is ready once every Helm release of a lower wave is.
            gate = kustomizations[gate_name]["spec"]
            assert gate["wait"] is False  # healthChecks count only without wait
            assert gate["path"] == f"./rendered/overlays/{env}/gate"
            checked = [(h["apiVersion"], h["kind"], h["namespace"]) for h in gate["healthChecks"]]
            assert set(checked) == {("helm.toolkit.fluxcd.io/v2", "HelmRelease", NAMESPACE)}
            assert [h["name"] for h in gate["healthChecks"]] == sorted(
                n for n, w in waves.items() if w < STAGE_WAVES[stage]
            )
        # The gate's folder applies nothing.
        assert harness.kustomize_build(flux.tree / "overlays" / env / "gate") == []


def test_the_git_repository_follows_the_spec(flux: Rendered) -> None:
    gitops = flux.result.platform.spec.gitops
    for env in flux.result.environments:
        repositories = _of(_built(flux, env), "GitRepository")
        spec = repositories[f"parallel-ai-{env}"]["spec"]
        assert spec["url"] == gitops.repo_url
        assert spec["ref"] == {"branch": gitops.revision}


@pytest.mark.parametrize(
    ("revision", "ref"),
    [
        ("HEAD", None),
        ("main", {"branch": "main"}),
        ("refs/tags/v1.2.0", {"name": "refs/tags/v1.2.0"}),
        (
            "0123456789abcdef0123456789abcdef01234567",
            {"commit": "0123456789abcdef0123456789abcdef01234567"},
        ),
    ],
)
def test_revision_to_git_reference(tmp_path: Path, revision: str, ref: Any) -> None:
    spec = tmp_path / "platform.yaml"
    spec.write_text(
        harness.flux_spec_text().replace("    revision: main\n", f"    revision: {revision}\n")
    )
    platform = load_platform(spec)
    gitops = build_environment(platform, "dev").gitops
    (repository,) = [m.body for m in gitops if m.body["kind"] == "GitRepository"]
    assert repository["spec"].get("ref") == ref


def test_an_explicit_namespace_is_kept(tmp_path: Path) -> None:
    spec = tmp_path / "platform.yaml"
    spec.write_text(
        harness.flux_spec_text().replace(
            "    path: rendered\n", "    path: rendered\n    namespace: gitops\n"
        )
    )
    platform = load_platform(spec)
    assert platform.spec.gitops.namespace == "gitops"
    for manifest in build_environment(platform, "dev").gitops:
        assert manifest.body["metadata"]["namespace"] == "gitops"


def test_the_harness_catches_an_invalid_helm_release(flux: Rendered) -> None:
    upstream = harness.upstream_dir()
    release = _of(_built(flux, "prod"), "HelmRelease")["parallel-ai-prod-kong"]
    assert harness.manifest_problems(upstream, release) == []
    bad = yaml.safe_load(yaml.safe_dump(release))
    bad["spec"]["install"]["crds"] = "Replace"
    bad["spec"]["valuesFrom"][0]["kind"] = "Config"
    assert len(harness.manifest_problems(upstream, bad)) == 2
