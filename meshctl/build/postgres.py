"""PostgreSQL through CloudNativePG: the operator, one `Cluster` named
``postgres`` in the data namespace, two PgBouncer `Pooler`s, backups to object
storage, and the credentials of everyone who connects.

Who connects (the *consumers*): Kong, when its database is the platform's
(``gateway.database.mode: postgres`` without a host), and every service with
``postgres`` in ``uses``. Each gets a login role of its own in the application
database (``managed.roles``), whose password lives in the secret store under
one key, read twice: by the role's Secret in the data namespace (what
CloudNativePG sets the password from) and by the consumer's Secret in its own
namespace (what it connects with). See docs/data.md.
"""

from __future__ import annotations

from typing import Any

from msgspec import Struct

from meshctl import layout, models
from meshctl.build import secrets
from meshctl.build.context import (
    CRDS_WAVE,
    BuildContext,
    ComponentOutput,
    Endpoint,
    Manifest,
    Release,
)
from meshctl.dependencies import memory_bytes
from meshctl.errors import RenderError

COMPONENT = "postgres"
OPERATOR_NAMESPACE = "cnpg-system"
OPERATOR_RELEASE = "cloudnative-pg"
CLUSTER = "postgres"
PORT = 5432
STATUS_PORT = 8000  # the instance manager's status endpoint, polled by the operator
METRICS_PORT = 9187  # each instance's Prometheus exporter (port name `metrics`)
POOLER_METRICS_PORT = 9127  # each PgBouncer pod's exporter (port name `metrics`)

OWNER_SECRET = f"{CLUSTER}-app"  # CloudNativePG's own name for the owner's Secret
OBJECT_STORAGE_SECRET = "object-storage"
KONG_ROLE = "kong"
# Kong keeps its tables in a schema of its own inside the application database.
KONG_SCHEMA = "kong"
# Roles CloudNativePG creates itself; a consumer may not take their names.
_OPERATOR_ROLES = ("postgres", "streaming_replica", "cnpg_pooler_pgbouncer")

# PgBouncer: a small, constant footprint (about 2 kB per client connection
# plus a packet buffer per active one); not a profile setting yet.
_POOLER_RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
# The operator watches every Cluster, Pooler, Secret and Pod it owns.
_OPERATOR_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}


def pooler_name(kind: str) -> str:
    """The Pooler (and its Service and Deployment): ``rw`` or ``ro``."""
    return f"{CLUSTER}-pooler-{kind}"


def _host(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.svc"


def role_secret(role: str) -> str:
    """The basic-auth Secret in the data namespace a managed role's password comes from."""
    return f"{CLUSTER}-role-{role}"


def kong_uses_platform_database(settings: models.Settings) -> bool:
    database = settings.gateway.database
    return database.mode == "postgres" and not database.external


class Consumer(Struct, frozen=True):
    """A login role, and the Secret its client reads in its own namespace."""

    role: str
    namespace: str
    secret: str
    description: str
    gateway: bool = False  # Kong (else a service)


def consumers(ctx: BuildContext) -> list[Consumer]:
    """Everyone with a role in the application database: Kong (when its database is
    the platform's), then every service that uses postgres, by name."""
    found = []
    settings = ctx.settings
    if kong_uses_platform_database(settings):
        found.append(
            Consumer(
                KONG_ROLE,
                settings.gateway.namespace,
                f"{KONG_ROLE}-{COMPONENT}",
                "Kong Gateway (meshctl)",
                gateway=True,
            )
        )
    for service in sorted(ctx.spec.services, key=lambda s: s.name):
        if COMPONENT in service.uses:
            found.append(
                Consumer(
                    service.name,
                    service.namespace,
                    f"{service.name}-{COMPONENT}",
                    f"service {service.name} (meshctl)",
                )
            )
    owner = settings.data.postgres.database
    seen: set[str] = set()
    for consumer in found:
        # A service named like the database owner, or `kong` beside a Kong on
        # this database: `validate` should say so at the service's name; until
        # it does, stop rather than render two consumers sharing one role.
        if consumer.role in (owner, *_OPERATOR_ROLES) or consumer.role in seen:
            raise RenderError(
                f"PostgreSQL role '{consumer.role}' is taken (the database owner, an operator "
                "role, or another consumer)"
            )
        seen.add(consumer.role)
    return found


def endpoint(ctx: BuildContext) -> Endpoint | None:
    """Where clients connect (the read-write pooler) and which pods serve them:
    both poolers, and the cluster's pods (Kong and the poolers connect to the
    instances)."""
    data = ctx.settings.data
    if not data.postgres.enabled:
        return None
    return Endpoint(
        name=COMPONENT,
        namespace=data.namespace,
        host=_host(pooler_name("rw"), data.namespace),
        port=PORT,
        selectors=(
            {"cnpg.io/poolerName": pooler_name("rw")},
            {"cnpg.io/poolerName": pooler_name("ro")},
            # Every pod of the cluster: the instances, and the Jobs that create
            # them (initdb, join, recovery: labelled cnpg.io/jobRole, not
            # cnpg.io/podRole), which copy from the primary and the object store.
            {"cnpg.io/cluster": CLUSTER},
        ),
        # Streaming replication and pooler-to-instance traffic; the instance
        # manager's status port.
        peer_ports=(PORT, STATUS_PORT),
        metrics_ports=(METRICS_PORT, POOLER_METRICS_PORT),
        # The instance manager's status and PostgreSQL itself.
        operator=(OPERATOR_NAMESPACE, (STATUS_PORT, PORT)),
    )


def kong_connection(ctx: BuildContext) -> dict[str, Any] | None:
    """Kong's connection to the platform's database (None: Kong uses none, or an external one).

    Kong connects to the cluster's read-write Service, not to the pooler: it sets
    ``SET SCHEMA`` and ``SET TIME ZONE 'UTC'`` once per new server connection,
    session state that PgBouncer's transaction pooling would lose or hand to
    other clients.
    """
    if not kong_uses_platform_database(ctx.settings):
        return None
    data = ctx.settings.data
    return {
        "host": _host(f"{CLUSTER}-rw", data.namespace),
        "port": PORT,
        "database": data.postgres.database,
        "user": KONG_ROLE,
        "schema": KONG_SCHEMA,
        "password_secret": {"name": f"{KONG_ROLE}-{COMPONENT}", "key": "password"},
        # CloudNativePG accepts TLS 1.3 only (ssl_min_protocol_version), and
        # Kong's default pg_ssl_version is tlsv1_2.
        "ssl_version": "tlsv1_3",
    }


def build(ctx: BuildContext) -> ComponentOutput:
    postgres = ctx.settings.data.postgres
    if not postgres.enabled:
        return ComponentOutput()
    resilience = ctx.settings.resilience
    namespace = ctx.settings.data.namespace
    operator_selector = {
        "app.kubernetes.io/name": OPERATOR_RELEASE,
        "app.kubernetes.io/instance": OPERATOR_RELEASE,
    }
    operator = Release(
        OPERATOR_RELEASE,
        "cloudnative-pg",
        OPERATOR_NAMESPACE,
        ctx.render_one(
            "postgres/operator-values.yaml.j2",
            # Failover is the operator's job: a second replica (leader election)
            # keeps it from waiting for a rescheduled pod.
            replicas=2 if resilience.disruption_budgets else 1,
            resources=_OPERATOR_RESOURCES,
            affinity=ctx.affinity(operator_selector),
            topology_spread=ctx.zone_spread(operator_selector),
        ),
        CRDS_WAVE,
        COMPONENT,
    )
    clients = consumers(ctx)
    manifests = _credentials(ctx, clients)
    backup, backup_credentials = _backup(ctx)
    manifests += backup_credentials
    cluster = ctx.render_one(
        "postgres/cluster.yaml.j2",
        name=CLUSTER,
        namespace=namespace,
        postgres=postgres,
        resources=manifest_resources(postgres.resources),
        parameters=_parameters(postgres, clients),
        owner_secret=OWNER_SECRET,
        roles=[
            {
                "name": c.role,
                "ensure": "present",
                "login": True,
                # Members of the owner: they may create and use objects in the
                # application database (PostgreSQL 15+ grants nobody else CREATE).
                "inRoles": [postgres.database],
                "passwordSecret": {"name": role_secret(c.role)},
                "comment": c.description,
            }
            for c in clients
        ],
        alt_dns_names=_pooler_dns_names(namespace),
        affinity=_cluster_affinity(resilience),
        enable_pdb=resilience.disruption_budgets,
        backup=backup,
    )
    manifests.append(Manifest(COMPONENT, "cluster", cluster, stage=layout.DATA))
    manifests += [
        Manifest(COMPONENT, "poolers", doc, stage=layout.DATA)
        for doc in ctx.render(
            "postgres/poolers.yaml.j2",
            cluster=CLUSTER,
            namespace=namespace,
            poolers=_poolers(ctx),
            pooler=postgres.pooler,
            resources=_POOLER_RESOURCES,
            disruption_budgets=resilience.disruption_budgets and postgres.pooler.instances > 1,
        )
    ]
    if backup is not None:
        manifests.append(
            Manifest(
                COMPONENT,
                "backups",
                ctx.render_one(
                    "postgres/scheduled-backup.yaml.j2",
                    name=CLUSTER,
                    namespace=namespace,
                    cluster=CLUSTER,
                    schedule=postgres.backup.schedule,
                ),
                stage=layout.DATA,
            )
        )
    return ComponentOutput(releases=[operator], manifests=manifests)


def manifest_resources(block: models.Resources) -> dict[str, Any]:
    """A resources block for a manifest: amounts that are not set are left out
    (unlike Helm values, a manifest has no chart default to delete)."""
    out: dict[str, Any] = {}
    for kind, amounts in (("requests", block.requests), ("limits", block.limits)):
        set_amounts = {
            k: v for k, v in (("cpu", amounts.cpu), ("memory", amounts.memory)) if v is not None
        }
        if set_amounts:
            out[kind] = set_amounts
    return out


def _reloaded(manifest: Manifest) -> Manifest:
    """Label the Secret an ExternalSecret makes so that CloudNativePG applies a
    changed password at once (unlabelled: at some later reconciliation)."""
    template = manifest.body["spec"]["target"].setdefault("template", {})
    template["metadata"] = {"labels": {"cnpg.io/reload": "true"}}
    return manifest


def _credentials(ctx: BuildContext, clients: list[Consumer]) -> list[Manifest]:
    """The owner's Secret, a Secret per role (data namespace), and each consumer's copy."""
    data = ctx.settings.data
    namespace = data.namespace
    manifests = [
        _reloaded(
            secrets.credential(
                ctx,
                COMPONENT,
                "credentials",
                secrets.Credential(
                    name=OWNER_SECRET,
                    namespace=namespace,
                    properties={"password": "password"},
                    type="kubernetes.io/basic-auth",
                    literals={"username": data.postgres.database},
                ),
            )
        )
    ]
    rw_pooler = _host(pooler_name("rw"), namespace)
    ro_pooler = _host(pooler_name("ro"), namespace)
    for client in clients:
        store_key = secrets.remote_key(ctx, role_secret(client.role))
        manifests.append(
            _reloaded(
                secrets.credential(
                    ctx,
                    COMPONENT,
                    "credentials",
                    secrets.Credential(
                        name=role_secret(client.role),
                        namespace=namespace,
                        properties={"password": "password"},
                        remote=store_key,
                        type="kubernetes.io/basic-auth",
                        literals={"username": client.role},
                    ),
                )
            )
        )
        if client.gateway:
            wanted = secrets.Credential(
                name=client.secret,
                namespace=client.namespace,
                properties={"password": "password"},
                remote=store_key,
            )
            manifests.append(secrets.credential(ctx, "kong", "database", wanted))
            continue
        wanted = secrets.Credential(
            name=client.secret,
            namespace=client.namespace,
            properties={"password": "password"},
            remote=store_key,
            literals={
                "host": rw_pooler,
                "readonly-host": ro_pooler,
                "port": str(PORT),
                "dbname": data.postgres.database,
                "user": client.role,
                "sslmode": "require",
            },
        )
        manifests.append(secrets.credential(ctx, "services", client.role, wanted))
    return manifests


def _backup(ctx: BuildContext) -> tuple[dict[str, Any] | None, list[Manifest]]:
    """The Cluster's `backup` section (in-tree Barman Cloud) and its credentials."""
    data = ctx.settings.data
    backup = data.postgres.backup
    if not backup.enabled:
        return None, []
    storage = data.object_storage
    if storage is None:  # the dependency check refuses this first
        raise RenderError("PostgreSQL backups need data.objectStorage")
    bucket = storage.buckets.backups or f"{ctx.platform.name}-{ctx.environment}-backups"
    store: dict[str, Any] = {
        "destinationPath": f"s3://{bucket}/{ctx.environment}",
        "wal": {"compression": "gzip"},
        "data": {"compression": "gzip"},
    }
    if storage.endpoint:
        store["endpointURL"] = storage.endpoint
    manifests = []
    if storage.credentials == "workloadIdentity":
        store["s3Credentials"] = {"inheritFromIAMRole": True}
    else:
        literals = {"region": storage.region} if storage.region else None
        manifests.append(
            secrets.credential(
                ctx,
                COMPONENT,
                "credentials",
                secrets.Credential(
                    name=OBJECT_STORAGE_SECRET,
                    namespace=data.namespace,
                    properties={
                        "access-key-id": "access-key-id",
                        "secret-access-key": "secret-access-key",
                    },
                    literals=literals,
                ),
            )
        )
        keys = {
            "accessKeyId": "access-key-id",
            "secretAccessKey": "secret-access-key",
            **({"region": "region"} if storage.region else {}),
        }
        store["s3Credentials"] = {
            field: {"name": OBJECT_STORAGE_SECRET, "key": key} for field, key in keys.items()
        }
    return {"retentionPolicy": backup.retention, "barmanObjectStore": store}, manifests


def _parameters(postgres: models.Postgres, clients: list[Consumer]) -> dict[str, str]:
    """postgresql.conf: meshctl's defaults, then the spec's parameters over them."""
    parameters = {
        # CloudNativePG's own default, stated so that a review sees it.
        "ssl_min_protocol_version": "TLSv1.3",
    }
    memory = postgres.resources.limits.memory or postgres.resources.requests.memory
    if memory:
        mib = memory_bytes(memory) // 2**20
        parameters["shared_buffers"] = f"{mib // 4}MB"
        parameters["effective_cache_size"] = f"{mib * 3 // 4}MB"
    # Room for every pooler pod's pool per service role, Kong's own
    # connections, and administration; PostgreSQL's default is 100.
    services = sum(1 for c in clients if not c.gateway)
    needed = postgres.pooler.instances * postgres.pooler.default_pool_size * services + 50
    if any(c.gateway for c in clients):
        needed += 50
    parameters["max_connections"] = str(max(100, -(-needed // 50) * 50))
    return {**parameters, **postgres.parameters}


def _pooler_dns_names(namespace: str) -> list[str]:
    """The poolers' Service names, added to the server certificate PgBouncer also
    presents, so that clients can verify the host they connect to."""
    names = []
    for kind in ("rw", "ro"):
        name = pooler_name(kind)
        names += [name, f"{name}.{namespace}", f"{name}.{namespace}.svc"]
        names.append(f"{name}.{namespace}.svc.cluster.local")
    return names


def _cluster_affinity(resilience: models.Resilience) -> dict[str, Any]:
    """CloudNativePG's own anti-affinity between the instances."""
    if resilience.zone_spread:
        return {
            "enablePodAntiAffinity": True,
            "topologyKey": "topology.kubernetes.io/zone",
            "podAntiAffinityType": "required",
        }
    if resilience.anti_affinity:
        return {
            "enablePodAntiAffinity": True,
            "topologyKey": "kubernetes.io/hostname",
            "podAntiAffinityType": "preferred",
        }
    return {"enablePodAntiAffinity": False}


def _poolers(ctx: BuildContext) -> list[dict[str, Any]]:
    postgres = ctx.settings.data.postgres
    out = []
    for kind in ("rw", "ro"):
        name = pooler_name(kind)
        selector = {"cnpg.io/poolerName": name}
        # A single instance has no replica for `ro` to reach: the read-only
        # pooler then goes to the primary (`r`: any instance).
        service = kind if kind == "rw" or postgres.instances > 1 else "r"
        out.append(
            {
                "name": name,
                "type": service,
                "selector": selector,
                "affinity": ctx.affinity(selector),
                "topology_spread": ctx.zone_spread(selector),
            }
        )
    return out
