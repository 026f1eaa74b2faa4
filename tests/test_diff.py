"""`meshctl diff`: change kinds, risk flags, --base on a real Git repository, the
three formats, exit codes, Secret redaction, and that nothing on disk changes.

Risk flags are triggered on small hand-built trees (compared in memory); the
end-to-end tests render real specs. The example's exact output changes while
other components are developed, so no test depends on it beyond "a render
compared with itself has no difference".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from meshctl import diff, diff_report, pipeline, yamlio
from meshctl.errors import UsageError

from conftest import CASES, meshctl

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = CASES / "valid" / "minimal" / "platform.yaml"
SPEC = "platform.yaml"
KUSTOMIZE_API = "kustomize.config.k8s.io/v1beta1"


# --------------------------------------------------------------------------
# Helpers: trees built by hand.


def dump(documents: list[Any]) -> bytes:
    return yamlio.dump_documents(documents, header="test tree").encode()


def tree(
    files: dict[str, list[dict[str, Any]]] | None = None,
    *,
    env: str = "prod",
    values: dict[str, dict[str, Any]] | None = None,
    base: dict[str, list[dict[str, Any]]] | None = None,
) -> diff.MemoryTree:
    """An output tree: base/ files (if any), one overlay with its files and values."""
    out: dict[str, bytes] = {}
    entries = []
    if base is not None:
        for name, documents in base.items():
            out[f"base/{name}"] = dump(documents)
        out["base/kustomization.yaml"] = dump(
            [{"apiVersion": KUSTOMIZE_API, "kind": "Kustomization", "resources": sorted(base)}]
        )
        entries.append("../../base")
    for name, documents in (files or {}).items():
        out[f"overlays/{env}/{name}"] = dump(documents)
        entries.append(name)
    out[f"overlays/{env}/kustomization.yaml"] = dump(
        [{"apiVersion": KUSTOMIZE_API, "kind": "Kustomization", "resources": entries}]
    )
    for release, data in (values or {}).items():
        out[f"overlays/{env}/values/{release}.yaml"] = dump([data])
    return diff.MemoryTree(out)


def compare(
    old: diff.MemoryTree, new: diff.MemoryTree, *, env: str = "prod", production: bool = True
) -> diff.EnvironmentDiff:
    return diff.compare(old, new, [env], lambda _env: production)[0]


def risks(result: diff.EnvironmentDiff) -> set[str]:
    return {r.id for c in result.changes for r in c.risks}


def resource(
    api: str, kind: str, name: str, namespace: str | None = "ns", **rest: Any
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": api, "kind": kind, "metadata": metadata, **rest}


def deployment(replicas: int, name: str = "web") -> dict[str, Any]:
    return resource(
        "apps/v1",
        "Deployment",
        name,
        spec={
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "web", "image": "web:1"}]}},
        },
    )


def single(result: diff.EnvironmentDiff) -> diff.Change:
    assert len(result.changes) == 1, [c.target.label for c in result.changes]
    return result.changes[0]


def flagged(old: Any, new: Any, *, production: bool = True, values: bool = False) -> set[str]:
    """Risk ids of one resource (or values file) going from old to new (None: absent)."""
    if values:
        before = tree(values={"app": old} if old is not None else {})
        after = tree(values={"app": new} if new is not None else {})
    else:
        before = tree({"a.yaml": [old]} if old is not None else {})
        after = tree({"a.yaml": [new]} if new is not None else {})
    return risks(compare(before, after, production=production))


# --------------------------------------------------------------------------
# Change kinds.


def test_added_removed_and_changed_resources_with_changed_keys() -> None:
    old = tree({"apps.yaml": [deployment(2), deployment(1, "gone")]})
    new = tree({"apps.yaml": [deployment(4), deployment(1, "new")]})
    result = compare(old, new, production=False)
    by_name = {c.target.name: c for c in result.changes}
    assert {n: c.action for n, c in by_name.items()} == {
        "web": "changed",
        "gone": "removed",
        "new": "added",
    }
    assert by_name["web"].fields == [diff.FieldChange("spec.replicas", 2, 4)]
    assert by_name["web"].target == diff.Target("resource", "Deployment", "ns", "web", "apps/v1")
    assert "-  replicas: 2\n+  replicas: 4\n" in by_name["web"].unified
    assert by_name["gone"].unified.startswith("--- a/overlays/prod/apps.yaml\n+++ /dev/null\n")
    assert (result.count("added"), result.count("removed"), result.count("changed")) == (1, 1, 1)


def test_values_files_compare_as_data_with_dotted_paths() -> None:
    old = tree(values={"kong": {"env": {"a": 1, "b": {"c": "x"}}, "gone": True}})
    new = tree(values={"kong": {"env": {"a": 2, "b": {"c": "x", "d": [1]}}}, "redis": {}})
    result = compare(old, new, production=False)
    kong, redis = result.changes
    assert (kong.target, kong.action) == (diff.Target("values", "", "", "kong"), "changed")
    assert kong.fields == [
        diff.FieldChange("env.a", 1, 2),
        diff.FieldChange("env.b.d", diff.ABSENT, [1]),
        diff.FieldChange("gone", True, diff.ABSENT),
    ]
    assert (redis.target.name, redis.action) == ("redis", "added")


def test_lists_match_by_name_and_an_insert_is_one_added_item() -> None:
    containers = [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]
    changes = diff.field_changes(
        {"c": containers, "ports": [1, 2, 3]},
        {"c": [containers[1] | {"image": "b:2"}, containers[0]], "ports": [0, 1, 2, 3]},
    )
    assert [(diff.format_field_path(p), o, n) for p, o, n in changes] == [
        ("c[name=b].image", "b:1", "b:2"),
        ("ports[0]", diff.ABSENT, 0),
    ]
    odd = diff.format_field_path(("metadata", "annotations", "argocd.argoproj.io/sync-wave"))
    assert odd == 'metadata.annotations["argocd.argoproj.io/sync-wave"]'


def test_a_resource_moved_between_files_or_to_base_is_not_a_change() -> None:
    web, db = deployment(2), deployment(1, "db")
    old = tree({"one.yaml": [web], "two.yaml": [db]})
    assert compare(old, tree({"one.yaml": [db, web]})).changes == []
    assert compare(old, tree({"two.yaml": [db]}, base={"web.yaml": [web]})).changes == []


def test_whitespace_key_order_and_comments_are_not_a_change() -> None:
    old = tree({"a.yaml": [deployment(2)]})
    text = (
        "# a hand-written comment\n"
        "kind: Deployment   # trailing comment\n"
        "metadata: {namespace: ns, name: web}\n\n\n"
        "apiVersion: apps/v1\n"
        "spec:\n"
        "    template:\n"
        "        spec:\n"
        "            containers:\n"
        "            -   {image: 'web:1', name: web}\n"
        "    replicas: 2\n"
    )
    new = diff.MemoryTree({**old.files, "overlays/prod/a.yaml": text.encode()})
    assert new.files["overlays/prod/a.yaml"] != old.files["overlays/prod/a.yaml"]
    assert compare(old, new).changes == []


def test_a_base_change_counts_in_every_environment_that_includes_it() -> None:
    def two(replicas: int) -> diff.MemoryTree:
        files = {"base/web.yaml": dump([deployment(replicas)])}
        files["base/kustomization.yaml"] = dump([{"resources": ["web.yaml"]}])
        for env in ("dev", "prod"):
            files[f"overlays/{env}/kustomization.yaml"] = dump([{"resources": ["../../base"]}])
        files["overlays/qa/kustomization.yaml"] = dump([{"resources": []}])
        return diff.MemoryTree(files)

    result = diff.compare(two(3), two(2), ["dev", "prod", "qa"], lambda env: env == "prod")
    assert [len(r.changes) for r in result] == [1, 1, 0]
    assert risks(result[0]) == set()
    assert risks(result[1]) == {"replicas-reduced"}


# --------------------------------------------------------------------------
# Risk flags, one by one.

CNPG = "postgresql.cnpg.io/v1"


@pytest.mark.parametrize(
    "removed",
    [
        resource(CNPG, "Cluster", "postgres", spec={"instances": 3}),
        resource(CNPG, "Pooler", "postgres-pooler-rw"),
        resource(CNPG, "ScheduledBackup", "postgres-daily"),
        resource("elasticsearch.k8s.elastic.co/v1", "Elasticsearch", "search"),
        resource("kibana.k8s.elastic.co/v1", "Kibana", "kibana"),
        resource("v1", "PersistentVolumeClaim", "data-0"),
        resource("apps/v1", "StatefulSet", "queue"),
    ],
    ids=lambda r: r["kind"],
)
def test_deleting_a_data_resource_is_flagged(removed: dict[str, Any]) -> None:
    assert flagged(removed, None, production=False) == {"data-deleted"}


def application(chart: str, version: str, *, finalizer: bool = True) -> dict[str, Any]:
    app = resource(
        "argoproj.io/v1alpha1",
        "Application",
        f"p-prod-{chart}",
        "argocd",
        spec={
            "sources": [
                {
                    "chart": chart,
                    "repoURL": "https://charts.example.org",
                    "targetRevision": version,
                },
                {"ref": "values", "repoURL": "https://git.example.org/gitops.git"},
            ]
        },
    )
    if finalizer:
        app["metadata"]["finalizers"] = ["resources-finalizer.argocd.argoproj.io"]
    return app


def test_deleting_a_data_application_or_turning_persistence_off_is_flagged() -> None:
    assert flagged(application("redis", "23.1.1"), None) == {"data-deleted"}
    # Without the resources finalizer Argo CD leaves the release's objects in place.
    assert flagged(application("redis", "23.1.1", finalizer=False), None) == set()
    assert flagged(application("kong", "3.4.1"), None) == set()
    data_stage = resource(
        "argoproj.io/v1alpha1",
        "Application",
        "p-prod-data",
        "argocd",
        spec={"source": {"path": "rendered/overlays/prod/data", "repoURL": "https://g"}},
    )
    data_stage["metadata"]["finalizers"] = ["resources-finalizer.argocd.argoproj.io"]
    assert flagged(data_stage, None) == {"data-deleted"}
    on = {"master": {"persistence": {"enabled": True, "size": "8Gi"}}}
    off = {"master": {"persistence": {"enabled": False, "size": "8Gi"}}}
    assert flagged(on, off, values=True, production=False) == {"data-deleted"}
    assert flagged(off, on, values=True) == set()
    assert flagged(on, None, values=True) == set()  # another release's values (not redis)


def test_deleting_the_namespace_that_holds_the_data_is_flagged() -> None:
    cluster = resource(CNPG, "Cluster", "postgres", "data")
    old = tree({"ns.yaml": [resource("v1", "Namespace", "data", None)], "db.yaml": [cluster]})
    new = tree({"db.yaml": [cluster]})
    assert risks(compare(old, new)) == {"data-deleted"}
    old = tree({"ns.yaml": [resource("v1", "Namespace", "web", None)], "db.yaml": [cluster]})
    assert risks(compare(old, new)) == set()


def test_fewer_replicas_or_instances_are_flagged_in_production_only() -> None:
    assert flagged(deployment(3), deployment(2)) == {"replicas-reduced"}
    assert flagged(deployment(3), deployment(2), production=False) == set()
    assert flagged(deployment(2), deployment(3)) == set()
    for key in ("replicaCount", "minReplicas", "maxReplicas"):
        assert flagged({key: 5}, {key: 3}, values=True) == {"replicas-reduced"}
    cluster = resource(CNPG, "Cluster", "pg", spec={"instances": 3})
    assert flagged(cluster, cluster | {"spec": {"instances": 1}}) == {"replicas-reduced"}
    nodes = resource(
        "elasticsearch.k8s.elastic.co/v1", "Elasticsearch", "es", spec={"nodeSets": []}
    )
    three = nodes | {"spec": {"nodeSets": [{"name": "default", "count": 3}]}}
    two = nodes | {"spec": {"nodeSets": [{"name": "default", "count": 2}]}}
    assert flagged(three, two) == {"replicas-reduced"}
    # A count that disappears falls back to the default: flagged too.
    assert flagged({"replicaCount": 3}, {}, values=True) == {"replicas-reduced"}


def peer_auth(mode: str, **ports: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"mtls": {"mode": mode}}
    if ports:
        spec["portLevelMtls"] = {p: {"mode": m} for p, m in ports.items()}
    return resource(
        "security.istio.io/v1", "PeerAuthentication", "default", "istio-system", spec=spec
    )


def test_mtls_weakened() -> None:
    assert flagged(peer_auth("STRICT"), peer_auth("PERMISSIVE")) == {"mtls-weakened"}
    assert flagged(peer_auth("STRICT"), peer_auth("DISABLE")) == {"mtls-weakened"}
    assert flagged(peer_auth("STRICT"), None) == {"mtls-weakened"}
    assert flagged(peer_auth("PERMISSIVE"), peer_auth("STRICT")) == set()
    assert flagged(peer_auth("PERMISSIVE"), None) == set()
    assert flagged(peer_auth("STRICT", p8080="STRICT"), peer_auth("STRICT", p8080="DISABLE")) == {
        "mtls-weakened"
    }
    rule = resource("networking.istio.io/v1", "DestinationRule", "api")
    mutual = rule | {"spec": {"trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}}
    plain = rule | {"spec": {"trafficPolicy": {"tls": {"mode": "DISABLE"}}}}
    assert flagged(mutual, plain) == {"mtls-weakened"}
    assert flagged(plain, mutual) == set()


def authz(rules: list[Any] | None, action: str = "ALLOW", **selector: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"action": action}
    if rules is not None:
        spec["rules"] = rules
    if selector:
        spec["selector"] = {"matchLabels": selector}
    return resource("security.istio.io/v1", "AuthorizationPolicy", "api", spec=spec)


def principals(*names: str) -> dict[str, Any]:
    return {"from": [{"source": {"principals": list(names)}}]}


def test_authorization_policy_loosened_or_removed() -> None:
    base = authz([principals("kong")], app="api")
    assert flagged(base, authz([principals("kong", "batch")], app="api")) == {"authz-loosened"}
    assert flagged(base, authz([principals("kong"), principals("x")], app="api")) == {
        "authz-loosened"
    }
    assert flagged(base, authz([principals("kong")])) == {"authz-loosened"}  # selector gone
    assert flagged(base, authz([{}], app="api")) == {"authz-loosened"}  # from dropped
    assert flagged(base, None) == {"authz-loosened"}
    assert flagged(base, authz([principals("kong")], "DENY", app="api")) == set()
    # Narrower: fewer principals, a condition added, a selector label added.
    wide = authz([principals("kong", "batch")], app="api")
    assert flagged(wide, base) == set()
    narrower = authz([principals("kong") | {"to": [{"operation": {"paths": ["/v1"]}}]}], app="api")
    assert flagged(base, narrower) == set()
    assert flagged(base, authz([principals("kong")], app="api", tier="web")) == set()
    # DENY policies loosen when they deny less.
    deny = authz([principals("kong", "batch")], "DENY")
    assert flagged(deny, authz([principals("kong")], "DENY")) == {"authz-loosened"}
    assert flagged(deny, authz([principals("kong", "batch")], "ALLOW")) == {"authz-loosened"}
    # New policies come with new services; one that allows everything is flagged.
    assert flagged(None, base) == set()
    assert flagged(None, authz([{}])) == {"authz-loosened"}


def calico(ingress: list[Any], selector: str = "app == 'api'") -> dict[str, Any]:
    return resource(
        "crd.projectcalico.org/v1",
        "NetworkPolicy",
        "api",
        spec={"selector": selector, "types": ["Ingress"], "ingress": ingress},
    )


ALLOW_KONG = {
    "action": "Allow",
    "protocol": "TCP",
    "source": {"namespaceSelector": "projectcalico.org/name == 'kong'"},
    "destination": {"ports": [8080]},
}
DENY = {"action": "Deny"}


def test_calico_policy_loosened_or_removed() -> None:
    base = calico([ALLOW_KONG, DENY])
    assert flagged(base, None) == {"network-policy-loosened"}
    more_ports = ALLOW_KONG | {"destination": {"ports": [8080, 9090]}}
    assert flagged(base, calico([more_ports, DENY])) == {"network-policy-loosened"}
    any_source = {k: v for k, v in ALLOW_KONG.items() if k != "source"}
    assert flagged(base, calico([any_source, DENY])) == {"network-policy-loosened"}
    assert flagged(base, calico([ALLOW_KONG])) == {"network-policy-loosened"}  # deny removed
    extra = ALLOW_KONG | {"source": {"namespaceSelector": "projectcalico.org/name == 'x'"}}
    assert flagged(base, calico([ALLOW_KONG, extra, DENY])) == {"network-policy-loosened"}
    assert flagged(base, calico([ALLOW_KONG, DENY], "all()")) == {"network-policy-loosened"}
    no_types = calico([ALLOW_KONG, DENY])
    no_types["spec"]["types"] = []
    assert flagged(base, no_types) == {"network-policy-loosened"}
    # Tighter: a port fewer, a rule fewer, a narrower selector, another deny.
    assert flagged(calico([more_ports, DENY]), base) == set()
    assert flagged(calico([ALLOW_KONG, extra, DENY]), base) == set()
    assert flagged(base, calico([ALLOW_KONG, DENY], "app == 'api' && tier == 'x'")) == set()
    assert flagged(base, calico([DENY, ALLOW_KONG, DENY])) == set()
    global_policy = base | {"kind": "GlobalNetworkPolicy"}
    assert flagged(global_policy, None) == {"network-policy-loosened"}
    assert flagged(None, calico([{"action": "Allow"}])) == {"network-policy-loosened"}
    assert flagged(None, base) == set()


def k8s_policy(ingress: list[Any]) -> dict[str, Any]:
    return resource(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        "api",
        spec={"podSelector": {"matchLabels": {"app": "api"}}, "ingress": ingress},
    )


def test_kubernetes_network_policy_loosened_or_removed() -> None:
    from_web = {"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}
    base = k8s_policy([from_web])
    assert flagged(base, None) == {"network-policy-loosened"}
    assert flagged(base, k8s_policy([{}])) == {"network-policy-loosened"}
    two = {"from": [*from_web["from"], {"namespaceSelector": {}}]}
    assert flagged(base, k8s_policy([two])) == {"network-policy-loosened"}
    wide = k8s_policy([from_web])
    wide["spec"]["podSelector"] = {}
    assert flagged(base, wide) == {"network-policy-loosened"}
    assert flagged(k8s_policy([two]), base) == set()
    assert flagged(base, k8s_policy([])) == set()


def test_tls_minimum_lowered() -> None:
    kong = {"env": {"ssl_protocols": "TLSv1.2 TLSv1.3"}}
    lower = {"env": {"ssl_protocols": "TLSv1.1 TLSv1.2 TLSv1.3"}}
    assert flagged(kong, lower, values=True) == {"tls-min-lowered"}
    assert flagged(kong, {"env": {"ssl_protocols": "TLSv1.3"}}, values=True) == set()
    assert flagged(kong, {"env": {}}, values=True) == {"tls-min-lowered"}
    istiod = {"meshConfig": {"meshMTLS": {"minProtocolVersion": "TLSV1_3"}}}
    istiod_12 = {"meshConfig": {"meshMTLS": {"minProtocolVersion": "TLSV1_2"}}}
    assert flagged(istiod, istiod_12, values=True) == {"tls-min-lowered"}
    assert flagged(istiod_12, istiod, values=True) == set()
    issuer = resource("v1", "ConfigMap", "x", data={"minTLSVersion": "VersionTLS13"})
    issuer_12 = resource("v1", "ConfigMap", "x", data={"minTLSVersion": "VersionTLS12"})
    assert flagged(issuer, issuer_12) == {"tls-min-lowered"}


def test_chart_major_version_changed() -> None:
    assert flagged(application("kong", "3.4.1"), application("kong", "4.0.0")) == {
        "chart-major-changed"
    }
    assert flagged(application("kong", "4.0.0"), application("kong", "3.4.1")) == {
        "chart-major-changed"
    }
    assert flagged(application("kong", "3.4.1"), application("kong", "3.5.0")) == set()
    pg = application("cloudnative-pg", "0.29.0")
    assert flagged(pg, application("cloudnative-pg", "0.30.0")) == {"chart-major-changed"}
    assert flagged(pg, application("cloudnative-pg", "0.29.1")) == set()
    operator = application("tigera-operator", "v3.32.1")
    assert flagged(operator, application("tigera-operator", "v4.0.0")) == {"chart-major-changed"}


def test_retention_shortened() -> None:
    cluster = resource(CNPG, "Cluster", "pg", spec={"backup": {"retentionPolicy": "30d"}})
    shorter = resource(CNPG, "Cluster", "pg", spec={"backup": {"retentionPolicy": "14d"}})
    months = resource(CNPG, "Cluster", "pg", spec={"backup": {"retentionPolicy": "2m"}})
    assert flagged(cluster, shorter, production=False) == {"retention-shortened"}
    assert flagged(shorter, cluster) == set()
    assert flagged(cluster, months) == set()  # CloudNativePG's m is months
    prometheus = {"prometheus": {"prometheusSpec": {"retention": "30d", "retentionSize": "50GB"}}}
    hours = {"prometheus": {"prometheusSpec": {"retention": "240h", "retentionSize": "50GB"}}}
    smaller = {"prometheus": {"prometheusSpec": {"retention": "30d", "retentionSize": "10GiB"}}}
    assert flagged(prometheus, hours, values=True) == {"retention-shortened"}
    assert flagged(prometheus, smaller, values=True) == {"retention-shortened"}
    assert flagged(hours, prometheus, values=True) == set()
    assert flagged({"retentionDays": 30}, {"retentionDays": 7}, values=True) == {
        "retention-shortened"
    }
    # Thanos' compactor, Jaeger's index cleaner.
    thanos = {"compactor": {"retentionResolution1h": "180d"}}
    assert flagged(thanos, {"compactor": {"retentionResolution1h": "90d"}}, values=True) == {
        "retention-shortened"
    }

    def cleaner(days: int) -> dict[str, Any]:
        cron = resource("batch/v1", "CronJob", "jaeger-es-index-cleaner", spec={})
        cron["metadata"]["annotations"] = {"meshctl.io/retention": f"{days}d"}
        return cron

    assert flagged(cleaner(30), cleaner(7)) == {"retention-shortened"}
    assert flagged(cleaner(7), cleaner(30)) == set()


def test_a_new_peer_authentication_that_accepts_plain_text_is_flagged() -> None:
    def peer(spec: dict[str, Any]) -> dict[str, Any]:
        return resource("security.istio.io/v1", "PeerAuthentication", "api", spec=spec)

    metrics_port = {"mtls": {"mode": "UNSET"}, "portLevelMtls": {"9090": {"mode": "PERMISSIVE"}}}
    assert flagged(None, peer(metrics_port)) == {"mtls-weakened"}
    assert flagged(None, peer({"mtls": {"mode": "DISABLE"}})) == {"mtls-weakened"}
    assert flagged(None, peer({"mtls": {"mode": "STRICT"}})) == set()


def test_every_risk_id_is_documented_and_in_the_schema() -> None:
    schema = json.loads((ROOT / "schemas" / "diff.schema.json").read_text())
    assert schema["$defs"]["riskId"]["enum"] == list(diff.RISKS)
    doc = (ROOT / "docs" / "diff.md").read_text()
    for risk in diff.RISKS:
        assert f"`{risk}`" in doc, risk


def test_risky_changes_come_first() -> None:
    old = tree({"a.yaml": [deployment(1, "aaa"), deployment(3, "zzz")]})
    new = tree({"a.yaml": [deployment(2, "aaa"), deployment(2, "zzz")]})
    result = compare(old, new)
    assert [(c.target.name, c.risky) for c in result.changes] == [("zzz", True), ("aaa", False)]


# --------------------------------------------------------------------------
# Secrets.

SECRET_VALUE = "hunter2-do-not-print"


def secret(value: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
    return resource(
        "v1",
        "Secret",
        "db",
        "data",
        stringData={"password": value, **(extra or {})},
        data={"token": "aHVudGVyMg=="},
    )


def test_secret_values_are_redacted_in_every_change_and_format() -> None:
    changed = compare(
        tree({"s.yaml": [secret("old-" + SECRET_VALUE)]}),
        tree({"s.yaml": [secret(SECRET_VALUE, {"user": "admin-" + SECRET_VALUE})]}),
        production=False,
    )
    removed = compare(tree({"s.yaml": [secret(SECRET_VALUE)]}), tree({}))
    change = single(changed)
    assert change.fields == [
        diff.FieldChange("stringData.password", diff.REDACTED, diff.REDACTED),
        diff.FieldChange("stringData.user", diff.ABSENT, diff.REDACTED),
    ]
    assert "+  password: <redacted> (changed)" in change.unified
    report = diff.DiffReport(SPEC, diff.Against("directory", "rendered"), [changed, removed])
    outputs = [
        diff_report.to_json(report),
        diff_report.markdown(report),
        diff_report.plain_text(diff_report.text_report(report, unified=True)),
    ]
    for output in outputs:
        assert diff.REDACTED in output
        for leak in (SECRET_VALUE, "aHVudGVyMg==", "hunter2"):
            assert leak not in output


# --------------------------------------------------------------------------
# Formats.


def sample_report() -> diff.DiffReport:
    """Every kind of change, in two environments, some of them risky."""
    prod_old = tree(
        {"a.yaml": [deployment(3), resource(CNPG, "Cluster", "pg"), secret(SECRET_VALUE)]},
        values={"kong": {"env": {"ssl_protocols": "TLSv1.2"}, "replicaCount": 2}},
        base={"ns.yaml": [resource("v1", "Namespace", "web", None)]},
    )
    prod_new = tree(
        {
            "a.yaml": [deployment(2), secret("x")],
            "b.yaml": [resource("v1", "ConfigMap", "cm", data={"a": "|`<b>`|"})],
        },
        values={
            "kong": {"env": {"ssl_protocols": "TLSv1.1"}, "replicaCount": 2, "note": "|`<b>`|"}
        },
    )
    dev_old = tree({"a.yaml": [deployment(3)]}, env="dev")
    dev_new = tree(
        {"a.yaml": [deployment(2)], "b.yaml": [resource("v1", "ConfigMap", "cm")]}, env="dev"
    )
    old = diff.MemoryTree({**prod_old.files, **dev_old.files})
    new = diff.MemoryTree({**prod_new.files, **dev_new.files})
    envs = diff.compare(old, new, ["dev", "prod"], lambda env: env == "prod")
    return diff.DiffReport(SPEC, diff.Against("git", SPEC, "HEAD", "0" * 40), envs)


def test_json_output_follows_its_schema() -> None:
    schema = json.loads((ROOT / "schemas" / "diff.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    report = sample_report()
    body = json.loads(diff_report.to_json(report))
    validator.validate(body)
    assert body["version"] == diff_report.JSON_VERSION == 1
    assert body["differences"] is True
    assert body["summary"] == {"added": 2, "removed": 2, "changed": 4, "risky": 3}
    prod = body["environments"][1]
    assert prod["name"] == "prod" and prod["production"] is True
    assert [c["risks"] != [] for c in prod["changes"]] == sorted(
        (c["risks"] != [] for c in prod["changes"]), reverse=True
    )
    namespace = next(c for c in prod["changes"] if c["target"].get("kind") == "Namespace")
    assert namespace["target"]["namespace"] is None
    values = next(c for c in prod["changes"] if c["target"]["type"] == "values")
    assert values["fields"] == [
        {"path": "env.ssl_protocols", "old": "TLSv1.2", "new": "TLSv1.1"},
        {"path": "note", "new": "|`<b>`|"},
    ]
    assert {r["id"] for r in body["risks"]} == {
        "data-deleted",
        "tls-min-lowered",
        "replicas-reduced",
    }
    empty = diff.DiffReport(
        SPEC, diff.Against("directory", "rendered"), [diff.EnvironmentDiff("dev", False)]
    )
    validator.validate(json.loads(diff_report.to_json(empty)))


def test_markdown_is_a_pull_request_comment() -> None:
    text = diff_report.markdown(sample_report())
    assert text.startswith("### meshctl diff\n")
    assert text.index("Risky changes") < text.index("<summary><b>prod (production)</b>")
    assert text.count("<details>") == text.count("</details>") == 2 + 8
    assert "```diff\n" in text
    # User text cannot break the table or inject HTML.
    assert '<code>"&#124;&#96;&lt;b&gt;&#96;&#124;"</code>' in text


def test_markdown_is_cut_to_the_size_limit_with_a_note() -> None:
    many = [deployment(i % 3 + 1, f"web-{i:04d}") for i in range(600)]
    old = tree({"a.yaml": many})
    new = tree({"a.yaml": [d | {"spec": {"replicas": 9}} for d in many]})
    cluster = resource(CNPG, "Cluster", "pg")
    old.files["overlays/prod/z.yaml"] = dump([cluster])
    old.files["overlays/prod/kustomization.yaml"] = dump([{"resources": ["a.yaml", "z.yaml"]}])
    report = diff.DiffReport(
        SPEC,
        diff.Against("directory", "rendered"),
        diff.compare(old, new, ["prod"], lambda _env: True),
    )
    full = diff_report.markdown(report, limit=10_000_000)
    assert len(full) > diff_report.MARKDOWN_LIMIT
    text = diff_report.markdown(report)
    assert len(text) <= diff_report.MARKDOWN_LIMIT
    assert "**Truncated:**" in text
    assert "data-deleted" in text  # the risky change made it in
    assert text.count("<details>") == text.count("</details>")
    small = diff_report.markdown(report, limit=5_000)
    assert len(small) <= 5_000
    assert small.count("<details>") == small.count("</details>")


def test_plain_text_has_a_summary_table_then_the_changes() -> None:
    text = diff_report.plain_text(diff_report.text_report(sample_report()))
    lines = text.splitlines()
    assert lines[0] == (
        f"meshctl diff: {SPEC} against HEAD:{SPEC}: 8 changes in 2 environments, 3 risky"
    )
    assert lines[2].split() == ["environment", "production", "added", "removed", "changed", "risky"]
    assert lines[3].split() == ["dev", "no", "1", "0", "1", "0"]
    assert lines[4].split() == ["prod", "yes", "1", "2", "3", "3"]
    assert "\x1b[" not in text
    assert "  ! data-deleted  prod  removed postgresql.cnpg.io/v1 Cluster ns/pg" in text
    assert "      spec.replicas: 3 -> 2" in text
    assert "@@" not in text
    assert "@@" in diff_report.plain_text(diff_report.text_report(sample_report(), unified=True))


# --------------------------------------------------------------------------
# End to end: a rendered tree on disk.


def snapshot(folder: Path) -> dict[str, tuple[bytes, int] | None]:
    found: dict[str, tuple[bytes, int] | None] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        found[key] = (path.read_bytes(), path.stat().st_mtime_ns) if path.is_file() else None
    return found


@pytest.fixture
def minimal(tmp_path: Path) -> Path:
    """A project with the minimal spec, rendered into rendered/."""
    shutil.copy(MINIMAL, tmp_path / SPEC)
    pipeline.render(tmp_path / SPEC, tmp_path / "rendered", display_name=SPEC)
    return tmp_path


def test_a_fresh_render_has_no_difference_and_nothing_changes_on_disk(project: Path) -> None:
    pipeline.render(project / SPEC, project / "rendered", display_name=SPEC)
    before = snapshot(project)
    report = diff.diff_directory(project / SPEC, project / "rendered", display_name=SPEC)
    assert not report.differences
    assert [e.name for e in report.environments] == ["dev", "staging", "prod"]
    run = meshctl("diff", "--exit-code", cwd=project)
    assert (run.code, run.stderr) == (0, "")
    assert run.stdout.startswith("no differences: rendered/ is what platform.yaml renders")
    assert snapshot(project) == before


def test_a_hand_edited_tree_shows_only_real_changes(project: Path) -> None:
    """Reformatting a file is no change; a changed value is one, in its environment."""
    pipeline.render(project / SPEC, project / "rendered", display_name=SPEC)
    tree_dir = project / "rendered"
    path = next((tree_dir / "overlays/prod/values").glob("*.yaml"))
    data = yamlio.load_output(path.read_text())
    path.write_text("# edited by hand\n" + json.dumps(data, indent=4) + "\n")
    assert not diff.diff_directory(project / SPEC, tree_dir, display_name=SPEC).differences
    assert pipeline.render(project / SPEC, tree_dir, check_only=True).differences
    path.write_text(json.dumps({**data, "handEdited": True}))
    report = diff.diff_directory(project / SPEC, tree_dir, display_name=SPEC)
    change = single(report.environments[2])
    assert [e.name for e in report.environments if e.changes] == ["prod"]
    assert (change.action, change.target.name) == ("changed", path.stem)
    # The render would remove the key it does not know.
    assert change.fields == [diff.FieldChange("handEdited", True, diff.ABSENT)]


def test_a_secret_planted_in_the_tree_never_shows(minimal: Path) -> None:
    rendered = minimal / "rendered"
    planted = secret(SECRET_VALUE)
    (rendered / "overlays/dev/planted.yaml").write_bytes(dump([planted]))
    kustomization = rendered / "overlays/dev/kustomization.yaml"
    body = yamlio.load_output(kustomization.read_text())
    body["resources"].append("planted.yaml")
    kustomization.write_bytes(dump([body]))
    before = snapshot(minimal)
    for args in ([], ["--unified"], ["--format", "json"], ["--format", "markdown"]):
        run = meshctl("diff", *args, cwd=minimal)
        assert run.code == 0, run.stderr
        assert "Secret" in run.stdout
        if args:  # the plain list names the Secret; the others show its (redacted) body
            assert diff.REDACTED in run.stdout
        assert SECRET_VALUE not in run.stdout + run.stderr
        assert "aHVudGVyMg==" not in run.stdout
    assert snapshot(minimal) == before


def test_an_environment_only_on_disk_is_shown_removed(minimal: Path) -> None:
    rendered = minimal / "rendered"
    shutil.copytree(rendered / "overlays/dev", rendered / "overlays/qa")
    report = diff.diff_directory(minimal / SPEC, rendered, display_name=SPEC)
    dev, qa = report.environments
    assert (dev.name, dev.changes) == ("dev", [])
    assert qa.name == "qa" and qa.changes
    assert {c.action for c in qa.changes} == {"removed"}
    # -e limits the comparison to the named environments.
    only = diff.diff_directory(minimal / SPEC, rendered, ["dev"], display_name=SPEC)
    assert [e.name for e in only.environments] == ["dev"]


def test_exit_codes(minimal: Path) -> None:
    spec = minimal / SPEC
    spec.write_text(spec.read_text().replace("port: 80", "port: 8080"))
    run = meshctl("diff", cwd=minimal)
    assert run.code == 0
    assert "~ changed" in run.stdout
    assert meshctl("diff", "--exit-code", cwd=minimal).code == 1
    assert meshctl("diff", "--exit-code", "--format", "json", cwd=minimal).code == 1
    missing = meshctl("diff", "-o", "nowhere", cwd=minimal)
    assert missing.code == 2
    assert missing.stderr.startswith("meshctl: nowhere: no such directory")
    unknown = meshctl("diff", "-e", "prdo", cwd=minimal)
    assert unknown.code == 2
    assert "unknown environment 'prdo'" in unknown.stderr
    both = meshctl("diff", "--base", "HEAD", "-o", "rendered", cwd=minimal)
    assert both.code == 2
    assert meshctl("diff", "--format", "yaml", cwd=minimal).code == 2
    assert meshctl("diff", "nope.yaml", cwd=minimal).code == 2
    spec.write_text(spec.read_text().replace("port: 8080", "port: 70000"))
    invalid = meshctl("diff", cwd=minimal)
    assert invalid.code == 1
    assert invalid.stderr == meshctl("validate", cwd=minimal).stdout
    assert "spec.services[0].port: 70000 is greater than the maximum of 65535" in invalid.stderr
    assert "Traceback" not in invalid.stderr


# --------------------------------------------------------------------------
# --base: a real Git repository.

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=meshctl tests", "-c", "user.email=tests@example.org", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull},
    )
    return result.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A Git repository holding the minimal spec (in a sub-folder) and a project profile."""
    root = tmp_path / "repo"
    project = root / "platform"
    (project / "profiles").mkdir(parents=True)
    spec = MINIMAL.read_text().replace("profile: dev", "profile: small")
    (project / SPEC).write_text(spec)
    (project / "profiles/small.yaml").write_text(
        "name: small\ndescription: dev, one gateway\nextends: dev\n"
        "settings:\n  gateway:\n    replicas: 1\n"
    )
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "spec")
    return project


@needs_git
def test_base_compares_with_the_spec_at_a_revision(repo: Path) -> None:
    report = diff.diff_revision(repo / SPEC, "HEAD", display_name=SPEC)
    assert not report.differences
    assert report.against.commit == git(repo, "rev-parse", "HEAD").strip()
    assert report.against.path == f"platform/{SPEC}"
    spec = repo / SPEC
    spec.write_text(spec.read_text().replace("port: 80", "port: 8080"))
    before = snapshot(repo.parent)
    report = diff.diff_revision(repo / SPEC, "HEAD", display_name=SPEC)
    assert report.differences
    run = meshctl("diff", "--base", "HEAD", "--exit-code", cwd=repo)
    assert run.code == 1, run.stderr
    assert "against HEAD:platform/platform.yaml" in run.stdout
    body = json.loads(meshctl("diff", "--base", "HEAD", "--format", "json", cwd=repo).stdout)
    assert body["against"]["type"] == "git"
    assert body["differences"] is True
    assert snapshot(repo.parent) == before  # nothing written, .git included
    git(repo, "commit", "-q", "-am", "port 8080")
    assert meshctl("diff", "--base", "HEAD", "--exit-code", cwd=repo).code == 0
    assert meshctl("diff", "--base", "HEAD~1", "--exit-code", cwd=repo).code == 1


@needs_git
def test_base_reads_the_project_profiles_at_the_revision(repo: Path) -> None:
    profile = repo / "profiles/small.yaml"
    profile.write_text(profile.read_text().replace("replicas: 1", "replicas: 3"))
    report = diff.diff_revision(repo / SPEC, "HEAD", display_name=SPEC)
    fields = [f for c in report.changes() for f in c.fields]
    assert diff.FieldChange("replicaCount", 1, 3) in fields


@needs_git
def test_base_errors_are_usage_errors(repo: Path, tmp_path: Path) -> None:
    unknown = meshctl("diff", "--base", "no-such-ref", cwd=repo)
    assert (unknown.code, unknown.stderr) == (
        2,
        "meshctl: --base: unknown Git revision 'no-such-ref'\n",
    )
    assert meshctl("diff", "--base", "--exit-code", cwd=repo).code == 2
    (repo / "other.yaml").write_text(MINIMAL.read_text())
    absent = meshctl("diff", "other.yaml", "--base", "HEAD", cwd=repo)
    assert absent.code == 2
    assert "platform/other.yaml is not in the repository at HEAD" in absent.stderr
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(MINIMAL, outside / SPEC)
    run = meshctl(
        "diff", "--base", "HEAD", cwd=outside, env={"GIT_CEILING_DIRECTORIES": str(tmp_path)}
    )
    assert run.code == 2
    assert "is not in a Git repository" in run.stderr
    assert "Traceback" not in run.stderr


@needs_git
def test_base_spec_invalid_at_the_revision_is_reported_there(repo: Path) -> None:
    spec = repo / SPEC
    good = spec.read_text()
    spec.write_text(good.replace("port: 80", "port: 70000"))
    git(repo, "commit", "-q", "-am", "broken")
    spec.write_text(good)
    run = meshctl("diff", "--base", "HEAD", cwd=repo)
    assert run.code == 1
    assert run.stderr.startswith("HEAD:platform/platform.yaml:")


def test_usage_errors_in_process(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such directory"):
        diff.DirectoryTree(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a directory"):
        diff.DirectoryTree(tmp_path / "file")


def test_a_terminal_gets_the_rich_table(
    minimal: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a terminal (and without NO_COLOR) the summary is a rich table in colour."""
    from meshctl import cli

    spec = minimal / SPEC
    spec.write_text(spec.read_text().replace("port: 80", "port: 8080"))
    monkeypatch.chdir(minimal)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("COLUMNS", "160")
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    monkeypatch.setenv("FORCE_COLOR", "1")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["diff", "--exit-code"])
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "\x1b[" in out
    assert "┏━" in out
    assert "environment" in out
    assert "~ changed" in out
