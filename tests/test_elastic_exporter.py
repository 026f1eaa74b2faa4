"""The Elasticsearch exporter and its PodMonitor, from the rendered example.

Asserted where a mistake would hurt on a cluster: the pod reads exactly the
Secret keys the ExternalSecrets make (a wrong key is a pod stuck in
CreateContainerConfigError), talks to the URL and CA the Elasticsearch
component hands out, is selected by its PodMonitor on a port it declares and
admitted by Calico's Elasticsearch policy, runs locked down, carries no
credential, and is not there without Elasticsearch. Its health alerts are
run through promtool: silent while healthy and before their `for`, firing
after it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from meshctl.build import elastic, elastic_exporter, monitoring, telemetry
from meshctl.build.context import BuildContext

import harness
from conftest import Rendered

ENVIRONMENTS = ("dev", "staging", "prod")

# The flags of elasticsearch_exporter v1.9.0 (main.go, kingpin and the
# exporter-toolkit's web flags) that meshctl may pass: a flag the binary does
# not know stops it at start.
KNOWN_FLAGS = {
    "--es.uri",
    "--es.ca",
    "--es.all",
    "--es.timeout",
    "--es.indices",
    "--es.clusterinfo.interval",
    "--web.listen-address",
    "--web.telemetry-path",
}


def _objects(tree: Path, env: str) -> list[dict[str, Any]]:
    return harness.kustomize_build(tree / "overlays" / env)


def _context(rendered: Rendered, env: str) -> BuildContext:
    platform = rendered.result.platform
    return BuildContext(platform, platform.environments[env])


def _deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return harness.one(objects, "Deployment", elastic_exporter.NAME)


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def _flags(container: dict[str, Any]) -> dict[str, str | None]:
    flags: dict[str, str | None] = {}
    for arg in container["args"]:
        name, sep, value = arg.partition("=")
        flags[name] = value if sep else None
    return flags


def _secret_keys(objects: list[dict[str, Any]], namespace: str, name: str) -> set[str]:
    """The keys of the Secret an ExternalSecret makes: its template's keys when it
    has one (only those end up in the Secret), else the fetched secretKeys."""
    (external,) = [
        o
        for o in objects
        if o["kind"] == "ExternalSecret"
        and o["metadata"]["namespace"] == namespace
        and o["spec"]["target"].get("name", o["metadata"]["name"]) == name
    ]
    template = external["spec"]["target"].get("template", {}).get("data")
    if template:
        return set(template)
    return {d["secretKey"] for d in external["spec"]["data"]}


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)", duration)
    assert match, duration
    return int(match[1]) * {"ms": 0.001, "s": 1, "m": 60}[match[2]]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_one_locked_down_pod_in_the_observability_namespace(
    example_tree: Rendered, env: str
) -> None:
    ctx = _context(example_tree, env)
    deployment = _deployment(_objects(example_tree.tree, env))
    assert deployment["metadata"]["namespace"] == ctx.settings.observability.namespace
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    pod = spec["template"]
    labels = pod["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    # The labels Calico's Elasticsearch policy admits.
    assert telemetry.ELASTICSEARCH_EXPORTER_PODS.items() <= labels.items()
    pod_spec = pod["spec"]
    assert pod_spec["automountServiceAccountToken"] is False
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert pod_spec["securityContext"]["runAsUser"] > 0
    assert pod_spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = _container(deployment)
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"]["requests"].keys() == {"cpu", "memory"}
    assert "memory" in container["resources"]["limits"]
    (port,) = container["ports"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": port["name"]}


def test_image_is_pinned(example_tree: Rendered) -> None:
    deployment = _deployment(_objects(example_tree.tree, "prod"))
    repository, _, tag = _container(deployment)["image"].rpartition(":")
    assert repository == "quay.io/prometheuscommunity/elasticsearch-exporter"
    assert re.fullmatch(r"v\d+\.\d+\.\d+", tag), tag
    assert deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"] == tag


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_flags_point_at_the_cluster_and_its_ca(example_tree: Rendered, env: str) -> None:
    objects = _objects(example_tree.tree, env)
    deployment = _deployment(objects)
    namespace = deployment["metadata"]["namespace"]
    container = _container(deployment)
    flags = _flags(container)
    assert set(flags) <= KNOWN_FLAGS, set(flags) - KNOWN_FLAGS
    # The same URL the Elasticsearch component puts in the exporter's Secret.
    (credentials,) = [
        o
        for o in objects
        if o["kind"] == "ExternalSecret"
        and o["metadata"]["name"] == "elasticsearch-exporter-elasticsearch"
    ]
    assert credentials["metadata"]["namespace"] == namespace
    assert flags["--es.uri"] == credentials["spec"]["target"]["template"]["data"]["url"]
    assert flags["--es.uri"] == elastic.url(_context(example_tree, env))
    # The CA file is the mounted key of the CA copy.
    (mount,) = container["volumeMounts"]
    assert mount["readOnly"] is True
    (volume,) = [
        v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]
    ]
    (item,) = volume["secret"]["items"]
    assert flags["--es.ca"] == f"{mount['mountPath']}/{item['path']}"
    assert item["key"] in _secret_keys(objects, namespace, volume["secret"]["secretName"])
    # Every node, not only the one the Service picked; no per-index series.
    assert "--es.all" in flags
    assert "--es.indices" not in flags
    (port,) = container["ports"]
    assert flags["--web.listen-address"] == f":{port['containerPort']}"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_credentials_come_from_keys_the_external_secrets_make(
    example_tree: Rendered, env: str
) -> None:
    objects = _objects(example_tree.tree, env)
    deployment = _deployment(objects)
    namespace = deployment["metadata"]["namespace"]
    env_vars = {e["name"]: e for e in _container(deployment)["env"]}
    assert set(env_vars) == {"ES_USERNAME", "ES_PASSWORD"}
    for variable in env_vars.values():
        # By reference only, never a value.
        assert variable.keys() == {"name", "valueFrom"}
        ref = variable["valueFrom"]["secretKeyRef"]
        assert ref["key"] in _secret_keys(objects, namespace, ref["name"]), ref
    assert env_vars["ES_USERNAME"]["valueFrom"]["secretKeyRef"]["key"] == "username"
    assert env_vars["ES_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "password"


def test_no_credential_in_the_rendered_exporter(example_tree: Rendered) -> None:
    objects = _objects(example_tree.tree, "prod")
    container = _container(_deployment(objects))
    text = " ".join(container["args"])
    # No user:password@ in the URL, no credential flag (--es.apiKey and the like).
    assert "@" not in text
    assert not re.search(r"password|apikey|api-key|token", text, re.IGNORECASE)
    # meshctl never writes the exporter's Secrets itself: External Secrets does.
    assert not [
        o
        for o in objects
        if o["kind"] == "Secret" and o["metadata"]["name"].startswith(elastic_exporter.NAME)
    ]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_pod_monitor_scrapes_the_exporter(example_tree: Rendered, env: str) -> None:
    objects = _objects(example_tree.tree, env)
    deployment = _deployment(objects)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    monitor = harness.one(objects, "PodMonitor", elastic_exporter.NAME)
    spec = monitor["spec"]
    assert spec["namespaceSelector"]["matchNames"] == [deployment["metadata"]["namespace"]]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    assert "matchExpressions" not in spec["selector"]
    (endpoint,) = spec["podMetricsEndpoints"]
    (port,) = _container(deployment)["ports"]
    assert endpoint["port"] == port["name"]
    assert endpoint.get("path", "/metrics") == "/metrics"
    # The exporter gives up on Elasticsearch before Prometheus gives up on it.
    timeout = _flags(_container(deployment))["--es.timeout"]
    assert timeout is not None
    assert _seconds(timeout) < _seconds(endpoint["scrapeTimeout"])
    assert _seconds(endpoint["scrapeTimeout"]) <= _seconds(endpoint["interval"])


def test_calico_admits_the_exporter_pods(example_tree: Rendered) -> None:
    objects = _objects(example_tree.tree, "prod")
    deployment = _deployment(objects)
    namespace = deployment["metadata"]["namespace"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    policy = [
        o
        for o in objects
        if o["kind"] == "NetworkPolicy"
        and o["apiVersion"].startswith("crd.projectcalico.org/")
        and o["metadata"]["name"] == "elasticsearch"
    ]
    (rules,) = [p["spec"]["ingress"] for p in policy]

    def admits(rule: dict[str, Any]) -> bool:
        source = rule.get("source", {})
        if rule["action"] != "Allow" or elastic.HTTP_PORT not in rule["destination"]["ports"]:
            return False
        if source.get("namespaceSelector") != f"projectcalico.org/name == '{namespace}'":
            return False
        # Calico selector: (a == 'x' && b == 'y') || (...): any branch whose
        # every term the pod's labels satisfy.
        for branch in source.get("selector", "").split("||"):
            terms = re.findall(r"([\w./-]+) == '([^']*)'", branch)
            if terms and all(pod_labels.get(k) == v for k, v in terms):
                return True
        return False

    assert any(admits(rule) for rule in rules)


def _without(ctx: BuildContext, **enabled: bool) -> BuildContext:
    settings = ctx.settings
    if "observability" in enabled:
        observability = settings.observability.model_copy(
            update={"enabled": enabled["observability"]}
        )
        settings = settings.model_copy(update={"observability": observability})
    if "elasticsearch" in enabled:
        es = settings.data.elasticsearch.model_copy(update={"enabled": enabled["elasticsearch"]})
        settings = settings.model_copy(
            update={"data": settings.data.model_copy(update={"elasticsearch": es})}
        )
    return BuildContext(ctx.platform, msgspec.structs.replace(ctx.plan, settings=settings))


@pytest.mark.parametrize(
    "switches", [{"observability": False}, {"elasticsearch": False}], ids=["no-metrics", "no-es"]
)
def test_nothing_without_observability_and_elasticsearch(
    example_tree: Rendered, switches: dict[str, bool]
) -> None:
    ctx = _context(example_tree, "prod")
    assert elastic_exporter.build(ctx).manifests
    off = _without(ctx, **switches)
    assert elastic_exporter.build(off).manifests == []
    assert elastic_exporter.monitors(off) == []
    if not switches.get("observability", True):
        return
    # Observability on, Elasticsearch off: the stack's other monitors stay.
    names = {m["name"] for m in monitoring.monitors(off)}
    assert elastic_exporter.NAME not in names and "istiod" in names


def test_every_rendered_spec_has_the_exporter_exactly_with_elasticsearch(
    rendered_trees: dict[str, Rendered],
) -> None:
    for rendered in rendered_trees.values():
        for env in rendered.result.environments:
            settings = _context(rendered, env).settings
            wanted = settings.observability.enabled and settings.data.elasticsearch.enabled
            found = [
                o
                for o in _objects(rendered.tree, env)
                if o["kind"] in ("Deployment", "PodMonitor")
                and o["metadata"]["name"] == elastic_exporter.NAME
            ]
            assert len(found) == (2 if wanted else 0), (rendered.name, env)


# -- health alerts, proven with promtool ----------------------------------------------

JOB = f"monitoring/{elastic_exporter.NAME}"
# The labels Prometheus gives the exporter's samples, and the exporter's own.
TARGET = {"job": JOB, "namespace": "monitoring", "pod": "exporter-0", "instance": "10.0.0.9:9114"}
CLUSTER = {**TARGET, "cluster": "elasticsearch"}
NODE = {**CLUSTER, "name": "elasticsearch-es-default-0", "host": "10.0.1.4"}
DISK = {**NODE, "mount": "/usr/share/elasticsearch/data (/dev/nvme1n1)", "path": "/data"}
HEAP = {**NODE, "area": "heap"}
HEALTH = "elasticsearch_cluster_health_status"
NODES = "elasticsearch_cluster_health_number_of_nodes"
AVAILABLE = "elasticsearch_filesystem_data_available_bytes"
HEAP_USED = "elasticsearch_jvm_memory_used_bytes"

Series = dict[tuple[str, str], tuple[dict[str, str], float]]  # (metric, key) -> labels, value
Alert = tuple[str, str, dict[str, str]]  # name, severity, the sample's labels


def _healthy(nodes: int) -> Series:
    """What the exporter reports for a sound cluster of `nodes` nodes."""
    series: Series = {
        ("up", ""): (TARGET, 1),
        (NODES, ""): (CLUSTER, nodes),
        ("elasticsearch_filesystem_data_size_bytes", ""): (DISK, 100e9),
        (AVAILABLE, ""): (DISK, 60e9),
        ("elasticsearch_jvm_memory_max_bytes", ""): (HEAP, 4e9),
        (HEAP_USED, ""): (HEAP, 2e9),
    }
    series.update(_status("green"))
    return series


def _status(color: str) -> Series:
    return {
        (HEALTH, c): ({**CLUSTER, "color": c}, float(c == color))
        for c in ("green", "yellow", "red")
    }


def _input(series: Series, minutes: int = 60) -> list[dict[str, str]]:
    return [
        {
            "series": metric
            + "{"
            + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            + "}",
            "values": f"{value}x{minutes}",
        }
        for (metric, _), (labels, value) in sorted(series.items())
    ]


def _health_cases(nodes: int) -> list[tuple[str, Series, int, list[Alert]]]:
    """(case, input, minute of evaluation, the alerts firing then)."""
    healthy = _healthy(nodes)
    no_health = {k: v for k, v in healthy.items() if k[0] != HEALTH}
    cases: list[tuple[str, Series, int, list[Alert]]] = [
        ("healthy", healthy, 59, []),
        # The exporter answers, Elasticsearch does not: after 5 minutes, not before.
        ("unreachable-4m", no_health, 4, []),
        ("unreachable", no_health, 6, [("ElasticsearchDown", "page", TARGET)]),
        # No live target: scraped and failing, or gone altogether.
        ("exporter-failing-9m", {("up", ""): (TARGET, 0)}, 9, []),
        (
            "exporter-failing",
            {("up", ""): (TARGET, 0)},
            11,
            [("ElasticsearchExporterDown", "ticket", {})],
        ),
        ("exporter-gone", {}, 11, [("ElasticsearchExporterDown", "ticket", {})]),
        ("red-4m", {**healthy, **_status("red")}, 4, []),
        (
            "red",
            {**healthy, **_status("red")},
            6,
            [("ElasticsearchClusterRed", "page", {**CLUSTER, "color": "red"})],
        ),
        # 20 % free: nothing. 12 %: the ticket, after 15 minutes. 8 %: the
        # page after 5 minutes, then the ticket too (Alertmanager's inhibition
        # keeps it quiet while the page fires).
        ("disk-20", {**healthy, (AVAILABLE, ""): (DISK, 20e9)}, 59, []),
        ("disk-12-14m", {**healthy, (AVAILABLE, ""): (DISK, 12e9)}, 14, []),
        (
            "disk-12",
            {**healthy, (AVAILABLE, ""): (DISK, 12e9)},
            16,
            [("ElasticsearchDiskSpaceLow", "ticket", DISK)],
        ),
        (
            "disk-8",
            {**healthy, (AVAILABLE, ""): (DISK, 8e9)},
            6,
            [("ElasticsearchDiskSpaceLow", "page", DISK)],
        ),
        (
            "disk-8-16m",
            {**healthy, (AVAILABLE, ""): (DISK, 8e9)},
            16,
            [
                ("ElasticsearchDiskSpaceLow", "page", DISK),
                ("ElasticsearchDiskSpaceLow", "ticket", DISK),
            ],
        ),
        ("heap-85", {**healthy, (HEAP_USED, ""): (HEAP, 3.4e9)}, 59, []),
        ("heap-95-14m", {**healthy, (HEAP_USED, ""): (HEAP, 3.8e9)}, 14, []),
        (
            "heap-95",
            {**healthy, (HEAP_USED, ""): (HEAP, 3.8e9)},
            16,
            [("ElasticsearchHeapHigh", "ticket", HEAP)],
        ),
    ]
    yellow = {**healthy, **_status("yellow")}
    if nodes > 1:
        missing = {**healthy, (NODES, ""): (CLUSTER, nodes - 1)}
        cases += [
            ("node-missing-14m", missing, 14, []),
            ("node-missing", missing, 16, [("ElasticsearchNodesMissing", "ticket", CLUSTER)]),
            ("yellow-29m", yellow, 29, []),
            (
                "yellow",
                yellow,
                31,
                [("ElasticsearchClusterYellow", "ticket", {**CLUSTER, "color": "yellow"})],
            ),
        ]
    else:
        # A single node can never place a replica: yellow is its normal state.
        cases.append(("yellow-one-node", yellow, 59, []))
    return cases


def test_replica_and_node_count_alerts_only_with_several_nodes(example_tree: Rendered) -> None:
    several = {"ElasticsearchClusterYellow", "ElasticsearchNodesMissing"}
    counts = set()
    for env in ENVIRONMENTS:
        ctx = _context(example_tree, env)
        names = {r["alert"] for r in elastic_exporter.health_rules(ctx)}
        nodes = ctx.settings.data.elasticsearch.nodes
        counts.add(nodes > 1)
        assert several & names == (several if nodes > 1 else set()), env
        assert {
            "ElasticsearchDown",
            "ElasticsearchClusterRed",
            "ElasticsearchDiskSpaceLow",
        } <= names
    assert counts == {True, False}  # the example has both kinds of environment
    assert elastic_exporter.health_rules(_without(ctx, elasticsearch=False)) == []


@pytest.mark.parametrize("env", ["dev", "prod"])  # one node, three nodes
def test_health_alerts_fire_when_they_should_and_only_then(
    example_tree: Rendered, tmp_path: Path, env: str
) -> None:
    ctx = _context(example_tree, env)
    rules = elastic_exporter.health_rules(ctx)
    assert elastic_exporter.job(ctx) == JOB
    groups = [{"name": "data-health", "rules": rules}]
    harness.promtool_check(groups, tmp_path)
    names = sorted({r["alert"] for r in rules})
    cases = _health_cases(ctx.settings.data.elasticsearch.nodes)
    # Every alert is seen firing by some case.
    assert {name for *_, alerts in cases for name, _, _ in alerts} == set(names)
    tests = []
    for case, series, minute, alerts in cases:
        checks = []
        for name in names:
            expected = [
                {
                    "exp_labels": {
                        **labels,
                        "severity": severity,
                        "environment": env,
                        "slo": "health",
                    }
                }
                for alert, severity, labels in alerts
                if alert == name
            ]
            checks.append({"eval_time": f"{minute}m", "alertname": name, "exp_alerts": expected})
        tests.append(
            {
                "name": case,
                "interval": "1m",
                "input_series": _input(series),
                "alert_rule_test": checks,
            }
        )
    harness.promtool_test(groups, tests, tmp_path)
