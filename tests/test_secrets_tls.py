"""Secrets from the external store, certificates, and the order a cluster comes up in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from meshctl import build as build_module
from meshctl.build import context
from meshctl.catalog import CHARTS
from meshctl.resources import example_spec
from meshctl.spec import load_platform

import harness
from conftest import Rendered, meshctl

VAULT_STORE = """    store:
      provider: vault
      vault:
        server: https://vault.ai.example.com
        path: secret
        role: external-secrets
"""

STORES = {
    "aws": (
        "    store:\n      provider: aws\n      aws:\n        region: eu-west-1\n"
        "        roleArn: arn:aws:iam::123456789012:role/external-secrets\n",
        "aws",
        {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/external-secrets"},
    ),
    "gcp": (
        "    store:\n      provider: gcp\n      gcp:\n        projectId: parallel-ai-prod\n"
        "        serviceAccount: eso@parallel-ai-prod.iam.gserviceaccount.com\n",
        "gcpsm",
        {"iam.gke.io/gcp-service-account": "eso@parallel-ai-prod.iam.gserviceaccount.com"},
    ),
    "azure": (
        "    store:\n      provider: azure\n      azure:\n"
        "        vaultUrl: https://parallel-ai.vault.azure.net\n"
        "        tenantId: 00000000-0000-0000-0000-000000000001\n"
        "        clientId: 00000000-0000-0000-0000-000000000002\n",
        "azurekv",
        {"azure.workload.identity/client-id": "00000000-0000-0000-0000-000000000002"},
    ),
    "vault": (VAULT_STORE, "vault", {}),
}


def _spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "platform.yaml"
    path.write_text(text)
    return path


def _built(spec: Path, env: str) -> build_module.EnvironmentBuild:
    return build_module.build_environment(load_platform(spec), env)


def _bodies(built: build_module.EnvironmentBuild, kind: str) -> list[dict[str, Any]]:
    return [m.body for m in built.manifests if m.body["kind"] == kind]


@pytest.mark.parametrize("provider", sorted(STORES))
def test_each_store_provider_renders_a_valid_store(provider: str, tmp_path: Path) -> None:
    block, key, annotations = STORES[provider]
    text = example_spec().read_text()
    assert VAULT_STORE in text
    built = _built(_spec(tmp_path, text.replace(VAULT_STORE, block)), "prod")
    (store,) = [
        b for b in _bodies(built, "ClusterSecretStore") if b["metadata"]["name"] == "parallel-ai"
    ]
    assert list(store["spec"]["provider"]) == [key]
    assert harness.manifest_problems(harness.upstream_dir(), store) == []
    (release,) = [r for r in built.releases if r.chart_key == "external-secrets"]
    assert release.values["serviceAccount"].get("annotations", {}) == annotations
    externals = _bodies(built, "ExternalSecret")
    assert any(e["spec"]["secretStoreRef"]["name"] == "parallel-ai" for e in externals)
    for external in externals:
        assert external["spec"]["secretStoreRef"]["kind"] == "ClusterSecretStore"
        assert harness.manifest_problems(harness.upstream_dir(), external) == []


def test_without_a_store_nothing_that_needs_credentials_renders(project: Path) -> None:
    spec = project / "platform.yaml"
    text = spec.read_text()
    start = text.index("  secrets:\n")
    end = text.index("\n\n", start)
    spec.write_text(text[:start] + text[end + 2 :])
    run = meshctl("validate", cwd=project)
    assert run.code == 1
    assert "PostgreSQL's passwords come from the secret store: set spec.secrets" in run.stdout
    assert "Redis's password come from the secret store" in run.stdout
    assert "Grafana's admin credentials come from the secret store" in run.stdout
    assert "Alertmanager receivers' URLs and keys come from the secret store" in run.stdout


def test_no_secret_value_is_ever_rendered(example_tree: Rendered) -> None:
    for env in example_tree.result.environments:
        for obj in harness.kustomize_build(example_tree.tree / "overlays" / env):
            if obj["kind"] == "Secret":
                # Only configuration that must be a Secret for its consumer
                # (Elasticsearch's role definitions), never a credential.
                assert set(obj.get("stringData", {})) | set(obj.get("data", {})) <= {"roles.yml"}, (
                    env,
                    obj["metadata"],
                )
            if obj["kind"] == "ExternalSecret":
                spec = obj["spec"]
                if spec["secretStoreRef"]["name"] == "parallel-ai":
                    for item in spec["data"]:
                        assert item["remoteRef"]["key"].startswith(f"parallel-ai/{env}/")
                template = spec["target"].get("template", {})
                # Literal template data is connection details, never a password.
                for key, value in template.get("data", {}).items():
                    if "password" in key.lower():
                        assert value.startswith("{{ ."), (obj["metadata"], key)


def test_every_route_host_has_a_certificate_in_its_ingress_namespace(
    example_tree: Rendered,
) -> None:
    for env in example_tree.result.environments:
        objects = harness.kustomize_build(example_tree.tree / "overlays" / env)
        certificates = {
            (o["metadata"]["namespace"], o["spec"]["secretName"]): o
            for o in objects
            if o["kind"] == "Certificate" and not o["spec"].get("isCA")
        }
        wanted = set()
        for ingress in (o for o in objects if o["kind"] == "Ingress"):
            for tls in ingress["spec"]["tls"]:
                key = (ingress["metadata"]["namespace"], tls["secretName"])
                wanted.add(key)
                assert certificates[key]["spec"]["dnsNames"] == tls["hosts"]
                assert certificates[key]["spec"]["issuerRef"]["name"] == "parallel-ai"
        assert wanted == set(certificates), env
        assert wanted


def test_issuers_per_environment(example_tree: Rendered) -> None:
    issuers = {}
    for env in example_tree.result.environments:
        objects = harness.kustomize_build(example_tree.tree / "overlays" / env)
        issuers[env] = {
            o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "ClusterIssuer"
        }
    assert issuers["dev"]["parallel-ai"] == {"ca": {"secretName": "parallel-ai-ca"}}
    assert issuers["dev"]["parallel-ai-selfsigned"] == {"selfSigned": {}}
    assert "staging" in issuers["staging"]["parallel-ai"]["acme"]["server"]
    assert issuers["prod"]["parallel-ai"]["acme"]["server"] == (
        "https://acme-v02.api.letsencrypt.org/directory"
    )
    assert set(issuers["prod"]) == {"parallel-ai"}


def test_a_ca_issuer_reads_its_key_pair_from_the_store(tmp_path: Path) -> None:
    text = example_spec().read_text()
    text = text.replace(
        "  tls:\n    issuer: selfSigned\n",
        "  tls:\n    issuer: ca\n    ca:\n      key: pki/parallel-ai/intermediate\n",
    )
    built = _built(_spec(tmp_path, text), "dev")
    (issuer,) = _bodies(built, "ClusterIssuer")
    assert issuer["spec"] == {"ca": {"secretName": "parallel-ai-ca"}}
    (external,) = [
        e for e in _bodies(built, "ExternalSecret") if e["metadata"]["name"] == "parallel-ai-ca"
    ]
    assert external["metadata"]["namespace"] == "cert-manager"
    assert external["spec"]["target"]["template"]["type"] == "kubernetes.io/tls"
    assert {d["remoteRef"]["key"] for d in external["spec"]["data"]} == {
        "pki/parallel-ai/intermediate"
    }


def _crd_groups_by_chart() -> dict[str, set[str]]:
    """API groups of the custom resources each operator chart installs."""
    return {
        "istio-base": {"networking.istio.io", "security.istio.io", "telemetry.istio.io"},
        "kong": {"configuration.konghq.com"},
        "tigera-operator": {"crd.projectcalico.org", "operator.tigera.io"},
        "cert-manager": {"cert-manager.io"},
        "external-secrets": {"external-secrets.io"},
        "cloudnative-pg": {"postgresql.cnpg.io"},
        "eck-operator": {"elasticsearch.k8s.elastic.co", "kibana.k8s.elastic.co"},
        "kube-prometheus-stack": {"monitoring.coreos.com"},
    }


def test_operators_sync_before_the_resources_that_use_them(example_tree: Rendered) -> None:
    groups = _crd_groups_by_chart()
    assert set(groups) <= set(CHARTS)
    for env in example_tree.result.environments:
        objects = harness.kustomize_build(example_tree.tree / "overlays" / env)
        apps = {a["metadata"]["name"]: a for a in objects if a["kind"] == "Application"}
        wave = {
            name: int(app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
            for name, app in apps.items()
        }
        chart_wave = {}
        for name, app in apps.items():
            for source in app["spec"].get("sources", []):
                if "helm" in source:
                    chart_wave[harness.catalog_chart(source)] = wave[name]
        for stage, stage_wave in context.STAGE_WAVES.items():
            app_name = f"parallel-ai-{env}-{stage}"
            if app_name not in apps:
                continue
            assert wave[app_name] == stage_wave
            folder = example_tree.tree / "overlays" / env / stage
            for doc in harness.kustomize_build(folder):
                group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
                owners = [chart for chart, g in groups.items() if group in g]
                # Every custom resource's CRD comes from a known chart.
                assert (
                    owners or group in ("", "policy", "apps", "batch") or group.endswith(".k8s.io")
                ), doc["apiVersion"]
                for owner in owners:
                    assert chart_wave[CHARTS[owner].upstream] < stage_wave, (
                        env,
                        stage,
                        doc["kind"],
                    )
        # Charts that need credentials or a database come after what provides them.
        if "redis" in chart_wave:
            assert chart_wave["redis"] > wave[f"parallel-ai-{env}-foundation"]
        assert chart_wave["kong"] > wave.get(f"parallel-ai-{env}-data", 0)


def test_the_example_names_its_stages_in_the_overlay(example_tree: Rendered) -> None:
    for env in example_tree.result.environments:
        kustomization = yaml.safe_load(
            (example_tree.tree / "overlays" / env / "kustomization.yaml").read_text()
        )
        assert kustomization["resources"][-1] == "apps"
        stages = kustomization["resources"][:-1]
        assert stages == [s for s in ("foundation", "data", "resources") if s in stages]
        assert "foundation" in stages and "resources" in stages


def test_the_store_serves_only_the_namespaces_that_need_it(example_tree: Rendered) -> None:
    for env in example_tree.result.environments:
        objects = harness.kustomize_build(example_tree.tree / "overlays" / env)
        (store,) = [
            o
            for o in objects
            if o["kind"] == "ClusterSecretStore" and o["metadata"]["name"] == "parallel-ai"
        ]
        users = {
            o["metadata"]["namespace"]
            for o in objects
            if o["kind"] == "ExternalSecret"
            and o["spec"]["secretStoreRef"]["name"] == "parallel-ai"
        }
        assert store["spec"]["conditions"] == [{"namespaces": sorted(users)}]
        # The services' own namespaces hold only their copies; nobody else may ask.
        assert "web" not in users and "ai-serving" not in users
