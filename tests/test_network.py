"""Calico: the Installation, and network policy that says what Istio says.

The call graph is read back from the rendered YAML: Istio's
AuthorizationPolicies (principal -> service account -> service) on one side,
Calico's policies (source service accounts, destination pod selectors) on the
other. The spec only names things (which service runs as which account, which
pods carry which labels); it never supplies an edge.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from meshctl import models, pipeline
from meshctl.build import calico, elastic, postgres, redis
from meshctl.build.context import BuildContext, Endpoint
from meshctl.resources import example_spec
from meshctl.spec import Platform
from meshctl.validate import GATEWAY_PEER

import harness
from conftest import Rendered

CALICO = "crd.projectcalico.org/v1"
Edge = tuple[str, str, int]  # caller, callee, port
Pods = frozenset[frozenset[tuple[str, str]]]  # any of these label sets

_TERM = re.compile(r"^([A-Za-z0-9._/-]+) == '([A-Za-z0-9._-]*)'$")
_NAMESPACE = re.compile(r"^projectcalico\.org/name == '([a-z0-9-]+)'$")
_NAMESPACES = re.compile(r"^projectcalico\.org/namespace in \{([^}]*)\}$")
_PRINCIPAL = re.compile(r"^[^/]+/ns/([^/]+)/sa/([^/]+)$")


# -- reading rendered policy back -------------------------------------------------------


def parse_selector(text: str) -> Pods:
    """A Calico selector meshctl writes: (a == 'x' && b == 'y') || (...)."""
    if text == "all()":
        return frozenset({frozenset()})
    alternatives = set()
    for part in text.split(" || "):
        inner = part[1:-1] if part.startswith("(") and part.endswith(")") else part
        terms = []
        for term in inner.split(" && "):
            match = _TERM.match(term)
            assert match, f"not a label equality: {term!r} in {text!r}"
            terms.append((match.group(1), match.group(2)))
        alternatives.add(frozenset(terms))
    return frozenset(alternatives)


def pods(*label_sets: dict[str, str]) -> Pods:
    return frozenset(frozenset(labels.items()) for labels in label_sets)


def namespace_of(text: str) -> str:
    match = _NAMESPACE.match(text)
    assert match, f"not a single-namespace selector: {text!r}"
    return match.group(1)


def namespaces_in(text: str) -> set[str]:
    match = _NAMESPACES.match(text)
    assert match, f"not a namespace set: {text!r}"
    return {item.strip().strip("'") for item in match.group(1).split(",")}


class Names:
    """Who is who, from the spec: mesh identities and pod labels -> workload names."""

    def __init__(self, platform: Platform, env: str) -> None:
        self.ctx = BuildContext(platform, platform.environments[env])
        services = self.ctx.spec.services
        gateway = self.ctx.settings.gateway.namespace
        self.ports = {s.name: s.port for s in services}
        self.metrics = {s.name: s.metrics for s in services}
        self.by_account = {(s.namespace, s.account): s.name for s in services}
        self.by_account[(gateway, "kong")] = GATEWAY_PEER
        self.by_pods: dict[tuple[str, Pods], str] = {
            (s.namespace, pods(s.pod_selector)): s.name for s in services
        }
        self.by_pods[(gateway, pods(calico.KONG_PODS))] = GATEWAY_PEER
        self.endpoints = calico.data_endpoints(self.ctx)
        for endpoint in self.endpoints.values():
            self.by_pods[(endpoint.namespace, pods(*endpoint.selectors))] = endpoint.name
        self.callers = {s.name for s in services} | {GATEWAY_PEER}
        # Pods meshctl guards that are not in the call graph.
        data = self.ctx.settings.data
        self.by_pods[(data.namespace, pods({"kibana.k8s.elastic.co/name": "kibana"}))] = "kibana"
        for namespace in {s.namespace for s in services if s.routes}:
            self.by_pods[(namespace, pods(calico.ACME_SOLVER))] = "acme-solver"
        host = self.ctx.settings.gateway.database.host
        database = calico.in_cluster_namespace(host) if host else None
        if database is not None:  # Kong's own database, in-cluster: any pod there
            self.by_pods[(database, pods({}))] = "kong-database"


def scrape_rule(metrics: models.ServiceMetrics | None) -> dict[str, Any] | None:
    """The rule that lets Prometheus scrape a service's metrics port in plain text."""
    if metrics is None:
        return None
    operation = {"ports": [str(metrics.port)], "paths": [metrics.path], "methods": ["GET"]}
    return {"to": [{"operation": operation}]}


def istio_edges(objects: list[dict[str, Any]], names: Names) -> set[Edge]:
    edges = set()
    for policy in objects:
        if policy["kind"] != "AuthorizationPolicy" or "selector" not in policy["spec"]:
            continue
        namespace = policy["metadata"]["namespace"]
        callee = names.by_pods[(namespace, pods(policy["spec"]["selector"]["matchLabels"]))]
        for rule in policy["spec"].get("rules", []):
            if "from" not in rule:
                # Prometheus' scrape: plain text has no principal, so it is no edge of
                # the call graph; only the service's own metrics rule may lack `from`.
                assert rule == scrape_rule(names.metrics[callee]), (callee, rule)
                continue
            for source in rule["from"]:
                for principal in source["source"]["principals"]:
                    match = _PRINCIPAL.match(principal)
                    assert match, principal
                    caller = names.by_account[(match.group(1), match.group(2))]
                    edges.add((caller, callee, names.ports[callee]))
    return edges


def data_uses(names: Names) -> set[Edge]:
    """What `uses` (and Kong's own database) asks of the data tier, on the ports
    the components serve."""
    edges = set()
    for service in names.ctx.spec.services:
        for use in service.uses:
            if use in names.endpoints:
                endpoint = names.endpoints[use]
                edges |= {(service.name, use, p) for p in endpoint.client_ports}
    database = names.ctx.settings.gateway.database
    if database.mode == "postgres" and database.host is None and "postgres" in names.endpoints:
        endpoint = names.endpoints["postgres"]
        edges |= {(GATEWAY_PEER, "postgres", p) for p in endpoint.client_ports}
    return edges


def calico_policies(objects: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["apiVersion"] == CALICO and o["kind"] == kind]


def calico_edges(objects: list[dict[str, Any]], names: Names) -> tuple[set[Edge], set[Edge]]:
    """(edges admitted by ingress rules, edges let out by egress rules), between
    the services, Kong and the data tier."""
    ingress, egress = set(), set()
    for policy in calico_policies(objects, "NetworkPolicy"):
        namespace = policy["metadata"]["namespace"]
        owner = names.by_pods.get((namespace, parse_selector(policy["spec"]["selector"])))
        for rule in policy["spec"].get("ingress", []):
            accounts = rule.get("source", {}).get("serviceAccounts")
            if rule["action"] != "Allow" or accounts is None:
                continue
            assert owner is not None, f"{namespace}/{policy['metadata']['name']} admits {accounts}"
            source_namespace = namespace_of(rule["source"]["namespaceSelector"])
            for account in accounts["names"]:
                caller = names.by_account[(source_namespace, account)]
                ingress |= {(caller, owner, port) for port in rule["destination"]["ports"]}
        for rule in policy["spec"].get("egress", []):
            destination = rule.get("destination", {})
            if rule["action"] != "Allow" or "selector" not in destination:
                continue
            if owner is None or "namespaceSelector" not in destination:
                continue  # a component's own peers, in its namespace
            if not _NAMESPACE.match(destination["namespaceSelector"]):
                continue  # several namespaces: cert-manager's solvers
            key = (namespace_of(destination["namespaceSelector"]), destination["selector"])
            callee = names.by_pods[(key[0], parse_selector(key[1]))]
            egress |= {(owner, callee, port) for port in destination["ports"]}
    between = names.callers | set(names.endpoints)

    def graph(edges: set[Edge]) -> set[Edge]:
        return {e for e in edges if e[0] in names.callers and e[1] in between}

    return graph(ingress), graph(egress)


def environments(rendered: Rendered) -> list[str]:
    return rendered.result.environments


def built(rendered: Rendered, env: str) -> list[dict[str, Any]]:
    return harness.kustomize_build(rendered.tree / "overlays" / env)


def emitted(tree: Path, env: str) -> list[dict[str, Any]]:
    return list(harness.emitted_documents(tree / "base", tree / "overlays" / env).values())


def render_variant(tmp_path: Path, change: Any) -> pipeline.RenderResult:
    """The example spec, changed by `change(document)`, rendered into tmp_path."""
    document = yaml.safe_load(example_spec().read_text())
    change(document)
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec = tmp_path / "platform.yaml"
    spec.write_text(yaml.safe_dump(document, sort_keys=False))
    return pipeline.render(spec, tmp_path / "rendered", display_name="platform.yaml")


def service(document: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in document["spec"]["services"] if s["name"] == name)


# -- the graph ------------------------------------------------------------------------------


def test_calico_edges_are_istios_plus_the_data_tier_in_every_environment(
    rendered_trees: dict[str, Rendered],
) -> None:
    checked = 0
    for rendered in rendered_trees.values():
        for env in environments(rendered):
            objects = built(rendered, env)
            names = Names(rendered.result.platform, env)
            expected = istio_edges(objects, names) | data_uses(names)
            ingress, egress = calico_edges(objects, names)
            where = f"{rendered.name}/{env}"
            assert ingress == expected, where
            if names.ctx.settings.network.default_deny:
                assert egress == expected, where
            checked += len(expected)
    assert checked > 50


def test_the_example_graph_is_the_one_the_spec_describes(example_tree: Rendered) -> None:
    """The extraction itself is not vacuous: the example's edges, spelled out."""
    objects = built(example_tree, "prod")
    names = Names(example_tree.result.platform, "prod")
    ingress, _ = calico_edges(objects, names)
    assert {
        ("gateway", "console", 8080),
        ("gateway", "api", 8080),
        ("console", "api", 8080),
        ("api", "orchestrator", 8080),
        ("api", "inference", 8000),
        ("orchestrator", "embeddings", 8000),
        ("api", "postgres", 5432),
        ("api", "redis", 6379),
        ("api", "redis", 26379),  # prod runs Redis under Sentinel
        ("orchestrator", "elasticsearch", 9200),
    } <= ingress
    assert ("console", "inference", 8000) not in ingress


def test_removing_a_caller_removes_its_calico_edge(tmp_path: Path) -> None:
    def without_console(document: dict[str, Any]) -> None:
        service(document, "api")["allowFrom"].remove("console")
        service(document, "console")["uses"].remove("api")

    before = render_variant(tmp_path / "before", lambda document: None)
    after = render_variant(tmp_path / "after", without_console)
    for env in after.environments:
        names = Names(after.platform, env)
        old = calico_edges(emitted(tmp_path / "before" / "rendered", env), names)
        new = calico_edges(emitted(tmp_path / "after" / "rendered", env), names)
        edge = ("console", "api", 8080)
        assert edge in old[0] and edge in old[1]
        assert new[0] == old[0] - {edge}
        assert new[1] == old[1] - {edge}
    assert before.environments == after.environments


def test_a_metrics_port_adds_no_edge_to_either_graph(tmp_path: Path) -> None:
    """Prometheus' scrape rule has no `from` (plain text has no principal) and Calico
    admits Prometheus by its pods' labels: neither is an edge of the call graph."""

    def api_metrics(document: dict[str, Any]) -> None:
        service(document, "api")["metrics"] = {"port": 9090}

    before = render_variant(tmp_path / "before", lambda document: None)
    after = render_variant(tmp_path / "after", api_metrics)
    for env in after.environments:
        old_names, names = Names(before.platform, env), Names(after.platform, env)
        old = emitted(tmp_path / "before" / "rendered", env)
        new = emitted(tmp_path / "after" / "rendered", env)
        (policy,) = [
            o for o in new if o["kind"] == "AuthorizationPolicy" and o["metadata"]["name"] == "api"
        ]
        # The extraction below does meet the rule (and checks it is the scrape's).
        assert scrape_rule(names.metrics["api"]) in policy["spec"]["rules"]
        assert istio_edges(new, names) == istio_edges(old, old_names)
        assert calico_edges(new, names) == calico_edges(old, old_names)
        assert calico_edges(new, names)[0] == istio_edges(new, names) | data_uses(names)


def test_the_extraction_refuses_a_rule_without_from_that_is_not_the_scrape(
    example_tree: Rendered,
) -> None:
    objects = copy.deepcopy(built(example_tree, "prod"))
    names = Names(example_tree.result.platform, "prod")
    (policy,) = [
        o for o in objects if o["kind"] == "AuthorizationPolicy" and o["metadata"]["name"] == "api"
    ]
    policy["spec"]["rules"].append({"to": [{"operation": {"ports": ["8080"]}}]})
    with pytest.raises(AssertionError):
        istio_edges(objects, names)


# -- namespace-wide policy -------------------------------------------------------------------


def _global(objects: list[dict[str, Any]], suffix: str) -> dict[str, Any]:
    (policy,) = [
        p
        for p in calico_policies(objects, "GlobalNetworkPolicy")
        if p["metadata"]["name"].endswith(f"-{suffix}")
    ]
    return policy


def test_default_deny_covers_exactly_the_platform_namespaces(
    rendered_trees: dict[str, Rendered],
) -> None:
    system = {"kube-system", "calico-system", "tigera-operator", "istio-system", "istio-egress"}
    system |= {"cnpg-system", "elastic-system", "cert-manager", "external-secrets", "monitoring"}
    for rendered in rendered_trees.values():
        for env in environments(rendered):
            objects = built(rendered, env)
            settings = rendered.result.platform.environments[env].settings
            services = rendered.result.platform.spec.services
            expected = {s.namespace for s in services} | {settings.gateway.namespace}
            data = settings.data
            if data.postgres.enabled or data.redis.enabled or data.elasticsearch.enabled:
                expected.add(data.namespace)
            deny = _global(objects, "default-deny")
            assert namespaces_in(deny["spec"]["selector"]) == expected, (rendered.name, env)
            assert not expected & system
            # No rules: what nothing allows ends at the tier's implicit deny.
            assert deny["spec"]["types"] == ["Ingress", "Egress"]
            assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
            baseline = _global(objects, "baseline")
            assert baseline["spec"]["selector"] == deny["spec"]["selector"]


def test_every_pod_may_reach_dns_the_api_server_and_istiod(example_tree: Rendered) -> None:
    for env in environments(example_tree):
        baseline = _global(built(example_tree, env), "baseline")
        assert baseline["spec"]["types"] == ["Egress"]
        assert baseline["spec"]["order"] < calico.WORKLOAD_ORDER
        rules = baseline["spec"]["egress"]
        dns = {
            "namespaceSelector": "projectcalico.org/name == 'kube-system'",
            "selector": "k8s-app == 'kube-dns'",
            "ports": [53],
        }
        for protocol in ("UDP", "TCP"):
            assert {"action": "Allow", "protocol": protocol, "destination": dns} in rules
        assert {
            "action": "Allow",
            "destination": {"services": {"name": "kubernetes", "namespace": "default"}},
        } in rules
        assert {
            "action": "Allow",
            "protocol": "TCP",
            "destination": {
                "namespaceSelector": "projectcalico.org/name == 'istio-system'",
                "selector": "app == 'istiod'",
                "ports": [15012],
            },
        } in rules
        # The example traces to Jaeger: OTLP over gRPC (sidecars) and HTTP (Kong).
        for port in (4317, 4318):
            assert {
                "action": "Allow",
                "protocol": "TCP",
                "destination": {
                    "namespaceSelector": "projectcalico.org/name == 'monitoring'",
                    "ports": [port],
                },
            } in rules
        assert all(rule["action"] == "Allow" for rule in rules)


def test_external_https_goes_through_the_egress_gateway_when_there_is_one(
    example_tree: Rendered,
) -> None:
    prod = _global(built(example_tree, "prod"), "mesh-egress")["spec"]["egress"]
    assert prod == [
        {
            "action": "Allow",
            "protocol": "TCP",
            "destination": {
                "namespaceSelector": "projectcalico.org/name == 'istio-egress'",
                "selector": "istio == 'egressgateway'",
                "ports": [443],
            },
        }
    ]
    dev = _global(built(example_tree, "dev"), "mesh-egress")["spec"]["egress"]
    assert dev == [
        {
            "action": "Allow",
            "protocol": "TCP",
            "destination": {"notNets": ["10.244.0.0/16"], "ports": [443]},
        }
    ]


# -- what may reach a service ----------------------------------------------------------------


def _operator(source: dict[str, Any]) -> bool:
    """A whole operator namespace: CloudNativePG's, ECK's (they run nothing else)."""
    operators = {postgres.OPERATOR_NAMESPACE, elastic.OPERATOR_NAMESPACE}
    return set(source) == {"namespaceSelector"} and (
        namespace_of(source["namespaceSelector"]) in operators
    )


def test_no_rule_lets_anyone_into_a_service(rendered_trees: dict[str, Rendered]) -> None:
    for rendered in rendered_trees.values():
        for env in environments(rendered):
            objects = built(rendered, env)
            names = Names(rendered.result.platform, env)
            for policy in calico_policies(objects, "NetworkPolicy"):
                namespace = policy["metadata"]["namespace"]
                owner = names.by_pods.get((namespace, parse_selector(policy["spec"]["selector"])))
                # Kong takes public traffic; Kong's own in-cluster database is not
                # the spec's to guard (its policy only adds Kong, no Deny).
                if owner in (None, GATEWAY_PEER, "kong-database"):
                    continue
                rules = policy["spec"]["ingress"]
                assert rules[-1] == {"action": "Deny"}, (rendered.name, env, owner)
                for rule in rules[:-1]:
                    assert rule["action"] == "Allow"
                    assert rule["protocol"] == "TCP"
                    assert rule["destination"]["ports"], (owner, rule)
                    source = rule["source"]
                    assert "nets" not in source and "notNets" not in source
                    if owner in names.ports or not _operator(source):
                        assert {"serviceAccounts", "selector"} & set(source), (owner, rule)
            for policy in calico_policies(objects, "GlobalNetworkPolicy"):
                assert "ingress" not in policy["spec"], policy["metadata"]["name"]


def test_kong_takes_public_traffic_and_the_webhook_from_anywhere_and_nothing_else(
    example_tree: Rendered,
) -> None:
    objects = built(example_tree, "prod")
    (kong,) = [
        p
        for p in calico_policies(objects, "NetworkPolicy")
        if p["metadata"]["name"] == "kong" and p["metadata"]["namespace"] == "kong"
    ]
    open_rules = [
        r for r in kong["spec"]["ingress"] if r["action"] == "Allow" and "source" not in r
    ]
    assert [r["destination"]["ports"] for r in open_rules] == [[8000, 8443], [8080]]
    assert kong["spec"]["ingress"][-1] == {"action": "Deny"}
    solvers = [
        r["destination"]
        for r in kong["spec"]["egress"]
        if r.get("destination", {}).get("selector")
        == "acme.cert-manager.io/http01-solver == 'true'"
    ]
    assert solvers == [
        {
            "namespaceSelector": "projectcalico.org/name in {'ai-api', 'web'}",
            "selector": "acme.cert-manager.io/http01-solver == 'true'",
            "ports": [8089],
        }
    ]


def test_http01_solvers_admit_kong_where_acme_issues_certificates(example_tree: Rendered) -> None:
    for env in environments(example_tree):
        objects = built(example_tree, env)
        solvers = [
            p
            for p in calico_policies(objects, "NetworkPolicy")
            if p["metadata"]["name"] == "acme-http01-solver"
        ]
        acme = example_tree.result.platform.environments[env].settings.tls.issuer == "acme"
        if not acme:
            assert solvers == []
            continue
        # Certificates are issued where the routes' Ingresses are.
        assert {p["metadata"]["namespace"] for p in solvers} == {"web", "ai-api"}
        for policy in solvers:
            assert policy["spec"]["ingress"][0] == {
                "action": "Allow",
                "protocol": "TCP",
                "source": {
                    "namespaceSelector": "projectcalico.org/name == 'kong'",
                    "serviceAccounts": {"names": ["kong"]},
                },
                "destination": {"ports": [8089]},
            }


# -- the data tier -------------------------------------------------------------------------


def test_a_data_component_is_guarded_from_its_endpoint(
    example_tree: Rendered, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written against the Endpoint dataclass: any component that describes itself
    gets its users, its peers and the monitoring scrapes, nothing more."""
    platform = example_tree.result.platform
    ctx = BuildContext(platform, platform.environments["staging"])
    made = Endpoint(
        name="redis",
        namespace="data",
        host="cache.data.svc",
        port=7000,
        selectors=({"app": "cache", "tier": "hot"}, {"app": "cache-proxy"}),
        peer_ports=(7001,),
        extra_client_ports=(26379,),
        metrics_ports=(9121,),
    )
    monkeypatch.setattr(redis, "endpoint", lambda ctx: made)
    output = calico.build(ctx)
    (policy,) = [
        m.body
        for m in output.manifests
        if m.group == "data" and m.body["metadata"]["name"] == "redis"
    ]
    selector = "(app == 'cache' && tier == 'hot') || (app == 'cache-proxy')"
    assert policy["spec"]["selector"] == selector
    assert policy["spec"]["ingress"] == [
        {
            "action": "Allow",
            "protocol": "TCP",
            "source": {
                "namespaceSelector": "projectcalico.org/name == 'ai-api'",
                "serviceAccounts": {"names": ["api"]},
            },
            # The further client port (a Sentinel's) too.
            "destination": {"ports": [7000, 26379]},
        },
        {
            "action": "Allow",
            "protocol": "TCP",
            "source": {"selector": selector},
            "destination": {"ports": [7000, 7001]},
        },
        {
            "action": "Allow",
            "protocol": "TCP",
            "source": {
                "namespaceSelector": "projectcalico.org/name == 'monitoring'",
                "selector": "app.kubernetes.io/name == 'prometheus'",
            },
            "destination": {"ports": [9121]},
        },
        {"action": "Deny"},
    ]
    assert policy["spec"]["egress"] == [
        {
            "action": "Allow",
            "protocol": "TCP",
            "destination": {"selector": selector, "ports": [7000, 7001]},
        },
        {"action": "Deny"},
    ]
    (api,) = [m.body for m in output.manifests if m.group == "api"]
    assert {
        "action": "Allow",
        "protocol": "TCP",
        "destination": {
            "namespaceSelector": "projectcalico.org/name == 'data'",
            "selector": selector,
            "ports": [7000, 26379],
        },
    } in api["spec"]["egress"]


def test_postgres_reaches_its_object_store_only_when_it_backs_up(example_tree: Rendered) -> None:
    for env in environments(example_tree):
        (policy,) = [
            p
            for p in calico_policies(built(example_tree, env), "NetworkPolicy")
            if p["metadata"]["name"] == "postgres"
        ]
        store = {
            "action": "Allow",
            "protocol": "TCP",
            "destination": {"notNets": ["10.244.0.0/16"], "ports": [443]},
        }
        backups = example_tree.result.platform.environments[env].settings.data.postgres.backup
        assert (store in policy["spec"]["egress"]) == backups.enabled, env
        operator = {
            "action": "Allow",
            "protocol": "TCP",
            "source": {"namespaceSelector": "projectcalico.org/name == 'cnpg-system'"},
            "destination": {"ports": [5432, 8000]},
        }
        assert operator in policy["spec"]["ingress"]


def test_kibana_reaches_elasticsearch(example_tree: Rendered) -> None:
    objects = built(example_tree, "prod")
    (kibana,) = [
        p for p in calico_policies(objects, "NetworkPolicy") if p["metadata"]["name"] == "kibana"
    ]
    assert kibana["spec"]["ingress"] == [{"action": "Deny"}]
    assert kibana["spec"]["egress"][0]["destination"] == {
        "namespaceSelector": "projectcalico.org/name == 'data'",
        "selector": "elasticsearch.k8s.elastic.co/cluster-name == 'elasticsearch'",
        "ports": [9200],
    }
    (elasticsearch,) = [
        p
        for p in calico_policies(objects, "NetworkPolicy")
        if p["metadata"]["name"] == "elasticsearch"
    ]
    assert {
        "action": "Allow",
        "protocol": "TCP",
        "source": {
            "namespaceSelector": "projectcalico.org/name == 'data'",
            "selector": "kibana.k8s.elastic.co/name == 'kibana'",
        },
        "destination": {"ports": [9200]},
    } in elasticsearch["spec"]["ingress"]


# -- default deny off ----------------------------------------------------------------------------


def test_without_default_deny_only_what_the_spec_declares_is_guarded(tmp_path: Path) -> None:
    def open_dev(document: dict[str, Any]) -> None:
        dev = document["spec"]["environments"]["dev"]["overrides"]
        dev["network"] = {"defaultDeny": False}

    result = render_variant(tmp_path, open_dev)
    tree = tmp_path / "rendered"
    objects = emitted(tree, "dev")
    assert calico_policies(objects, "GlobalNetworkPolicy") == []
    names = Names(result.platform, "dev")
    ingress, egress = calico_edges(objects, names)
    assert ingress == istio_edges(objects, names) | data_uses(names)
    assert egress == set()
    for policy in calico_policies(objects, "NetworkPolicy"):
        assert policy["spec"]["types"] == ["Ingress"]
        assert "egress" not in policy["spec"]
    # The other environments keep theirs.
    assert _global(emitted(tree, "staging"), "default-deny")


# -- Calico's own rules for policy objects -------------------------------------------------


def test_policies_are_v1_objects_named_without_a_tier_prefix(
    rendered_trees: dict[str, Rendered],
) -> None:
    """Since 3.32 the stored name is the policy's name; kube-controllers would
    rename a `default.`-prefixed one (a new object that Argo CD then prunes)."""
    for rendered in rendered_trees.values():
        for env in environments(rendered):
            objects = built(rendered, env)
            policies = [o for o in objects if "projectcalico" in o["apiVersion"]]
            assert policies
            for policy in policies:
                assert policy["apiVersion"] == CALICO
                assert policy["kind"] in {"NetworkPolicy", "GlobalNetworkPolicy"}
                assert "." not in policy["metadata"]["name"]
                assert policy["spec"]["tier"] == "default"
                assert policy["spec"]["types"]


def test_policies_sync_with_the_foundation(example_tree: Rendered) -> None:
    foundation = example_tree.tree / "overlays" / "prod" / "foundation"
    documents = harness.emitted_documents(example_tree.tree / "base" / "foundation", foundation)
    in_foundation = {k for k in documents if k[0] == CALICO}
    everything = {
        harness.identity(o) for o in built(example_tree, "prod") if o["apiVersion"] == CALICO
    }
    assert in_foundation == everything


# -- the Installation ----------------------------------------------------------------------------


def _installation_schema() -> dict[str, Any]:
    path = harness.upstream_dir() / "crds" / "operator.tigera.io" / "installation_v1.json"
    return json.loads(path.read_text())["properties"]["spec"]  # type: ignore[no-any-return]


def installation_spec(values: dict[str, Any]) -> dict[str, Any]:
    """What the chart puts in the Installation's spec: its `installation` values
    (its defaults under ours) minus the chart's own switch."""
    contract = harness.chart_contract(harness.upstream_dir(), "tigera-operator")
    merged = harness.coalesce(contract.defaults["installation"], values["installation"])
    return {k: v for k, v in merged.items() if k != "enabled"}


def _values(tree: Path, env: str) -> dict[str, Any]:
    return yaml.safe_load((tree / "overlays" / env / "values" / "tigera-operator.yaml").read_text())  # type: ignore[no-any-return]


def test_installation_values_are_a_valid_installation_spec(
    rendered_trees: dict[str, Rendered],
) -> None:
    validator = jsonschema.Draft7Validator(_installation_schema())
    for rendered in rendered_trees.values():
        for env in environments(rendered):
            spec = installation_spec(_values(rendered.tree, env))
            problems = [
                f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                for e in validator.iter_errors(spec)
            ]
            assert problems == [], (rendered.name, env)


def test_the_installation_check_is_not_vacuous() -> None:
    validator = jsonschema.Draft7Validator(_installation_schema())
    bad = {"calicoNetwork": {"ipPools": [{"cidr": "10.0.0.0/16", "natOutgoing": True}]}}
    assert list(validator.iter_errors(bad))
    assert list(validator.iter_errors({"calicoNetwork": {"bpg": "Enabled"}}))


def test_installation_follows_the_network_settings(tmp_path: Path) -> None:
    def two_pools(document: dict[str, Any]) -> None:
        document["spec"]["network"]["calico"] = {
            "ipPools": [
                {"cidr": "10.244.0.0/16", "blockSize": 24, "encapsulation": "IPIP"},
                {"cidr": "10.245.0.0/16", "encapsulation": "None", "natOutgoing": False},
            ],
            "mtu": 8951,
            "bgp": "Enabled",
        }

    render_variant(tmp_path, two_pools)
    values = _values(tmp_path / "rendered", "prod")
    network = values["installation"]["calicoNetwork"]
    assert network["bgp"] == "Enabled"
    assert network["mtu"] == 8951
    assert [
        (p["name"], p["cidr"], p["blockSize"], p["encapsulation"], p["natOutgoing"])
        for p in network["ipPools"]
    ] == [
        ("default-ipv4-ippool", "10.244.0.0/16", 24, "IPIP", "Enabled"),
        ("ipv4-ippool-1", "10.245.0.0/16", 26, "None", "Disabled"),
    ]
    assert all(p["nodeSelector"] == "all()" for p in network["ipPools"])
    validator = jsonschema.Draft7Validator(_installation_schema())
    assert list(validator.iter_errors(installation_spec(values))) == []
    # Traffic to either pool is "inside the cluster".
    objects = emitted(tmp_path / "rendered", "dev")
    dev = _global(objects, "mesh-egress")["spec"]["egress"][0]["destination"]
    assert dev["notNets"] == ["10.244.0.0/16", "10.245.0.0/16"]


def test_the_example_leaves_mtu_to_calico_and_turns_the_api_server_off(
    example_tree: Rendered,
) -> None:
    for env in environments(example_tree):
        values = _values(example_tree.tree, env)
        assert "mtu" not in values["installation"]["calicoNetwork"]
        assert values["apiServer"] == {"enabled": False}
        assert values["goldmane"] == {"enabled": True}
        assert values["whisker"] == {"enabled": True}
        (pool,) = values["installation"]["calicoNetwork"]["ipPools"]
        assert pool == {
            "name": "default-ipv4-ippool",
            "cidr": "10.244.0.0/16",
            "blockSize": 26,
            "encapsulation": "VXLANCrossSubnet",
            "natOutgoing": "Enabled",
            "nodeSelector": "all()",
            "allowedUses": ["Workload", "Tunnel"],
            "assignmentMode": "Automatic",
            "disableBGPExport": False,
        }


def test_release_is_the_pinned_operator_chart_before_everything_else(
    example_tree: Rendered,
) -> None:
    apps = {
        a["metadata"]["name"]: a for a in built(example_tree, "prod") if a["kind"] == "Application"
    }
    app = apps["parallel-ai-prod-tigera-operator"]
    assert app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "0"
    assert app["spec"]["destination"]["namespace"] == "tigera-operator"
    (chart, _) = app["spec"]["sources"]
    assert (chart["chart"], chart["targetRevision"]) == ("tigera-operator", "v3.32.1")
    foundation = apps["parallel-ai-prod-foundation"]
    assert int(foundation["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) > 0
