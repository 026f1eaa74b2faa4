"""The metrics stack (kube-prometheus-stack) and the monitors, from the rendered example.

Asserted where a mistake would hurt on a cluster: sizes and retention per
profile, monitors and rules picked up from every namespace, alerts routed by
severity to the receivers that take it, no secret in the Alertmanager
configuration (and the configuration accepted by Alertmanager's own checker),
and a monitor for every component with metrics whose selector matches the
pods' real labels and port.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from meshctl import models
from meshctl.build import calico, elastic, monitoring, postgres, redis, telemetry
from meshctl.build.context import BuildContext
from meshctl.resources import example_spec

import harness
from conftest import Rendered, meshctl

ENVIRONMENTS = ("dev", "staging", "prod")
NAMESPACE = "monitoring"


def _values(tree: Path, env: str) -> dict[str, Any]:
    text = (tree / f"overlays/{env}/values/kube-prometheus-stack.yaml").read_text()
    return yaml.safe_load(text)  # type: ignore[no-any-return]


def _objects(tree: Path, env: str) -> list[dict[str, Any]]:
    return harness.kustomize_build(tree / "overlays" / env)


def _context(rendered: Rendered, env: str) -> BuildContext:
    platform = rendered.result.platform
    return BuildContext(platform, platform.environments[env])


def _amtool() -> str:
    return harness.tool(
        "amtool",
        "the Alertmanager configuration cannot be checked (Debian: prometheus-alertmanager)",
    )


def _amtool_version(amtool: str) -> tuple[int, ...]:
    out = subprocess.run([amtool, "--version"], capture_output=True, text=True, check=True)
    words = (out.stdout + out.stderr).split()
    version = words[words.index("version") + 1].rstrip(",")
    return tuple(int(part) for part in version.split(".")[:2])


def _check_config(config: dict[str, Any], tmp_path: Path) -> None:
    amtool = _amtool()
    path = tmp_path / "alertmanager.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [amtool, "check-config", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- the release -------------------------------------------------------------------


# env: (retention, Prometheus replicas, Alertmanager replicas, volume size)
SIZES = {
    "dev": ("2d", 1, 1, "20Gi"),
    "staging": ("30d", 2, 2, "100Gi"),
    "prod": ("30d", 2, 3, "200Gi"),
}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_sizes_and_retention_per_profile(example_tree: Rendered, env: str) -> None:
    retention, replicas, alertmanagers, size = SIZES[env]
    values = _values(example_tree.tree, env)
    spec = values["prometheus"]["prometheusSpec"]
    assert spec["retention"] == retention
    assert spec["replicas"] == replicas
    claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["resources"]["requests"]["storage"] == size
    assert claim["accessModes"] == ["ReadWriteOnce"]
    assert spec["resources"]["requests"]["memory"] == spec["resources"]["limits"]["memory"]
    assert values["alertmanager"]["alertmanagerSpec"]["replicas"] == alertmanagers
    # Budgets and spreading where the profile asks (and more than one pod).
    resilient = env != "dev"
    assert values["prometheus"]["podDisruptionBudget"]["enabled"] is resilient
    assert values["alertmanager"]["podDisruptionBudget"]["enabled"] is resilient
    assert spec["podAntiAffinity"] == ("soft" if resilient else "")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_monitors_and_rules_from_every_namespace(example_tree: Rendered, env: str) -> None:
    spec = _values(example_tree.tree, env)["prometheus"]["prometheusSpec"]
    for kind in ("rule", "serviceMonitor", "podMonitor", "probe", "scrapeConfig"):
        assert spec[f"{kind}SelectorNilUsesHelmValues"] is False, kind


def test_release_is_pinned_and_ordered(example_tree: Rendered) -> None:
    ctx = _context(example_tree, "prod")
    output = monitoring.build(ctx)
    (release,) = output.releases
    assert (release.chart.chart, release.chart.version) == ("kube-prometheus-stack", "88.5.3")
    assert release.chart.installs_crds and release.chart.server_side_apply
    assert release.namespace == NAMESPACE
    # After the foundation stage, which makes the Secrets Grafana and
    # Alertmanager mount; long before the resources stage's monitors.
    assert release.wave == 2


def test_managed_cluster_targets_are_off(example_tree: Rendered) -> None:
    values = _values(example_tree.tree, "prod")
    for component in ("kubeEtcd", "kubeScheduler", "kubeControllerManager", "kubeProxy"):
        assert values[component]["enabled"] is False
    rules = values["defaultRules"]["rules"]
    for group in ("etcd", "kubeControllerManager", "kubeProxy", "kubeSchedulerAlerting"):
        assert rules[group] is False


def test_grafana_admin_from_the_store(example_tree: Rendered) -> None:
    values = _values(example_tree.tree, "prod")
    grafana = values["grafana"]
    assert grafana["admin"] == {
        "existingSecret": "grafana-admin",
        "userKey": "admin-user",
        "passwordKey": "admin-password",
    }
    assert "adminPassword" not in grafana
    assert grafana["sidecar"]["datasources"]["isDefaultDatasource"] is True
    es = harness.one(_objects(example_tree.tree, "prod"), "ExternalSecret", "grafana-admin")
    assert es["metadata"]["namespace"] == NAMESPACE
    assert {d["remoteRef"]["key"] for d in es["spec"]["data"]} == {"parallel-ai/prod/grafana-admin"}
    assert {d["remoteRef"]["property"] for d in es["spec"]["data"]} == {
        "admin-user",
        "admin-password",
    }


# -- Alertmanager ------------------------------------------------------------------


def _receivers() -> list[models.Receiver]:
    return [
        models.Receiver(
            name="oncall", type="pagerduty", key="acme/prod/pagerduty", severities=["page"]
        ),
        models.Receiver(
            name="team",
            type="slack",
            key="acme/prod/slack",
            channel="platform",
            severities=["page", "ticket"],
        ),
        models.Receiver(
            name="tickets", type="webhook", key="acme/prod/jira", severities=["ticket"]
        ),
    ]


def test_receivers_routed_by_severity() -> None:
    config = monitoring.alertmanager_config(_receivers())
    route = config["route"]
    assert route["receiver"] == "null"
    routes = {r["receiver"]: r for r in route["routes"] if r["receiver"] != "null"}
    assert routes["oncall"]["matchers"] == ['severity =~ "critical|page"']
    assert routes["team"]["matchers"] == ['severity =~ "critical|page|ticket|warning"']
    assert routes["tickets"]["matchers"] == ['severity =~ "ticket|warning"']
    # Every receiver that takes a severity gets it.
    assert all(r["continue"] is True for r in routes.values())
    names = [r["name"] for r in config["receivers"]]
    assert names == ["null", "oncall", "team", "tickets"]


def test_no_secret_in_the_alertmanager_config(example_tree: Rendered) -> None:
    config = monitoring.alertmanager_config(_receivers())
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers["oncall"]["pagerduty_configs"] == [
        {
            "routing_key_file": "/etc/alertmanager/secrets/alertmanager-oncall/routing-key",
            "send_resolved": True,
        }
    ]
    assert receivers["team"]["slack_configs"][0]["api_url_file"] == (
        "/etc/alertmanager/secrets/alertmanager-team/url"
    )
    assert receivers["team"]["slack_configs"][0]["channel"] == "#platform"
    assert receivers["tickets"]["webhook_configs"][0]["url_file"] == (
        "/etc/alertmanager/secrets/alertmanager-tickets/url"
    )
    text = yaml.safe_dump(config)
    for inline in ("api_url:", "routing_key:", "service_key:", " url:", "https://"):
        assert inline not in text

    # In the example: the Secret is mounted, and made from the receiver's store key.
    values = _values(example_tree.tree, "prod")
    assert values["alertmanager"]["alertmanagerSpec"]["secrets"] == ["alertmanager-slack-oncall"]
    assert "https://" not in yaml.safe_dump(values["alertmanager"]["config"])
    es = harness.one(
        _objects(example_tree.tree, "prod"), "ExternalSecret", "alertmanager-slack-oncall"
    )
    assert es["metadata"]["namespace"] == NAMESPACE
    assert es["spec"]["data"] == [
        {
            "secretKey": "url",
            "remoteRef": {"key": "parallel-ai/prod/slack-webhook", "property": "value"},
        }
    ]
    # Environments without receivers drop everything (no Secret to mount).
    dev = _values(example_tree.tree, "dev")["alertmanager"]
    assert dev["alertmanagerSpec"]["secrets"] == []
    assert [r["name"] for r in dev["config"]["receivers"]] == ["null"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_amtool_accepts_the_rendered_config(
    example_tree: Rendered, env: str, tmp_path: Path
) -> None:
    _check_config(_values(example_tree.tree, env)["alertmanager"]["config"], tmp_path)


def test_amtool_accepts_every_receiver_type(tmp_path: Path) -> None:
    receivers = _receivers()
    amtool = _amtool()
    if _amtool_version(amtool) < (0, 26):
        # webhook_configs.url_file arrived in Alertmanager 0.26 (the chart runs
        # 0.34); Debian's older amtool cannot parse it, so check the others.
        receivers = [r for r in receivers if r.type != "webhook"]
    _check_config(monitoring.alertmanager_config(receivers), tmp_path)


# -- monitors ----------------------------------------------------------------------

KONG_LABELS = {
    "app.kubernetes.io/name": "kong",
    "app.kubernetes.io/instance": "kong",
    "security.istio.io/tlsMode": "istio",
}
# What each component's chart or operator really runs, in the example's prod
# environment: (monitor, kind, namespace, the pod's or Service's labels, its
# metrics port as (name, number)).
TARGETS: list[tuple[str, str, str, dict[str, str], tuple[str | None, int]]] = [
    ("kong", "PodMonitor", "kong", KONG_LABELS, ("status", 8100)),
    ("envoy-stats", "PodMonitor", "kong", KONG_LABELS, ("http-envoy-prom", 15090)),
    (
        "envoy-stats",
        "PodMonitor",
        "ai-api",
        {"app": "api", "security.istio.io/tlsMode": "istio"},
        ("http-envoy-prom", 15090),
    ),
    (
        "istiod",
        "ServiceMonitor",
        "istio-system",
        {"app": "istiod", "istio": "pilot"},
        ("http-monitoring", 15014),
    ),
    (
        "postgres",
        "PodMonitor",
        "data",
        {
            "cnpg.io/cluster": postgres.CLUSTER,
            "cnpg.io/podRole": "instance",
            "cnpg.io/instanceRole": "primary",
        },
        ("metrics", 9187),
    ),
    (
        "postgres-poolers",
        "PodMonitor",
        "data",
        {"cnpg.io/poolerName": postgres.pooler_name("ro"), "cnpg.io/cluster": postgres.CLUSTER},
        ("metrics", 9127),
    ),
    (
        "cloudnative-pg",
        "PodMonitor",
        postgres.OPERATOR_NAMESPACE,
        {
            "app.kubernetes.io/name": "cloudnative-pg",
            "app.kubernetes.io/instance": "cloudnative-pg",
        },
        ("metrics", 8080),
    ),
    (
        # The eck-operator chart (3.5.0): selector labels from its nameOverride
        # (elastic-operator) and the release; the manager container's port
        # `metrics` is config.metrics.port (test_eck_operator_serves_metrics).
        "eck-operator",
        "PodMonitor",
        "elastic-system",
        {
            "app.kubernetes.io/name": "elastic-operator",
            "app.kubernetes.io/instance": "eck-operator",
        },
        ("metrics", 9090),
    ),
    (
        "redis",
        "PodMonitor",
        "data",
        {**redis.POD_LABELS, "app.kubernetes.io/component": "master"},
        ("http-metrics", 9121),
    ),
    (
        "cert-manager",
        "PodMonitor",
        "cert-manager",
        {
            "app.kubernetes.io/name": "cert-manager",
            "app.kubernetes.io/instance": "cert-manager",
            "app.kubernetes.io/component": "controller",
        },
        ("http-metrics", 9402),
    ),
    (
        "external-secrets",
        "PodMonitor",
        "external-secrets",
        {
            "app.kubernetes.io/name": "external-secrets",
            "app.kubernetes.io/instance": "external-secrets",
        },
        ("metrics", 8080),
    ),
    ("service-api", "PodMonitor", "ai-api", {"app": "api"}, ("http-metrics", 9090)),
    # The tigera-operator's: calico-node's pods (host network, Felix's port
    # not declared on the container, no Service in Calico Open Source), and
    # the Services it makes for Typha (with typhaMetricsPort) and kube-controllers.
    ("calico-node", "PodMonitor", "calico-system", {"k8s-app": "calico-node"}, (None, 9091)),
    (
        "calico-typha",
        "ServiceMonitor",
        "calico-system",
        {"k8s-app": "calico-typha-metrics"},
        ("calico-typha-metrics", 9093),
    ),
    (
        "calico-kube-controllers",
        "ServiceMonitor",
        "calico-system",
        {"k8s-app": "calico-kube-controllers"},
        ("metrics-port", 9094),
    ),
    (
        "fluent-bit",
        "PodMonitor",
        "monitoring",
        {"app.kubernetes.io/name": "fluent-bit", "app.kubernetes.io/instance": "fluent-bit"},
        ("http", 2020),
    ),
    (
        "elasticsearch-exporter",
        "PodMonitor",
        "monitoring",
        dict(telemetry.ELASTICSEARCH_EXPORTER_PODS),
        ("metrics", 9114),
    ),
    (
        "jaeger",
        "PodMonitor",
        "monitoring",
        {
            "app.kubernetes.io/name": "jaeger",
            "app.kubernetes.io/instance": "jaeger",
            "app.kubernetes.io/component": "all-in-one",
        },
        ("", 8888),  # the chart's container ports have no names: scraped by number
    ),
    *(
        (
            "thanos",
            "PodMonitor",
            "monitoring",
            # The Bitnami chart's labels; every component names its port http.
            {
                "app.kubernetes.io/name": "thanos",
                "app.kubernetes.io/instance": "thanos",
                "app.kubernetes.io/component": component,
            },
            ("http", 10902),
        )
        for component in ("query", "storegateway", "compactor")
    ),
]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        if operator == "Exists" and key not in labels:
            return False
        if operator == "In" and labels.get(key) not in expression["values"]:
            return False
        if operator not in ("Exists", "In"):
            raise AssertionError(f"untested operator {operator}")
    return True


def _scrapes(endpoint: dict[str, Any], port: tuple[str | None, int]) -> bool:
    if port[0] is None:
        # Not declared on the pod: `port` and `portNumber` match nothing, only
        # an address rewritten to that port reaches it.
        rules = endpoint.get("relabelings", [])
        rewrites = [r for r in rules if r.get("targetLabel") == "__address__"]
        return (
            not {"port", "portNumber"} & set(endpoint)
            and bool(rewrites)
            and all(r["replacement"].endswith(f":{port[1]}") for r in rewrites)
        )
    if "portNumber" in endpoint:
        return bool(endpoint["portNumber"] == port[1])
    return bool(endpoint.get("port") == port[0])


def _relabel(rules: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, str] | None:
    """Prometheus's keep and replace actions (regexes anchored, $1 groups)."""
    labels = dict(labels)
    for rule in rules:
        value = ";".join(labels.get(name, "") for name in rule["sourceLabels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if rule.get("action", "replace") == "keep":
            if match is None:
                return None
        elif match is not None:
            labels[rule["targetLabel"]] = match.expand(rule["replacement"].replace("$1", r"\1"))
    return labels


Target = tuple[str, str, str, dict[str, str], tuple[str | None, int]]


@pytest.mark.parametrize("target", TARGETS, ids=[f"{t[0]}-{t[2]}" for t in TARGETS])
def test_every_component_with_metrics_has_a_monitor(example_tree: Rendered, target: Target) -> None:
    monitor, kind, namespace, labels, port = target
    objects = _objects(example_tree.tree, "prod")
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == monitor]
    assert found["metadata"]["namespace"] == NAMESPACE
    spec = found["spec"]
    assert namespace in spec["namespaceSelector"]["matchNames"]
    assert _selects(spec["selector"], labels)
    endpoints = spec["podMetricsEndpoints" if kind == "PodMonitor" else "endpoints"]
    assert any(_scrapes(e, port) for e in endpoints), endpoints


def test_no_monitor_unaccounted_for(example_tree: Rendered) -> None:
    objects = _objects(example_tree.tree, "prod")
    monitors = {
        o["metadata"]["name"] for o in objects if o["kind"] in ("PodMonitor", "ServiceMonitor")
    }
    assert monitors == {t[0] for t in TARGETS}


def test_eck_operator_serves_metrics(example_tree: Rendered) -> None:
    """The chart's default (port 0) turns the operator's metrics off: the
    values open the port the monitor scrapes, as the chart's `int` of a string."""
    for env in ("dev", "staging", "prod"):
        values = yaml.safe_load(
            (example_tree.tree / f"overlays/{env}/values/eck-operator.yaml").read_text()
        )
        assert values["config"]["metrics"] == {"port": "9090"}
    ctx = _context(example_tree, "prod")
    off = ctx.settings.model_copy(
        update={"observability": ctx.settings.observability.model_copy(update={"enabled": False})}
    )
    plan = msgspec.structs.replace(ctx.plan, settings=off)
    (release,) = elastic.build(BuildContext(ctx.platform, plan)).releases
    assert "config" not in release.values
    assert elastic.monitors(BuildContext(ctx.platform, plan)) == []


def test_calico_serves_the_metrics_its_monitors_scrape(example_tree: Rendered) -> None:
    """Felix and Typha serve metrics only when the Installation sets their
    ports: the same ports the monitors scrape, and only with observability on."""
    ctx = _context(example_tree, "prod")
    by_name = {m.name: m for m in calico.monitors(ctx)}
    for env in ("dev", "staging", "prod"):
        values = yaml.safe_load(
            (example_tree.tree / f"overlays/{env}/values/tigera-operator.yaml").read_text()
        )
        installation = values["installation"]
        (felix,) = by_name["calico-node"].endpoints
        assert _scrapes(felix, (None, installation["nodeMetricsPort"]))
        assert installation["typhaMetricsPort"] == 9093
    off = ctx.settings.model_copy(
        update={"observability": ctx.settings.observability.model_copy(update={"enabled": False})}
    )
    plan = msgspec.structs.replace(ctx.plan, settings=off)
    (release,) = calico.build(BuildContext(ctx.platform, plan)).releases
    assert "nodeMetricsPort" not in release.values["installation"]
    assert "typhaMetricsPort" not in release.values["installation"]
    assert calico.monitors(BuildContext(ctx.platform, plan)) == []


@pytest.mark.parametrize(
    ("container", "pod_ip", "address"),
    [
        ("calico-node", "10.0.3.7", "10.0.3.7:9091"),
        ("calico-node", "fd00:10::7", "[fd00:10::7]:9091"),
        ("install-cni", "10.0.3.7", None),  # an init container: no target
        ("calico-node-x", "10.0.3.7", None),
    ],
)
def test_felix_is_scraped_once_per_node_on_its_port(
    example_tree: Rendered, container: str, pod_ip: str, address: str | None
) -> None:
    """What Prometheus makes of the calico-node PodMonitor's relabelings for a
    port-less target of each container (pod discovery's form for them)."""
    ctx = _context(example_tree, "prod")
    (monitor,) = [m for m in calico.monitors(ctx) if m.kind == "PodMonitor"]
    (endpoint,) = monitor.endpoints
    target = {
        "__address__": pod_ip,
        "__meta_kubernetes_pod_ip": pod_ip,
        "__meta_kubernetes_pod_container_name": container,
    }
    result = _relabel(endpoint["relabelings"], target)
    assert (result or {}).get("__address__") == address


def test_monitor_ports_agree_with_network_policy(example_tree: Rendered) -> None:
    """Each data component's metrics ports (which Calico opens to Prometheus)
    are scraped, and nothing else on those pods."""
    ctx = _context(example_tree, "prod")
    scraped = {
        e.get("portNumber")
        for m in monitoring.monitors(ctx)
        if m["namespaces"] == ["data"]
        for e in m["endpoints"]
    }
    endpoints = [postgres.endpoint(ctx), redis.endpoint(ctx)]
    wanted = {port for ep in endpoints if ep is not None for port in ep.metrics_ports}
    assert scraped == wanted


def test_sidecar_recipe(example_tree: Rendered) -> None:
    ctx = _context(example_tree, "prod")
    (envoy,) = [m for m in monitoring.monitors(ctx) if m["name"] == "envoy-stats"]
    assert envoy["endpoints"] == [{"port": "http-envoy-prom", "path": "/stats/prometheus"}]
    services = {s.namespace for s in ctx.spec.services}
    assert set(envoy["namespaces"]) == services | {ctx.settings.gateway.namespace}


def test_disabled_means_nothing(example_tree: Rendered) -> None:
    ctx = _context(example_tree, "dev")
    settings = ctx.settings.model_copy(
        update={"observability": ctx.settings.observability.model_copy(update={"enabled": False})}
    )
    plan = msgspec.structs.replace(ctx.plan, settings=settings)
    output = monitoring.build(BuildContext(ctx.platform, plan))
    assert output.releases == [] and output.manifests == []


@pytest.mark.parametrize("feature", ["tracing", "logs"])
def test_traces_and_logs_need_elasticsearch(tmp_path: Path, feature: str) -> None:
    text = example_spec().read_text()
    text = text.replace(
        "    elasticsearch:\n      enabled: true\n", "    elasticsearch:\n      enabled: false\n"
    ).replace("postgres, elasticsearch]", "postgres]")
    other = {"tracing": "logs", "logs": "tracing"}[feature]
    text = text.replace(f"    {other}:\n      enabled: true\n", "")
    (tmp_path / "platform.yaml").write_text(text)
    run = meshctl("validate", cwd=tmp_path)
    assert run.code == 1
    lines = run.stdout.splitlines()
    (problem,) = [line for line in lines if "data.elasticsearch.enabled" in line]
    assert f"observability.{feature}.enabled: " in problem
    assert f"turn observability.{feature} off" in problem
    assert "environments dev, staging, prod" in problem
