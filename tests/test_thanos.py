"""Long-term metrics (Thanos) and Grafana's data sources, from the rendered example.

Asserted where a mistake would lose data or break a query on a cluster: the
retention per resolution and profile, one objstore.yml shared by the sidecar
and the chart (a valid S3 configuration once External Secrets fills in the
keys, with the right bucket and endpoint), replica deduplication on the label
the Prometheus Operator really sets, Grafana pointed at the query, and the
refusals when object storage is missing or the retentions are out of order.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshctl.build import monitoring, telemetry, thanos
from meshctl.resources import example_spec

import harness
from conftest import Rendered, meshctl

ENVIRONMENTS = ("dev", "staging", "prod")
NAMESPACE = "monitoring"
# env: (raw, 5m, 1h, query replicas, store gateway replicas)
PROFILE = {
    "dev": ("7d", "14d", "14d", 1, 1),
    "staging": ("30d", "90d", "90d", 2, 2),
    "prod": ("30d", "90d", "180d", 2, 2),
}
# The label the Prometheus Operator puts on each replica's series.
OPERATOR_REPLICA_LABEL = "prometheus_replica"


def _values(tree: Path, env: str, release: str) -> dict[str, Any]:
    text = (tree / f"overlays/{env}/values/{release}.yaml").read_text()
    return yaml.safe_load(text)  # type: ignore[no-any-return]


def _filled(template: str, values: dict[str, str]) -> str:
    """An External Secrets v2 template with `{{ .key }}` filled in, as ESO does."""
    return re.sub(r"\{\{ \.([A-Za-z0-9_]+) \}\}", lambda m: values[m.group(1)], template)


def _days(retention: str) -> int:
    return int(retention[:-1]) * {"d": 1, "w": 7, "y": 365}[retention[-1]]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_retention_and_sizes_per_profile(example_tree: Rendered, env: str) -> None:
    raw, five, hour, queries, stores = PROFILE[env]
    values = _values(example_tree.tree, env, "thanos")
    compactor = values["compactor"]
    assert compactor["enabled"] is True
    assert (
        compactor["retentionResolutionRaw"],
        compactor["retentionResolution5m"],
        compactor["retentionResolution1h"],
    ) == (raw, five, hour)
    assert values["query"]["replicaCount"] == queries
    assert values["storegateway"]["replicaCount"] == stores
    assert values["storegateway"]["persistence"]["enabled"] is True
    if env == "prod":
        # Six months of (downsampled) metrics.
        assert _days(hour) >= 180


def test_deduplication_uses_the_operators_replica_label(example_tree: Rendered) -> None:
    values = _values(example_tree.tree, "prod", "thanos")
    assert values["query"]["replicaLabel"] == [OPERATOR_REPLICA_LABEL]
    flags = values["compactor"]["extraFlags"]
    assert f"--deduplication.replica-label={OPERATOR_REPLICA_LABEL}" in flags
    # Deduplication in the compactor only happens with vertical compaction.
    assert "--compact.enable-vertical-compaction" in flags
    # The query finds the sidecars through kube-prometheus-stack's headless
    # Service, in the namespace the stack runs in.
    discovery = values["query"]["dnsDiscovery"]
    assert discovery == {
        "enabled": True,
        "sidecarsService": f"{monitoring.RELEASE}-thanos-discovery",
        "sidecarsNamespace": NAMESPACE,
    }
    stack = _values(example_tree.tree, "prod", "kube-prometheus-stack")["prometheus"]
    assert stack["thanosService"]["enabled"] is True


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_one_objstore_config_for_the_sidecar_and_the_chart(
    example_tree: Rendered, env: str
) -> None:
    objects = harness.kustomize_build(example_tree.tree / "overlays" / env)
    secret = harness.one(objects, "ExternalSecret", thanos.OBJSTORE_SECRET)
    assert secret["metadata"]["namespace"] == NAMESPACE
    # The object storage keys are the same store key as PostgreSQL's backups.
    assert {d["remoteRef"]["key"] for d in secret["spec"]["data"]} == {
        f"parallel-ai/{env}/object-storage"
    }
    fetched = {
        d["secretKey"]: f"value-of-{d['remoteRef']['property']}" for d in secret["spec"]["data"]
    }
    template = secret["spec"]["target"]["template"]["data"][thanos.OBJSTORE_KEY]
    config = yaml.safe_load(_filled(template, fetched))
    assert config == {
        "type": "S3",
        "config": {
            "bucket": f"parallel-ai-{env}-metrics",
            # Thanos wants host[:port], no scheme.
            "endpoint": "s3.eu-west-1.amazonaws.com",
            "region": "eu-west-1",
            "access_key": "value-of-access-key-id",
            "secret_key": "value-of-secret-access-key",
        },
    }
    sidecar = _values(example_tree.tree, env, "kube-prometheus-stack")["prometheus"]
    reference = sidecar["prometheusSpec"]["thanos"]["objectStorageConfig"]["existingSecret"]
    assert reference == {"name": thanos.OBJSTORE_SECRET, "key": thanos.OBJSTORE_KEY}
    chart = _values(example_tree.tree, env, "thanos")
    assert chart["existingObjstoreSecret"] == thanos.OBJSTORE_SECRET
    assert chart["existingObjstoreSecretItems"] == [
        {"key": thanos.OBJSTORE_KEY, "path": "objstore.yml"}
    ]
    # Blocks from different environments never look like one Prometheus.
    labels = sidecar["prometheusSpec"]["externalLabels"]
    assert labels == {"platform": "parallel-ai", "environment": env}


def test_workload_identity_writes_no_keys(project: Path) -> None:
    spec = project / "platform.yaml"
    text = spec.read_text()
    assert "credentials: store" in text
    spec.write_text(text.replace("credentials: store", "credentials: workloadIdentity"))
    run = meshctl("render", "-e", "prod", cwd=project)
    assert run.code == 0, run.stdout + run.stderr
    objects = harness.kustomize_build(project / "rendered" / "overlays" / "prod")
    assert not [
        o
        for o in objects
        if o["kind"] == "ExternalSecret" and o["metadata"]["name"] == thanos.OBJSTORE_SECRET
    ]
    secret = harness.one(objects, "Secret", thanos.OBJSTORE_SECRET)
    config = yaml.safe_load(secret["stringData"][thanos.OBJSTORE_KEY])
    assert config["config"]["aws_sdk_auth"] is True
    assert "access_key" not in config["config"] and "secret_key" not in config["config"]


def test_grafana_queries_thanos_and_reads_traces_and_logs(example_tree: Rendered) -> None:
    objects = harness.kustomize_build(example_tree.tree / "overlays" / "prod")
    grafana = _values(example_tree.tree, "prod", "kube-prometheus-stack")["grafana"]
    default = grafana["sidecar"]["datasources"]
    assert default["url"] == f"http://thanos-query.{NAMESPACE}.svc:9090"
    assert default["isDefaultDatasource"] is True
    sources = {s["uid"]: s for s in grafana["additionalDataSources"]}
    assert sources["jaeger"]["type"] == "jaeger"
    assert sources["jaeger"]["url"] == f"http://jaeger.{NAMESPACE}.svc:16686"
    assert sources["jaeger"]["jsonData"]["tracesToLogsV2"]["datasourceUid"] == "logs"
    logs = sources["logs"]
    assert logs["type"] == "elasticsearch"
    assert logs["jsonData"]["index"] == telemetry.LOG_INDICES
    assert logs["basicAuthUser"] == "grafana"
    # Every $__file{} Grafana reads is a key of a Secret mounted at that path.
    mounts = {m["mountPath"]: m["secretName"] for m in grafana["extraSecretMounts"]}
    for value in logs["secureJsonData"].values():
        path = re.fullmatch(r"\$__file\{(.+)\}", value)
        assert path, value
        folder, key = path.group(1).rsplit("/", 1)
        secret_name = mounts[folder]
        made = harness.one(objects, "ExternalSecret", secret_name)
        assert made["metadata"]["namespace"] == NAMESPACE
        keys = set(made["spec"]["target"].get("template", {}).get("data", {})) or {
            d["secretKey"] for d in made["spec"]["data"]
        }
        assert key in keys, (secret_name, key)


def test_without_thanos_grafana_reads_prometheus(project: Path) -> None:
    spec = project / "platform.yaml"
    text = spec.read_text()
    spec.write_text(text.replace("    thanos:\n      enabled: true\n", ""))
    run = meshctl("render", "-e", "dev", cwd=project)
    assert run.code == 0, run.stdout + run.stderr
    values = _values(project / "rendered", "dev", "kube-prometheus-stack")
    assert "url" not in values["grafana"]["sidecar"]["datasources"]
    assert "thanos" not in values["prometheus"]["prometheusSpec"]
    assert not (project / "rendered/overlays/dev/values/thanos.yaml").exists()


def test_thanos_without_object_storage_is_refused(tmp_path: Path) -> None:
    text = example_spec().read_text()
    start = text.index("    objectStorage:\n")
    end = text.index("    postgres:\n", start)
    text = text[:start] + text[end:]
    # Backups need object storage too: switch them off to see Thanos' own message.
    text = text.replace(
        "    postgres:\n      enabled: true\n",
        "    postgres:\n      enabled: true\n      backup:\n        enabled: false\n",
    )
    (tmp_path / "platform.yaml").write_text(text)
    run = meshctl("validate", cwd=tmp_path)
    assert run.code == 1
    assert "observability.thanos.enabled: Thanos keeps metrics in object storage" in run.stdout


def test_retentions_out_of_order_are_refused(tmp_path: Path) -> None:
    text = (
        example_spec()
        .read_text()
        .replace(
            "    thanos:\n      enabled: true\n",
            "    thanos:\n      enabled: true\n      retention:\n        oneHour: 20d\n",
        )
    )
    (tmp_path / "platform.yaml").write_text(text)
    run = meshctl("validate", cwd=tmp_path)
    assert run.code == 1
    # Staging and prod keep 90-day 5-minute blocks: a 20-day 1-hour retention
    # would delete what the 5-minute blocks are downsampled into first.
    assert "fiveMinutes (90d) <= oneHour (20d) is needed" in run.stdout
    assert "environments staging, prod" in run.stdout


def test_every_thanos_component_is_scraped(example_tree: Rendered) -> None:
    objects = harness.kustomize_build(example_tree.tree / "overlays" / "prod")
    monitor = harness.one(objects, "PodMonitor", "thanos")
    assert monitor["spec"]["selector"]["matchLabels"] == thanos.PODS
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "http"}]
