"""A service's own metrics (`services[].metrics`): its PodMonitor, and the one
exception to mTLS the scrape needs.

The example is rendered twice, with a pod selector of its own for `inference`:
with no service serving metrics, and with `api` serving them on 9090 and
`inference` on 9100 at a path of its own. Asserted where a mistake would hurt on a cluster:
Prometheus finds the pods and the port; plain text gets into that port alone,
for `GET <path>` alone (Istio) and from Prometheus' pods alone (Calico); and
nothing else in the output changes.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from ruamel.yaml import YAML

from meshctl import models, pipeline
from meshctl.build import istio, service_metrics
from meshctl.build.context import BuildContext
from meshctl.errors import RenderError
from meshctl.resources import example_spec

import harness

Identity = tuple[str, str, str, str]
CALICO = "crd.projectcalico.org/v1"
INFERENCE_PODS = {"app.kubernetes.io/name": "inference", "tier": "gpu"}
# service -> (metrics port, path)
SCRAPED = {"api": (9090, "/metrics"), "inference": (9100, "/stats/metrics")}


def _service(document: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in document["spec"]["services"] if s["name"] == name)


def _own_selector(document: dict[str, Any]) -> None:
    """The baseline: no service has metrics (whatever the bundled example says)."""
    for service in document["spec"]["services"]:
        service.pop("metrics", None)
    _service(document, "inference")["selector"] = dict(INFERENCE_PODS)


def _with_metrics(document: dict[str, Any]) -> None:
    _own_selector(document)
    _service(document, "api")["metrics"] = {"port": 9090}
    _service(document, "inference")["metrics"] = {"port": 9100, "path": "/stats/metrics"}


def _render(folder: Path, change: Callable[[dict[str, Any]], None]) -> pipeline.RenderResult:
    document = yaml.safe_load(example_spec().read_text())
    change(document)
    folder.mkdir(parents=True)
    spec = folder / "platform.yaml"
    spec.write_text(yaml.safe_dump(document, sort_keys=False))
    return pipeline.render(spec, folder / "rendered", display_name="platform.yaml")


@functools.cache
def _emitted(tree: Path, env: str) -> dict[Identity, dict[str, Any]]:
    # Read once per tree and environment; the tests only read the objects.
    return harness.emitted_documents(tree / "base", tree / "overlays" / env)


@dataclasses.dataclass(frozen=True)
class Pair:
    before: pipeline.RenderResult  # no service has metrics
    after: pipeline.RenderResult  # api and inference have
    root: Path

    @property
    def environments(self) -> list[str]:
        return self.after.environments

    def objects(self, which: str, env: str) -> dict[Identity, dict[str, Any]]:
        return _emitted(self.root / which / "rendered", env)

    def context(self, env: str) -> BuildContext:
        return BuildContext(self.after.platform, self.after.platform.environments[env])


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    root = tmp_path_factory.mktemp("service-metrics")
    return Pair(
        _render(root / "before", _own_selector), _render(root / "after", _with_metrics), root
    )


def _of_kind(objects: dict[Identity, dict[str, Any]], kind: str) -> dict[Identity, dict[str, Any]]:
    return {k: v for k, v in objects.items() if k[1] == kind}


def _services(pair: Pair) -> dict[str, models.Service]:
    return {s.name: s for s in pair.after.platform.spec.services}


# -- what changes, and what does not ---------------------------------------------------


def test_metrics_add_a_podmonitor_and_a_peer_authentication_and_change_nothing_else(
    pair: Pair,
) -> None:
    services = _services(pair)
    for env in pair.environments:
        before, after = pair.objects("before", env), pair.objects("after", env)
        namespace = pair.after.platform.environments[env].settings.observability.namespace
        added = set(after) - set(before)
        assert added == {
            ("monitoring.coreos.com/v1", "PodMonitor", namespace, "service-api"),
            ("monitoring.coreos.com/v1", "PodMonitor", namespace, "service-inference"),
            ("security.istio.io/v1", "PeerAuthentication", services["api"].namespace, "api"),
            (
                "security.istio.io/v1",
                "PeerAuthentication",
                services["inference"].namespace,
                "inference",
            ),
        }, env
        assert set(before) - set(after) == set(), env
        changed = {k for k in before if before[k] != after[k]}
        assert changed == {
            ("security.istio.io/v1", "AuthorizationPolicy", "ai-api", "api"),
            ("security.istio.io/v1", "AuthorizationPolicy", "ai-serving", "inference"),
            (CALICO, "NetworkPolicy", "ai-api", "api"),
            (CALICO, "NetworkPolicy", "ai-serving", "inference"),
        }, env


# -- Prometheus finds the pods ---------------------------------------------------------


def test_the_podmonitor_selects_the_services_pods_and_metrics_port(pair: Pair) -> None:
    services = _services(pair)
    for env in pair.environments:
        objects = pair.objects("after", env)
        monitors = {
            k[3]: v
            for k, v in _of_kind(objects, "PodMonitor").items()
            if k[3].startswith("service-")
        }
        assert set(monitors) == {"service-api", "service-inference"}
        for name, (port, path) in SCRAPED.items():
            spec = monitors[f"service-{name}"]["spec"]
            assert spec["namespaceSelector"] == {"matchNames": [services[name].namespace]}
            assert spec["podMetricsEndpoints"] == [{"portNumber": port, "path": path}]
            # The pods the mesh and the network let Prometheus into.
            authz = objects[
                ("security.istio.io/v1", "AuthorizationPolicy", services[name].namespace, name)
            ]
            assert spec["selector"] == authz["spec"]["selector"]
        assert monitors["service-inference"]["spec"]["selector"] == {"matchLabels": INFERENCE_PODS}
        assert monitors["service-api"]["spec"]["selector"] == {"matchLabels": {"app": "api"}}


def test_no_podmonitor_without_prometheus_but_the_port_stays_open(pair: Pair) -> None:
    """Calico admits a Prometheus in the observability namespace whether or not meshctl
    runs it; the mesh opens the port the same way."""
    ctx = pair.context("prod")
    assert len(service_metrics.monitors(ctx)) == 2
    settings = ctx.settings
    off = settings.model_copy(
        update={"observability": settings.observability.model_copy(update={"enabled": False})}
    )
    plan = msgspec.structs.replace(ctx.plan, settings=off)
    without = BuildContext(ctx.platform, plan)
    assert service_metrics.monitors(without) == []
    kinds = {(m.body["kind"], m.body["metadata"]["name"]) for m in istio.build(without).manifests}
    assert {("PeerAuthentication", "api"), ("PeerAuthentication", "inference")} <= kinds


# -- Istio: plain text on the metrics port, GET <path> only -------------------------------


def test_plain_text_is_accepted_on_the_metrics_port_alone(pair: Pair) -> None:
    services = _services(pair)
    for env in pair.environments:
        objects = pair.objects("after", env)
        peer = _of_kind(objects, "PeerAuthentication")
        mesh = peer[("security.istio.io/v1", "PeerAuthentication", "istio-system", "default")]
        mode = pair.after.platform.environments[env].settings.mesh.mtls.mode
        assert mesh["spec"] == {"mtls": {"mode": mode}}
        assert len(peer) == 1 + len(SCRAPED)
        for name, (port, _) in SCRAPED.items():
            service = services[name]
            spec = peer[("security.istio.io/v1", "PeerAuthentication", service.namespace, name)][
                "spec"
            ]
            # UNSET: the pods keep the mesh's mode on every other port.
            assert spec == {
                "selector": {"matchLabels": service.pod_selector},
                "mtls": {"mode": "UNSET"},
                "portLevelMtls": {str(port): {"mode": "PERMISSIVE"}},
            }
            # What the CRD's CEL rules ask and jsonschema does not check: a port
            # number as the key, and a selector (port-level settings need one).
            assert all(0 < int(key) <= 65535 for key in spec["portLevelMtls"])
            assert spec["selector"]["matchLabels"]
        assert mode == ("PERMISSIVE" if env == "dev" else "STRICT")


def test_the_scrape_rule_allows_get_on_the_metrics_path_and_port_only(pair: Pair) -> None:
    for env in pair.environments:
        before = _of_kind(pair.objects("before", env), "AuthorizationPolicy")
        after = _of_kind(pair.objects("after", env), "AuthorizationPolicy")
        assert set(before) == set(after)
        for key, policy in after.items():
            name = key[3]
            if name not in SCRAPED:
                assert policy == before[key], key
                continue
            port, path = SCRAPED[name]
            rules = policy["spec"]["rules"]
            # The callers' rule is untouched; the scrape's comes after it.
            assert rules[:-1] == before[key]["spec"]["rules"]
            assert rules[-1] == {
                "to": [{"operation": {"ports": [str(port)], "paths": [path], "methods": ["GET"]}}]
            }
            assert policy["spec"]["action"] == "ALLOW"
            assert policy["spec"]["selector"] == before[key]["spec"]["selector"]


def test_a_service_with_metrics_and_no_callers_admits_only_the_scrape(tmp_path: Path) -> None:
    def lonely(document: dict[str, Any]) -> None:
        document["spec"]["services"].append(
            {"name": "batch", "namespace": "ai-jobs", "port": 8080, "metrics": {"port": 9464}}
        )

    result = _render(tmp_path / "lonely", lonely)
    tree = tmp_path / "lonely" / "rendered"
    for env in result.environments:
        objects = harness.emitted_documents(tree / "base", tree / "overlays" / env)
        policy = objects[("security.istio.io/v1", "AuthorizationPolicy", "ai-jobs", "batch")]
        assert policy["spec"]["rules"] == [
            {"to": [{"operation": {"ports": ["9464"], "paths": ["/metrics"], "methods": ["GET"]}}]}
        ]


# -- Calico: Prometheus' pods, on that port --------------------------------------------------


def _prometheus(namespace: str) -> dict[str, Any]:
    return {
        "namespaceSelector": f"projectcalico.org/name == '{namespace}'",
        "selector": "app.kubernetes.io/name == 'prometheus'",
    }


def test_calico_admits_prometheus_on_the_metrics_port_and_nobody_else(pair: Pair) -> None:
    services = _services(pair)
    for env in pair.environments:
        namespace = pair.after.platform.environments[env].settings.observability.namespace
        before, after = pair.objects("before", env), pair.objects("after", env)
        for name, (port, _) in SCRAPED.items():
            key = (CALICO, "NetworkPolicy", services[name].namespace, name)
            old, new = before[key]["spec"]["ingress"], after[key]["spec"]["ingress"]
            assert len(old) == len(new)
            differ = [(a, b) for a, b in zip(old, new, strict=True) if a != b]
            assert len(differ) == 1, (env, name)
            was, now = differ[0]
            assert now["source"] == was["source"] == _prometheus(namespace)
            assert now["destination"]["ports"] == sorted([*was["destination"]["ports"], port])
            assert [r for r in new if port in r.get("destination", {}).get("ports", [])] == [now]


# -- ports that cannot be opened ---------------------------------------------------------------

CONFLICTS = [
    (
        8080,
        "8080 is the service's own port: serve metrics on a port of their own (Prometheus "
        "scrapes in plain text, and only the metrics port is let out of mTLS)",
    ),
    (
        15090,
        "15090 is a port of the Istio sidecar (15000, 15001, 15004, 15006, 15008, 15009, "
        "15020, 15021, 15053, 15090): serve metrics on another port",
    ),
    (15020, "15020 is a port of the Istio sidecar"),
    (9090, None),
    (15014, None),
]


@pytest.mark.parametrize(("port", "message"), CONFLICTS)
def test_port_conflict(port: int, message: str | None) -> None:
    service = models.Service.model_validate(
        {"name": "api", "namespace": "ai-api", "port": 8080, "metrics": {"port": port}}
    )
    problem = service_metrics.port_conflict(service)
    if message is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith(message)


def test_the_build_refuses_a_metrics_port_it_cannot_open(pair: Pair) -> None:
    """Validation refuses such a spec first; the build still never renders it."""
    ctx = pair.context("prod")
    spec = ctx.spec
    services = [
        s.model_copy(update={"metrics": models.ServiceMetrics(port=s.port)})
        if s.name == "api"
        else s
        for s in spec.services
    ]
    document = ctx.platform.document.model_copy(
        update={"spec": spec.model_copy(update={"services": services})}
    )
    broken = BuildContext(msgspec.structs.replace(ctx.platform, document=document), ctx.plan)
    message = "service 'api': metrics.port 8080 is the service's own port"
    with pytest.raises(RenderError, match=message):
        istio.build(broken)
    with pytest.raises(RenderError, match=message):
        service_metrics.monitors(broken)


# -- the objects as the cluster reads them -----------------------------------------------------


def test_the_new_objects_are_valid_and_read_alike_under_yaml_11_and_12(pair: Pair) -> None:
    upstream = harness.upstream_dir()
    reader12 = YAML(typ="safe", pure=True)
    tree = pair.root / "after" / "rendered"
    checked = 0
    for env in pair.environments:
        built = harness.kustomize_build(tree / "overlays" / env)
        for obj in built:
            if obj["kind"] in {"PeerAuthentication", "AuthorizationPolicy", "PodMonitor"}:
                assert harness.manifest_problems(upstream, obj) == [], obj["metadata"]
                checked += 1
    assert checked > 3 * len(SCRAPED) * 3
    # The port keys ('9090') stay strings for Helm's and kubectl's YAML 1.1 reader
    # and kustomize's YAML 1.2 one alike.
    for path in sorted(tree.rglob("*.yaml")):
        text = path.read_text()
        if "portLevelMtls" in text or "portNumber" in text:
            assert list(yaml.safe_load_all(text)) == list(reader12.load_all(text)), path
