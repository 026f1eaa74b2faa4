"""Redis (Bitnami chart) and Elasticsearch + Kibana (ECK), from the rendered example.

Asserted where a mistake would hurt on a cluster: the mode and sizes per
profile, where the password comes from, images that still pull, TLS left on,
budgets and spreading per profile, and the Secrets each consuming service gets.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshctl.build import elastic, redis
from meshctl.build.context import BuildContext
from meshctl.errors import RenderError
from meshctl.resources import example_spec

import harness
from conftest import Rendered, meshctl

ENVIRONMENTS = ("dev", "staging", "prod")
DATA_NAMESPACE = "data"


def _objects(tree: Path, env: str) -> list[dict[str, Any]]:
    return harness.kustomize_build(tree / "overlays" / env)


def _values(tree: Path, env: str, release: str) -> dict[str, Any]:
    return yaml.safe_load((tree / f"overlays/{env}/values/{release}.yaml").read_text())  # type: ignore[no-any-return]


def _context(rendered: Rendered, env: str) -> BuildContext:
    platform = rendered.result.platform
    return BuildContext(platform, platform.environments[env])


def _external_secret_template(es: dict[str, Any]) -> dict[str, Any]:
    return es["spec"]["target"].get("template", {}).get("data", {})  # type: ignore[no-any-return]


# -- Redis -------------------------------------------------------------------------


def test_redis_is_standalone_in_dev_and_sentinel_elsewhere(example_tree: Rendered) -> None:
    dev = _values(example_tree.tree, "dev", "redis")
    assert dev["architecture"] == "standalone"
    assert dev["sentinel"]["enabled"] is False
    assert "replica" not in dev
    for env in ("staging", "prod"):
        values = _values(example_tree.tree, env, "redis")
        settings = _context(example_tree, env).settings.data.redis
        assert settings.mode == "sentinel"
        assert values["architecture"] == "replication"
        assert values["sentinel"]["enabled"] is True
        assert values["replica"]["replicaCount"] == settings.replicas == 3
        assert values["sentinel"]["quorum"] == 2  # a majority of 3
        # No master StatefulSet with sentinel: its budget would select nothing.
        assert values["master"]["pdb"]["create"] is False
        assert values["replica"]["persistence"]["enabled"] is True
        assert values["replica"]["persistence"]["size"] == settings.persistence.size
        assert values["replica"]["resources"]["requests"]["memory"] == (
            settings.resources.requests.memory
        )


def test_redis_password_only_comes_from_the_external_secret(example_tree: Rendered) -> None:
    for env in ENVIRONMENTS:
        values = _values(example_tree.tree, env, "redis")
        assert values["auth"] == {
            "enabled": True,
            "sentinel": True,
            "existingSecret": "redis",
            "existingSecretPasswordKey": "password",
        }
        assert "redis" not in values.get("global", {})
        objects = _objects(example_tree.tree, env)
        server = harness.one(objects, "ExternalSecret", "redis")
        assert server["metadata"]["namespace"] == DATA_NAMESPACE
        assert server["spec"]["target"]["name"] == "redis"
        assert [d["remoteRef"] for d in server["spec"]["data"]] == [
            {"key": f"parallel-ai/{env}/redis", "property": "password"}
        ]


def test_redis_images_are_the_charts_own_tags_from_bitnami_legacy(
    example_tree: Rendered,
) -> None:
    defaults = harness.chart_contract(harness.upstream_dir(), "redis").defaults
    values = _values(example_tree.tree, "prod", "redis")
    assert values["global"]["security"]["allowInsecureImages"] is True
    for section in ("", "sentinel", "metrics", "volumePermissions", "sysctl", "kubectl"):
        ours = values[section]["image"] if section else values["image"]
        theirs = defaults[section]["image"] if section else defaults["image"]
        assert ours["registry"] == "docker.io"
        assert ours["repository"] == theirs["repository"].replace("bitnami/", "bitnamilegacy/")
        assert ours["tag"] == theirs["tag"], section


def test_redis_values_fit_the_pinned_chart(example_tree: Rendered) -> None:
    # The conformance tests check this too; here a Redis change fails next to its cause.
    contract = harness.chart_contract(harness.upstream_dir(), "redis")
    for env in ENVIRONMENTS:
        assert harness.values_problems(contract, _values(example_tree.tree, env, "redis")) == []


def test_redis_budgets_and_spreading_follow_the_profile(example_tree: Rendered) -> None:
    dev = _values(example_tree.tree, "dev", "redis")
    assert dev["master"]["pdb"]["create"] is False
    assert dev["master"]["podAntiAffinityPreset"] == ""
    assert dev["master"]["topologySpreadConstraints"] == []
    staging = _values(example_tree.tree, "staging", "redis")["replica"]
    assert staging["pdb"]["create"] is True
    assert staging["podAntiAffinityPreset"] == "soft"
    assert staging["topologySpreadConstraints"] == []
    prod = _values(example_tree.tree, "prod", "redis")["replica"]
    assert prod["pdb"]["create"] is True
    assert prod["podAntiAffinityPreset"] == "soft"
    (spread,) = prod["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    # The labels the chart puts on the sentinel-mode pods.
    assert spread["labelSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "redis",
        "app.kubernetes.io/instance": "redis",
        "app.kubernetes.io/component": "node",
    }


def test_redis_keeps_service_monitor_and_its_own_network_policy_off(
    example_tree: Rendered,
) -> None:
    for env in ENVIRONMENTS:
        values = _values(example_tree.tree, env, "redis")
        assert values["metrics"]["enabled"] is True
        assert values["metrics"]["serviceMonitor"]["enabled"] is False
        assert values["networkPolicy"]["enabled"] is False


def test_redis_consumers_get_their_secret_with_the_same_store_key(
    example_tree: Rendered,
) -> None:
    for env in ENVIRONMENTS:
        objects = _objects(example_tree.tree, env)
        client = harness.one(objects, "ExternalSecret", "api-redis")
        assert client["metadata"]["namespace"] == "ai-api"
        assert [d["remoteRef"] for d in client["spec"]["data"]] == [
            {"key": f"parallel-ai/{env}/redis", "property": "password"}
        ]
        data = _external_secret_template(client)
        assert data["password"] == "{{ .password }}"
        assert data["port"] == "6379"
        if env == "dev":
            assert data["host"] == "redis-master.data.svc"
            assert "sentinel-host" not in data
        else:
            assert data["host"] == "redis.data.svc"
            assert data["sentinel-host"] == "redis.data.svc"
            assert data["sentinel-port"] == "26379"
            assert data["sentinel-master-set"] == "mymaster"
        # orchestrator does not use redis
        assert not [
            o
            for o in objects
            if o["kind"] == "ExternalSecret" and o["metadata"]["name"] == ("orchestrator-redis")
        ]


def test_redis_endpoint(example_tree: Rendered, rendered_trees: dict[str, Rendered]) -> None:
    dev = redis.endpoint(_context(example_tree, "dev"))
    assert dev is not None
    assert (dev.name, dev.namespace, dev.host, dev.port) == (
        "redis",
        DATA_NAMESPACE,
        "redis-master.data.svc",
        6379,
    )
    assert dev.selectors == (
        {"app.kubernetes.io/name": "redis", "app.kubernetes.io/instance": "redis"},
    )
    assert dev.peer_ports == ()
    prod = redis.endpoint(_context(example_tree, "prod"))
    assert prod is not None
    assert prod.host == "redis.data.svc"
    assert prod.peer_ports == (6379, 26379)
    # Sentinel-aware clients talk to a sentinel first, then to the master.
    dev, prod = (redis.endpoint(_context(example_tree, env)) for env in ("dev", "prod"))
    assert dev and dev.client_ports == (6379,)
    assert prod and prod.client_ports == (6379, 26379)
    minimal = rendered_trees["minimal"]
    for env in minimal.result.environments:
        assert redis.endpoint(_context(minimal, env)) is None


# -- Elasticsearch and Kibana ------------------------------------------------------


@pytest.mark.parametrize(("env", "nodes"), [("dev", 1), ("staging", 3), ("prod", 3)])
def test_elasticsearch_nodes_and_heap_follow_the_profile(
    example_tree: Rendered, env: str, nodes: int
) -> None:
    settings = _context(example_tree, env).settings.data.elasticsearch
    cluster = harness.one(_objects(example_tree.tree, env), "Elasticsearch", "elasticsearch")
    assert cluster["metadata"]["namespace"] == DATA_NAMESPACE
    assert cluster["spec"]["version"] == settings.version
    (node_set,) = cluster["spec"]["nodeSets"]
    assert node_set["name"] == "default"
    assert node_set["count"] == nodes == settings.nodes
    (container,) = node_set["podTemplate"]["spec"]["containers"]
    assert container["name"] == "elasticsearch"
    heap = {"1Gi": "1g", "2Gi": "2g", "4Gi": "4g"}[settings.heap]
    assert container["env"] == [{"name": "ES_JAVA_OPTS", "value": f"-Xms{heap} -Xmx{heap}"}]
    assert container["resources"]["limits"]["memory"] == settings.resources.limits.memory
    (claim,) = node_set["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "elasticsearch-data"
    assert claim["spec"]["resources"]["requests"]["storage"] == settings.storage.size
    assert node_set["config"]["node.store.allow_mmap"] is False


def test_java_heap_sizes() -> None:
    assert elastic.java_heap("2Gi") == "2g"
    assert elastic.java_heap("512Mi") == "512m"
    assert elastic.java_heap("1536Mi") == "1536m"
    assert elastic.java_heap("4096Mi") == "4g"
    assert elastic.java_heap("1G") == "953m"  # rounded down to whole MiB
    with pytest.raises(RenderError):
        elastic.java_heap("1Mi")


def test_elasticsearch_tls_stays_on(example_tree: Rendered) -> None:
    for env in ENVIRONMENTS:
        objects = _objects(example_tree.tree, env)
        spec = harness.one(objects, "Elasticsearch", "elasticsearch")["spec"]
        tls = spec.get("http", {}).get("tls", {})
        assert not tls.get("selfSignedCertificate", {}).get("disabled", False)
        config = spec["nodeSets"][0]["config"]
        for layer in ("http", "transport"):
            assert config[f"xpack.security.{layer}.ssl.supported_protocols"] == [
                "TLSv1.3",
                "TLSv1.2",
            ]
        kibana = harness.one(objects, "Kibana", "kibana")["spec"]
        assert (
            not kibana.get("http", {})
            .get("tls", {})
            .get("selfSignedCertificate", {})
            .get("disabled", False)
        )
        assert kibana["config"]["server.ssl.supportedProtocols"] == ["TLSv1.2", "TLSv1.3"]
        assert kibana["elasticsearchRef"] == {"name": "elasticsearch"}


def test_elasticsearch_budgets_and_spreading_follow_the_profile(example_tree: Rendered) -> None:
    hostname_rule = {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {
                            "matchLabels": {
                                "elasticsearch.k8s.elastic.co/cluster-name": "elasticsearch"
                            }
                        },
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }
            ]
        }
    }
    expected = {
        # env: (ECK's budget kept, affinity, zone awareness, Kibana budget)
        "dev": (False, {}, False, False),
        "staging": (True, hostname_rule, False, True),
        "prod": (True, hostname_rule, True, True),
    }
    for env, (budget, affinity, zones, kibana_budget) in expected.items():
        objects = _objects(example_tree.tree, env)
        spec = harness.one(objects, "Elasticsearch", "elasticsearch")["spec"]
        if budget:
            assert "podDisruptionBudget" not in spec, env  # ECK's default budget
        else:
            assert spec["podDisruptionBudget"] == {}, env  # ECK's way to say "none"
        node_set = spec["nodeSets"][0]
        assert node_set["podTemplate"]["spec"]["affinity"] == affinity, env
        assert ("zoneAwareness" in node_set) is zones, env
        budgets = [
            o
            for o in objects
            if o["kind"] == "PodDisruptionBudget" and o["metadata"]["name"] == "kibana"
        ]
        assert bool(budgets) is kibana_budget, env
        for pdb in budgets:
            assert pdb["spec"]["selector"]["matchLabels"] == {
                "kibana.k8s.elastic.co/name": "kibana"
            }


def test_kibana_count_and_resources_follow_the_profile(example_tree: Rendered) -> None:
    for env in ENVIRONMENTS:
        settings = _context(example_tree, env).settings.data.elasticsearch.kibana
        kibana = harness.one(_objects(example_tree.tree, env), "Kibana", "kibana")
        assert kibana["spec"]["count"] == settings.count
        (container,) = kibana["spec"]["podTemplate"]["spec"]["containers"]
        assert container["name"] == "kibana"
        assert container["resources"]["requests"]["cpu"] == settings.resources.requests.cpu


def test_elasticsearch_consumers_get_their_own_user_not_the_superuser(
    example_tree: Rendered,
) -> None:
    for env in ENVIRONMENTS:
        objects = _objects(example_tree.tree, env)
        key = {"key": f"parallel-ai/{env}/elasticsearch-orchestrator", "property": "password"}
        # The file-realm user next to Elasticsearch...
        user = harness.one(objects, "ExternalSecret", "elasticsearch-orchestrator-user")
        assert user["metadata"]["namespace"] == DATA_NAMESPACE
        assert [d["remoteRef"] for d in user["spec"]["data"]] == [key]
        assert user["spec"]["target"]["template"]["type"] == "kubernetes.io/basic-auth"
        assert _external_secret_template(user) == {
            "username": "orchestrator",
            "password": "{{ .password }}",
            "roles": "service-orchestrator",
        }
        # The observability stack's components are users the same way.
        platform_users = ["fluent-bit", "log-retention", "jaeger", "grafana"]
        platform_users.append("elasticsearch-exporter")
        spec = harness.one(objects, "Elasticsearch", "elasticsearch")["spec"]
        assert spec["auth"] == {
            "fileRealm": [
                {"secretName": f"elasticsearch-{user}-user"}
                for user in ["orchestrator", *platform_users]
            ],
            "roles": [{"secretName": "elasticsearch-roles"}],
        }
        roles = yaml.safe_load(
            harness.one(objects, "Secret", "elasticsearch-roles")["stringData"]["roles.yml"]
        )
        assert roles.pop("service-orchestrator") == {
            "cluster": ["monitor"],
            "indices": [{"names": ["orchestrator", "orchestrator-*"], "privileges": ["all"]}],
        }
        assert sorted(roles) == sorted(f"platform-{user}" for user in platform_users)
        # None of them may touch a service's indices, nor hold `all` on every index.
        for role in roles.values():
            for grant in role["indices"]:
                assert all(n.startswith("platform-") or n == "*" for n in grant["names"])
                assert "*" not in grant["names"] or grant["privileges"] == ["monitor"]
        # ...and the service's own Secret, from the same store key.
        client = harness.one(objects, "ExternalSecret", "orchestrator-elasticsearch")
        assert client["metadata"]["namespace"] == "ai-jobs"
        assert [d["remoteRef"] for d in client["spec"]["data"]] == [key]
        assert _external_secret_template(client) == {
            "url": "https://elasticsearch-es-http.data.svc:9200",
            "host": "elasticsearch-es-http.data.svc",
            "port": "9200",
            "username": "orchestrator",
            "password": "{{ .password }}",
        }
        # The CA, copied from ECK's public certificate Secret.
        ca = harness.one(objects, "ExternalSecret", "orchestrator-elasticsearch-ca")
        assert ca["metadata"]["namespace"] == "ai-jobs"
        assert ca["spec"]["secretStoreRef"] == {
            "kind": "ClusterSecretStore",
            "name": "parallel-ai-elasticsearch-ca",
        }
        assert ca["spec"]["data"] == [
            {
                "secretKey": "ca.crt",
                "remoteRef": {"key": "elasticsearch-es-http-certs-public", "property": "ca.crt"},
            }
        ]
        store = harness.one(objects, "ClusterSecretStore", "parallel-ai-elasticsearch-ca")
        assert store["spec"]["conditions"] == [{"namespaces": ["ai-jobs", "monitoring"]}]
        assert store["spec"]["provider"]["kubernetes"]["remoteNamespace"] == DATA_NAMESPACE
        role = harness.one(objects, "Role", "elasticsearch-ca-reader")
        assert role["rules"] == [
            {
                "apiGroups": [""],
                "resources": ["secrets"],
                "resourceNames": ["elasticsearch-es-http-certs-public"],
                "verbs": ["get"],
            }
        ]
        # api does not use elasticsearch
        assert not [o for o in objects if o["metadata"]["name"].startswith("api-elasticsearch")]


def test_the_ca_copies_wait_for_the_data_stage(example_tree: Rendered) -> None:
    # ECK makes the certificate Secret when the data stage creates the cluster:
    # a copy in an earlier stage would hold that stage (and the data stage) back.
    # The services' copies are in the resources stage; the monitoring stack's
    # (Grafana syncs at the data wave) in the data stage, with the cluster.
    tree = example_tree.tree
    copies = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("elastic/ca.yaml"))
    assert copies
    for path in copies:
        stage = path.split("/")[-3]
        for doc in yaml.safe_load_all((tree / path).read_text()):
            namespace = doc["metadata"]["namespace"]
            assert stage == ("data" if namespace == "monitoring" else "resources"), (path, doc)


def test_no_secret_value_in_the_output(example_tree: Rendered) -> None:
    """Nothing meshctl writes holds a password; no one is handed the superuser."""
    for path in example_tree.tree.rglob("*.yaml"):
        text = path.read_text()
        assert "es-elastic-user" not in text, path
        for doc in yaml.safe_load_all(text):
            _assert_no_password(doc, path)
            if isinstance(doc, dict) and doc.get("kind") == "Secret":
                # The only plain Secret: role definitions, no credential.
                assert doc["metadata"]["name"] == "elasticsearch-roles", path
                assert set(doc["stringData"]) == {"roles.yml"}


_REFERENCE = re.compile(r"\$\{env:[A-Z_]+\}|\$__file\{/[a-z0-9/._-]+\}")


def _assert_no_password(node: Any, path: Path) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if (
                isinstance(key, str)
                and "password" in key.lower()
                and not key.endswith("Key")  # names a key of a Secret (passwordKey)
                and isinstance(value, str)
            ):
                # A reference to a Secret key, an ESO template of a fetched one,
                # or a variable or file a program reads it from (Jaeger's config,
                # Grafana's data source).
                assert value in ("", "password", "{{ .password }}") or _REFERENCE.fullmatch(
                    value
                ), (path, key, value)
            _assert_no_password(value, path)
    elif isinstance(node, list):
        for item in node:
            _assert_no_password(item, path)


def test_elasticsearch_endpoint(
    example_tree: Rendered, rendered_trees: dict[str, Rendered]
) -> None:
    for env in ENVIRONMENTS:
        endpoint = elastic.endpoint(_context(example_tree, env))
        assert endpoint is not None
        assert (endpoint.name, endpoint.namespace, endpoint.host, endpoint.port) == (
            "elasticsearch",
            DATA_NAMESPACE,
            "elasticsearch-es-http.data.svc",
            9200,
        )
        assert endpoint.selectors == (
            {"elasticsearch.k8s.elastic.co/cluster-name": "elasticsearch"},
        )
        assert set(endpoint.peer_ports) == {9200, 9300}
        # Kibana calls Elasticsearch from the data namespace: the network policy needs it.
        assert elastic.kibana_pods(_context(example_tree, env)) == {
            "kibana.k8s.elastic.co/name": "kibana"
        }
    minimal = rendered_trees["minimal"]
    for env in minimal.result.environments:
        assert elastic.endpoint(_context(minimal, env)) is None
        assert elastic.kibana_pods(_context(minimal, env)) is None


def test_eck_operator_is_a_crd_wave_release_watching_the_data_namespace(
    example_tree: Rendered,
) -> None:
    for env in ENVIRONMENTS:
        objects = _objects(example_tree.tree, env)
        app = harness.one(objects, "Application", f"parallel-ai-{env}-eck-operator")
        assert app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "0"
        assert app["spec"]["destination"]["namespace"] == "elastic-system"
        values = _values(example_tree.tree, env, "eck-operator")
        assert values["managedNamespaces"] == [DATA_NAMESPACE]
        assert values["installCRDs"] is True
        redis_app = harness.one(objects, "Application", f"parallel-ai-{env}-redis")
        assert redis_app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "2"
        assert redis_app["spec"]["destination"]["namespace"] == DATA_NAMESPACE


@pytest.mark.parametrize("name", ["kibana", "platform", "fluent-bit"])
def test_a_service_named_like_a_reserved_user_cannot_use_elasticsearch(
    tmp_path: Path, name: str
) -> None:
    # kibana: a built-in user; platform: the prefix of the platform's own indices;
    # fluent-bit: the log shipper's user.
    text = example_spec().read_text().replace("orchestrator", name)
    spec = tmp_path / "platform.yaml"
    spec.write_text(text)
    run = meshctl("validate", cwd=tmp_path)
    assert run.code == 1
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t == f"  - name: {name}")
    assert (
        f"platform.yaml:{line}:11: spec.services[2].name: '{name}' uses elasticsearch, where "
        f"'{name}' is a reserved user or index prefix (each service gets a user and indices of "
        "its own name): rename the service (environments dev, staging, prod)"
    ) in run.stdout
