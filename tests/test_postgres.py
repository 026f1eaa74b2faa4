"""PostgreSQL through CloudNativePG, as a cluster would receive it: the built
overlays of the example and of tests/cases/valid/platform-postgres (Kong on
the platform's database), and the external-database case beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from meshctl.build import postgres
from meshctl.build.context import BuildContext

import harness
from conftest import Rendered, meshctl

ENVIRONMENTS = ("dev", "staging", "prod")


def _objects(rendered: Rendered, env: str) -> list[dict[str, Any]]:
    return harness.kustomize_build(rendered.tree / "overlays" / env)


def _of(objects: list[dict[str, Any]], kind: str, api: str = "") -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and o["apiVersion"].startswith(api)]


def _cluster(rendered: Rendered, env: str) -> dict[str, Any]:
    (cluster,) = _of(_objects(rendered, env), "Cluster", "postgresql.cnpg.io/")
    return cluster


def _values(rendered: Rendered, env: str, release: str) -> dict[str, Any]:
    path = rendered.tree / f"overlays/{env}/values/{release}.yaml"
    return yaml.safe_load(path.read_text())  # type: ignore[no-any-return]


def _external_secrets(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o
        for o in _of(objects, "ExternalSecret", "external-secrets.io/v1")
    }


def _remote_keys(external_secret: dict[str, Any]) -> dict[str, str]:
    """Secret key -> store key (only the keys fetched from the store)."""
    return {d["secretKey"]: d["remoteRef"]["key"] for d in external_secret["spec"]["data"]}


@pytest.fixture(scope="module")
def example(rendered_trees: dict[str, Rendered]) -> Rendered:
    return rendered_trees["example"]


@pytest.fixture(scope="module")
def platform_db(rendered_trees: dict[str, Rendered]) -> Rendered:
    return rendered_trees["platform-postgres"]


# -- the cluster --------------------------------------------------------------


@pytest.mark.parametrize(("env", "instances"), [("dev", 1), ("staging", 2), ("prod", 3)])
def test_instances_follow_the_profile(example: Rendered, env: str, instances: int) -> None:
    cluster = _cluster(example, env)
    assert cluster["metadata"] == {
        "name": "postgres",
        "namespace": "data",
        "labels": cluster["metadata"]["labels"],
    }
    spec = cluster["spec"]
    assert spec["instances"] == instances
    assert spec["enableSuperuserAccess"] is False
    assert spec["bootstrap"]["initdb"] == {
        "database": "app",
        "owner": "app",
        "secret": {"name": "postgres-app"},
        "dataChecksums": True,
    }


def test_prod_pins_its_image_storage_class_and_wal_volume(example: Rendered) -> None:
    prod = _cluster(example, "prod")["spec"]
    assert prod["imageName"] == "ghcr.io/cloudnative-pg/postgresql:17.6"
    assert prod["storage"] == {"size": "100Gi", "storageClass": "gp3"}
    assert prod["walStorage"] == {"size": "20Gi"}
    assert prod["resources"] == {
        "requests": {"cpu": "2", "memory": "8Gi"},
        "limits": {"memory": "8Gi"},
    }
    dev = _cluster(example, "dev")["spec"]
    assert "imageName" not in dev  # the operator's default
    assert "walStorage" not in dev


def test_connections_need_tls_13(example: Rendered) -> None:
    for env in ENVIRONMENTS:
        postgresql = _cluster(example, env)["spec"]["postgresql"]
        assert postgresql["parameters"]["ssl_min_protocol_version"] == "TLSv1.3"
        assert postgresql["pg_hba"] == ["hostnossl all all all reject"]


def test_parameters_size_memory_and_connections_and_the_spec_wins(
    example: Rendered, platform_db: Rendered
) -> None:
    prod = _cluster(example, "prod")["spec"]["postgresql"]["parameters"]
    assert prod["shared_buffers"] == "2048MB"  # a quarter of 8Gi
    assert prod["effective_cache_size"] == "6144MB"
    # 3 pooler pods x 20 server connections x 2 service roles, plus headroom.
    assert prod["max_connections"] == "200"
    assert _cluster(example, "dev")["spec"]["postgresql"]["parameters"]["max_connections"] == "100"
    overridden = _cluster(platform_db, "prod")["spec"]["postgresql"]["parameters"]
    assert overridden["max_connections"] == "400"
    assert overridden["work_mem"] == "16MB"


def test_pooler_names_are_in_the_server_certificate(example: Rendered) -> None:
    names = _cluster(example, "prod")["spec"]["certificates"]["serverAltDNSNames"]
    assert "postgres-pooler-rw.data.svc" in names
    assert "postgres-pooler-ro.data.svc.cluster.local" in names


# -- resilience ---------------------------------------------------------------


def test_prod_requires_one_instance_per_zone_and_keeps_disruption_budgets(
    example: Rendered,
) -> None:
    spec = _cluster(example, "prod")["spec"]
    assert spec["affinity"] == {
        "enablePodAntiAffinity": True,
        "topologyKey": "topology.kubernetes.io/zone",
        "podAntiAffinityType": "required",
    }
    assert spec["enablePDB"] is True
    staging = _cluster(example, "staging")["spec"]
    assert staging["affinity"] == {
        "enablePodAntiAffinity": True,
        "topologyKey": "kubernetes.io/hostname",
        "podAntiAffinityType": "preferred",
    }
    assert staging["enablePDB"] is True
    dev = _cluster(example, "dev")["spec"]
    # A single instance with a PDB would block every node drain.
    assert dev["enablePDB"] is False
    assert dev["affinity"] == {"enablePodAntiAffinity": False}


def test_prod_poolers_spread_and_have_disruption_budgets(example: Rendered) -> None:
    objects = _objects(example, "prod")
    budgets = {b["metadata"]["name"]: b for b in _of(objects, "PodDisruptionBudget")}
    for kind in ("rw", "ro"):
        name = f"postgres-pooler-{kind}"
        assert budgets[name]["metadata"]["namespace"] == "data"
        assert budgets[name]["spec"] == {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {"cnpg.io/poolerName": name}},
        }
        template = harness.one(objects, "Pooler", name)["spec"]["template"]["spec"]
        term = template["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"
        ][0]["podAffinityTerm"]
        assert term["labelSelector"] == {"matchLabels": {"cnpg.io/poolerName": name}}
        assert template["topologySpreadConstraints"][0]["topologyKey"] == (
            "topology.kubernetes.io/zone"
        )
    dev = _objects(example, "dev")
    assert not [b for b in _of(dev, "PodDisruptionBudget") if "pooler" in b["metadata"]["name"]]


# -- poolers ------------------------------------------------------------------


@pytest.mark.parametrize(("env", "instances"), [("dev", 1), ("staging", 2), ("prod", 3)])
def test_two_poolers_per_environment(example: Rendered, env: str, instances: int) -> None:
    poolers = {p["metadata"]["name"]: p for p in _of(_objects(example, env), "Pooler")}
    assert sorted(poolers) == ["postgres-pooler-ro", "postgres-pooler-rw"]
    for pooler in poolers.values():
        spec = pooler["spec"]
        assert pooler["metadata"]["namespace"] == "data"
        assert spec["cluster"] == {"name": "postgres"}
        assert spec["instances"] == instances
        assert spec["pgbouncer"] == {
            "poolMode": "transaction",
            "parameters": {
                "max_client_conn": "1000",
                "default_pool_size": "20",
                "client_tls_sslmode": "require",
            },
        }
        (container,) = spec["template"]["spec"]["containers"]
        assert container["name"] == "pgbouncer"
        assert container["resources"]["requests"] and container["resources"]["limits"]
    assert poolers["postgres-pooler-rw"]["spec"]["type"] == "rw"
    # A single instance has no replica: the read-only pooler reaches the primary.
    assert poolers["postgres-pooler-ro"]["spec"]["type"] == ("r" if instances == 1 else "ro")


def test_pooler_settings_come_from_the_spec(platform_db: Rendered) -> None:
    staging = harness.one(_objects(platform_db, "staging"), "Pooler", "postgres-pooler-rw")
    assert staging["spec"]["pgbouncer"]["poolMode"] == "session"
    prod = harness.one(_objects(platform_db, "prod"), "Pooler", "postgres-pooler-ro")
    assert prod["spec"]["instances"] == 4
    assert prod["spec"]["pgbouncer"]["parameters"]["default_pool_size"] == "25"


# -- backups ------------------------------------------------------------------


@pytest.mark.parametrize(("env", "retention"), [("staging", "14d"), ("prod", "30d")])
def test_staging_and_prod_archive_wal_and_take_base_backups(
    example: Rendered, env: str, retention: str
) -> None:
    objects = _objects(example, env)
    (cluster,) = _of(objects, "Cluster", "postgresql.cnpg.io/")
    backup = cluster["spec"]["backup"]
    assert backup["retentionPolicy"] == retention
    store = backup["barmanObjectStore"]
    assert store["destinationPath"] == f"s3://parallel-ai-{env}-backups/{env}"
    assert store["endpointURL"] == "https://s3.eu-west-1.amazonaws.com"
    assert store["s3Credentials"] == {
        "accessKeyId": {"name": "object-storage", "key": "access-key-id"},
        "secretAccessKey": {"name": "object-storage", "key": "secret-access-key"},
        "region": {"name": "object-storage", "key": "region"},
    }
    credentials = _external_secrets(objects)[("data", "object-storage")]
    assert _remote_keys(credentials) == {
        "access_key_id": f"parallel-ai/{env}/object-storage",
        "secret_access_key": f"parallel-ai/{env}/object-storage",
    }
    template = credentials["spec"]["target"]["template"]["data"]
    assert template["region"] == "eu-west-1"
    assert template["access-key-id"] == "{{ .access_key_id }}"
    (scheduled,) = _of(objects, "ScheduledBackup")
    assert scheduled["metadata"]["namespace"] == "data"
    assert scheduled["spec"] == {
        "cluster": {"name": "postgres"},
        "schedule": "0 0 3 * * *",
        "method": "barmanObjectStore",
        "immediate": True,
        "backupOwnerReference": "self",
    }


def test_dev_has_no_backups(example: Rendered) -> None:
    objects = _objects(example, "dev")
    assert "backup" not in _cluster(example, "dev")["spec"]
    assert not _of(objects, "ScheduledBackup")
    assert ("data", "object-storage") not in _external_secrets(objects)


def test_backups_with_workload_identity_and_a_named_bucket(platform_db: Rendered) -> None:
    objects = _objects(platform_db, "prod")
    (cluster,) = _of(objects, "Cluster", "postgresql.cnpg.io/")
    backup = cluster["spec"]["backup"]
    assert backup == {
        "retentionPolicy": "6w",
        "barmanObjectStore": {
            "destinationPath": "s3://ledger-pg-backups/prod",
            "s3Credentials": {"inheritFromIAMRole": True},
            "wal": {"compression": "gzip"},
            "data": {"compression": "gzip"},
        },
    }
    assert ("databases", "object-storage") not in _external_secrets(objects)
    assert harness.one(objects, "ScheduledBackup", "postgres")["spec"]["schedule"] == "0 30 1 * * *"


# -- roles and credentials -------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "namespace", "owner", "consumers"),
    [
        ("example", "data", "app", {"api": "ai-api", "orchestrator": "ai-jobs"}),
        (
            "platform-postgres",
            "databases",
            "ledger",
            {"kong": "edge", "payments-api": "payments", "reports": "reporting"},
        ),
    ],
)
def test_a_role_for_exactly_the_consumers(
    rendered_trees: dict[str, Rendered],
    case: str,
    namespace: str,
    owner: str,
    consumers: dict[str, str],
) -> None:
    rendered = rendered_trees[case]
    platform = rendered.result.platform.name
    for env in ENVIRONMENTS:
        objects = _objects(rendered, env)
        (cluster,) = _of(objects, "Cluster", "postgresql.cnpg.io/")
        roles = {r["name"]: r for r in cluster["spec"]["managed"]["roles"]}
        assert sorted(roles) == sorted(consumers)
        secrets = _external_secrets(objects)
        for role, consumer_namespace in consumers.items():
            assert roles[role]["login"] is True
            assert roles[role]["ensure"] == "present"
            assert roles[role]["inRoles"] == [owner]
            secret_name = roles[role]["passwordSecret"]["name"]
            assert secret_name == f"postgres-role-{role}"
            role_secret = secrets[(namespace, secret_name)]
            template = role_secret["spec"]["target"]["template"]
            # What CloudNativePG requires of a role's password Secret.
            assert template["type"] == "kubernetes.io/basic-auth"
            assert template["data"]["username"] == role
            assert template["metadata"] == {"labels": {"cnpg.io/reload": "true"}}
            store_key = f"{platform}/{env}/postgres-role-{role}"
            assert _remote_keys(role_secret) == {"password": store_key}
            # The consumer's copy reads the same store key, in its own namespace.
            copy = secrets[(consumer_namespace, f"{role}-postgres")]
            assert _remote_keys(copy) == {"password": store_key}
        owner_secret = secrets[(namespace, "postgres-app")]
        assert owner_secret["spec"]["target"]["template"]["data"]["username"] == owner
        assert _remote_keys(owner_secret) == {"password": f"{platform}/{env}/postgres-app"}


def test_services_get_their_connection_in_their_namespace(platform_db: Rendered) -> None:
    secrets = _external_secrets(_objects(platform_db, "prod"))
    secret = secrets[("payments", "payments-api-postgres")]
    data = secret["spec"]["target"]["template"]["data"]
    assert data == {
        "host": "postgres-pooler-rw.databases.svc",
        "readonly-host": "postgres-pooler-ro.databases.svc",
        "port": "5432",
        "dbname": "ledger",
        "user": "payments-api",
        "sslmode": "require",
        "password": "{{ .password }}",
    }
    assert ("reporting", "audit-postgres") not in secrets  # audit uses no database


def _postgres_related(obj: dict[str, Any]) -> bool:
    name = obj["metadata"]["name"]
    return "postgres" in name or name == "object-storage"


def test_no_secret_value_anywhere(rendered_trees: dict[str, Rendered]) -> None:
    """Only ExternalSecrets: no Secret object, and every password is fetched."""
    for rendered in rendered_trees.values():
        for env in rendered.result.environments:
            objects = _objects(rendered, env)
            assert not [s for s in _of(objects, "Secret") if _postgres_related(s)]
            for secret in filter(_postgres_related, _of(objects, "ExternalSecret")):
                template = secret["spec"]["target"].get("template", {}).get("data", {})
                fetched = {d["secretKey"] for d in secret["spec"]["data"]}
                for key, value in template.items():
                    if "password" in key or "secret" in key:
                        assert value.startswith("{{ ."), (rendered.name, env, key)
                assert "password" in fetched or "secret_access_key" in fetched


# -- Kong ---------------------------------------------------------------------


def test_kong_connects_to_the_primary_over_tls(platform_db: Rendered) -> None:
    for env in ENVIRONMENTS:
        env_values = _values(platform_db, env, "kong")["env"]
        assert env_values["database"] == "postgres"
        # The read-write Service, not the transaction pooler (session state).
        assert env_values["pg_host"] == "postgres-rw.databases.svc"
        assert env_values["pg_port"] == "5432"
        assert env_values["pg_database"] == "ledger"
        assert env_values["pg_schema"] == "kong"
        assert env_values["pg_user"] == "kong"
        assert env_values["pg_password"] == {
            "valueFrom": {"secretKeyRef": {"name": "kong-postgres", "key": "password"}}
        }
        assert env_values["pg_ssl"] == "on"
        assert env_values["pg_ssl_required"] == "on"
        assert env_values["pg_ssl_version"] == "tlsv1_3"
        assert env_values["pg_ssl_verify"] == "off"
        assert "lua_ssl_trusted_certificate" not in env_values
        objects = _objects(platform_db, env)
        copy = _external_secrets(objects)[("edge", "kong-postgres")]
        assert _remote_keys(copy) == {"password": f"ledger/{env}/postgres-role-kong"}


def test_kong_on_an_external_database_is_unchanged(rendered_trees: dict[str, Rendered]) -> None:
    rendered = rendered_trees["postgres-gateway"]
    env_values = _values(rendered, "prod", "kong")["env"]
    assert env_values["pg_host"] == "kong-db-rw.edge.svc.cluster.local"
    assert env_values["pg_ssl_verify"] == "on"
    assert env_values["lua_ssl_trusted_certificate"] == "system,/etc/secrets/kong-db-ca/ca.crt"
    assert "pg_schema" not in env_values
    assert not _of(_objects(rendered, "prod"), "Cluster", "postgresql.cnpg.io/")


def test_dbless_kong_has_no_role(example: Rendered) -> None:
    env_values = _values(example, "prod", "kong")["env"]
    assert env_values["database"] == "off"
    assert not [k for k in env_values if k.startswith("pg_")]


# -- the operator -------------------------------------------------------------


def test_operator_release(example: Rendered) -> None:
    for env, replicas in (("dev", 1), ("prod", 2)):
        apps = {a["metadata"]["name"]: a for a in _of(_objects(example, env), "Application")}
        app = apps[f"parallel-ai-{env}-cloudnative-pg"]
        assert app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "0"
        assert app["spec"]["destination"]["namespace"] == "cnpg-system"
        chart = next(s for s in app["spec"]["sources"] if "chart" in s)
        assert (chart["chart"], chart["targetRevision"]) == ("cloudnative-pg", "0.29.0")
        values = _values(example, env, "cloudnative-pg")
        assert values["replicaCount"] == replicas
        # No PodMonitor until the Prometheus Operator's CRDs are installed.
        assert values["monitoring"]["podMonitorEnabled"] is False
        assert values["resources"]["requests"] and values["resources"]["limits"]["memory"]


def test_cluster_poolers_and_backups_sync_in_the_data_stage(example: Rendered) -> None:
    folder = example.tree / "overlays/prod/data/postgres"
    assert sorted(p.name for p in folder.iterdir()) == [
        "backups.yaml",
        "cluster.yaml",
        "poolers.yaml",
    ]
    credentials = example.tree / "overlays/prod/foundation/postgres/credentials.yaml"
    assert credentials.is_file()


# -- endpoint -----------------------------------------------------------------


def test_endpoint_names_the_pods_and_ports(example: Rendered) -> None:
    platform = example.result.platform
    endpoint = postgres.endpoint(BuildContext(platform, platform.environments["prod"]))
    assert endpoint is not None
    assert endpoint.name == "postgres"
    assert endpoint.namespace == "data"
    assert endpoint.host == "postgres-pooler-rw.data.svc"
    assert endpoint.port == 5432
    assert endpoint.selectors == (
        {"cnpg.io/poolerName": "postgres-pooler-rw"},
        {"cnpg.io/poolerName": "postgres-pooler-ro"},
        {"cnpg.io/cluster": "postgres"},
    )
    assert endpoint.peer_ports == (5432, 8000)


def test_no_endpoint_and_nothing_rendered_when_disabled(
    rendered_trees: dict[str, Rendered],
) -> None:
    rendered = rendered_trees["minimal"]
    platform = rendered.result.platform
    ctx = BuildContext(platform, platform.environments["dev"])
    assert postgres.endpoint(ctx) is None
    assert postgres.build(ctx).releases == []
    assert not Path(rendered.tree / "overlays/dev/data/postgres").exists()


CLASH = (
    "apiVersion: meshctl.io/v1alpha1\nkind: Platform\nmetadata: {name: clash}\n"
    "spec:\n  domain: clash.example.com\n"
    "  gitops: {engine: argocd, repoURL: https://example.com/g.git}\n"
    "  environments: {dev: {profile: dev}, prod: {profile: prod, cluster: {name: prod}}}\n"
    "  secrets: {store: {provider: vault, vault: {server: https://vault.example.com, "
    "role: eso}}}\n"
    "  data:\n"
    "    objectStorage: {endpoint: https://s3.example.com}\n"
    "    postgres: {enabled: true, database: app}\n"
    "  gateway: {database: {mode: postgres}}\n"
    "  services:\n  - {name: app, namespace: shop, port: 80, uses: [postgres]}\n"
)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "",
            "",
            "platform.yaml:14:12: spec.services[0].name: 'app' uses postgres, whose role 'app' "
            "is the database owner (data.postgres.database): rename the service",
        ),
        (
            "name: app, namespace",
            "name: kong, namespace",
            "platform.yaml:14:12: spec.services[0].name: 'kong' uses postgres, whose role "
            "'kong' is Kong's: rename the service",
        ),
        (
            "{mode: postgres}",
            "{mode: postgres, ssl: false}",
            "platform.yaml:12:45: spec.gateway.database.ssl: the platform's PostgreSQL accepts "
            "TLS connections only: set ssl to true",
        ),
        (
            "database: app}",
            "database: app, parameters: {ssl_min_protocol_version: TLSv1.1}}",
            "spec.data.postgres.parameters.ssl_min_protocol_version: PostgreSQL accepts TLSv1.1; "
            "production requires TLSv1.2 or TLSv1.3 (environment prod, policy tls-min-version",
        ),
    ],
)
def test_validate_refuses_what_postgres_cannot_render(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    (tmp_path / "platform.yaml").write_text(CLASH.replace(old, new) if old else CLASH)
    run = meshctl("validate", cwd=tmp_path)
    assert run.code == 1
    assert message in run.stdout, run.stdout


def test_the_jobs_that_build_replicas_are_inside_the_clusters_policy(
    example_tree: Rendered,
) -> None:
    """CloudNativePG's join/initdb/recovery Jobs carry cnpg.io/cluster and
    cnpg.io/jobRole but no cnpg.io/podRole: a replica is a pg_basebackup from the
    primary, so the policy that admits the primary's peers must select them."""
    from test_network import parse_selector  # the test suite's Calico selector reader

    job_pod = {
        "cnpg.io/cluster": "postgres",
        "cnpg.io/instanceName": "postgres-2",
        "cnpg.io/jobRole": "join",
    }
    for env in ("staging", "prod"):
        policy = harness.one(_objects(example_tree, env), "NetworkPolicy", "postgres")
        alternatives = parse_selector(policy["spec"]["selector"])
        assert any(all(job_pod.get(k) == v for k, v in alt) for alt in alternatives)
