"""What an environment's settings need from each other, checked after layering.

A component that holds data needs credentials (hence a secret store), backups
need object storage, a service that uses the data tier needs it enabled.
Each problem names the setting to change, as a settings path (located at the
layer it came from) or a spec path.
"""

from __future__ import annotations

from collections.abc import Iterator

from meshctl import models
from meshctl.validate import DATA_PEERS
from meshctl.yamlio import Path

Need = tuple[Path, str]

# Users Elasticsearch's security features reserve (the others hold '_', which
# service names cannot): a file-realm user of that name would take over the built-in.
ELASTICSEARCH_RESERVED_USERS = ("elastic", "kibana")
# ...and the names of the platform's own users and indices (build/telemetry.py).
ELASTICSEARCH_RESERVED_NAMES = (
    *ELASTICSEARCH_RESERVED_USERS,
    "platform",
    "fluent-bit",
    "jaeger",
    "grafana",
    "log-retention",
    "elasticsearch-exporter",
)
# Below this a JVM-based Elasticsearch node does not start usefully.
ELASTICSEARCH_MIN_HEAP = "256Mi"

_MEMORY_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_MEMORY_UNITS.update({"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40})


def memory_bytes(quantity: str) -> int:
    number = quantity.rstrip("KMGTikmgt")
    return int(number) * _MEMORY_UNITS[quantity[len(number) :]]


def _enabled(data: models.Data, name: str) -> bool:
    component: models.Postgres | models.Redis | models.Elasticsearch = getattr(data, name)
    return component.enabled


def settings_needs(settings: models.Settings) -> Iterator[Need]:
    """Unmet needs between settings, at the settings path to change."""
    if settings.secrets is None:
        for path, what in _store_users(settings):
            yield path, f"{what} come from the secret store: set spec.secrets"
    yield from _postgres_needs(settings)
    yield from _elasticsearch_needs(settings.data.elasticsearch)
    yield from _observability_needs(settings)


def _store_users(settings: models.Settings) -> Iterator[tuple[Path, str]]:
    """What reads from the secret store, at the setting that turns it on."""
    data, observability = settings.data, settings.observability
    if data.postgres.enabled:
        yield ("data", "postgres", "enabled"), "PostgreSQL's passwords"
    if data.redis.enabled:
        yield ("data", "redis", "enabled"), "Redis's password"
    if observability.enabled and observability.grafana:
        yield ("observability", "grafana"), "Grafana's admin credentials"
    if observability.enabled and observability.alerting.receivers:
        yield ("observability", "alerting", "receivers"), "Alertmanager receivers' URLs and keys"
    if observability.enabled and data.elasticsearch.enabled:
        yield ("observability", "enabled"), "the monitoring stack's Elasticsearch passwords"
    if (
        observability.enabled
        and observability.thanos.enabled
        and data.object_storage is not None
        and data.object_storage.credentials == "store"
    ):
        yield ("observability", "thanos", "enabled"), "Thanos' object storage keys"
    if settings.tls.issuer == "ca":
        yield ("tls", "issuer"), "the CA's key"


def _postgres_needs(settings: models.Settings) -> Iterator[Need]:
    data = settings.data
    postgres = data.postgres
    database = settings.gateway.database
    if postgres.enabled and postgres.backup.enabled and data.object_storage is None:
        # Located at the spec's switch: backups are usually on by profile.
        yield (
            ("data", "postgres", "enabled"),
            "PostgreSQL backups (data.postgres.backup) go to object storage: "
            "set data.objectStorage, or turn backups off",
        )
    if database.mode == "postgres" and not database.external:
        if not postgres.enabled:
            yield (
                ("gateway", "database", "mode"),
                "Kong in postgres mode without a host uses the platform's PostgreSQL: "
                "enable data.postgres, or set gateway.database.host",
            )
        if not database.ssl:
            yield (
                ("gateway", "database", "ssl"),
                "the platform's PostgreSQL accepts TLS connections only: set ssl to true",
            )


def _elasticsearch_needs(elastic: models.Elasticsearch) -> Iterator[Need]:
    if not elastic.enabled:
        return
    if memory_bytes(elastic.heap) < memory_bytes(ELASTICSEARCH_MIN_HEAP):
        yield (
            ("data", "elasticsearch", "heap"),
            f"heap {elastic.heap} is too small for Elasticsearch (at least "
            f"{ELASTICSEARCH_MIN_HEAP})",
        )
    limit = elastic.resources.limits.memory
    if limit and memory_bytes(elastic.heap) * 2 > memory_bytes(limit):
        yield (
            ("data", "elasticsearch", "heap"),
            f"heap {elastic.heap} is more than half the memory limit {limit}; "
            "Elasticsearch needs the rest for the file-system cache",
        )


def _observability_needs(settings: models.Settings) -> Iterator[Need]:
    observability, data = settings.observability, settings.data
    if not observability.enabled:
        return
    if observability.thanos.enabled and data.object_storage is None:
        yield (
            ("observability", "thanos", "enabled"),
            "Thanos keeps metrics in object storage: set data.objectStorage, or turn Thanos off",
        )
    retention = observability.thanos.retention
    if observability.thanos.enabled and not (
        duration_hours(retention.raw)
        <= duration_hours(retention.five_minutes)
        <= duration_hours(retention.one_hour)
    ):
        yield (
            ("observability", "thanos", "retention"),
            f"raw ({retention.raw}) <= fiveMinutes ({retention.five_minutes}) <= oneHour "
            f"({retention.one_hour}) is needed: a coarser resolution is made from a finer one "
            "and must outlive it",
        )
    for feature, what in (("tracing", "Jaeger stores spans"), ("logs", "Fluent Bit ships logs")):
        if getattr(observability, feature).enabled and not data.elasticsearch.enabled:
            yield (
                ("observability", feature, "enabled"),
                f"{what} in Elasticsearch: set data.elasticsearch.enabled, or turn "
                f"observability.{feature} off",
            )


_HOURS = {"h": 1, "d": 24, "w": 24 * 7, "y": 24 * 365}


def duration_hours(retention: str) -> int:
    """A retention (30d, 12h, 2w, 1y) in hours."""
    return int(retention[:-1]) * _HOURS[retention[-1]]


# The ports the Istio sidecar (Envoy and istio-agent) uses in every pod
# (istio.io, "Application Requirements", Ports used by Istio).
SIDECAR_PORTS = (15000, 15001, 15004, 15006, 15008, 15009, 15020, 15021, 15053, 15090)


def metrics_port_conflict(service: models.Service) -> str | None:
    """Why the service's metrics port cannot be opened to plain text, if it cannot."""
    metrics = service.metrics
    if metrics is None:
        return None
    if metrics.port == service.port:
        return (
            f"{metrics.port} is the service's own port: serve metrics on a port of their own "
            "(Prometheus scrapes in plain text, and only the metrics port is let out of mTLS)"
        )
    if metrics.port in SIDECAR_PORTS:
        return (
            f"{metrics.port} is a port of the Istio sidecar "
            f"({', '.join(map(str, SIDECAR_PORTS))}): serve metrics on another port"
        )
    return None


def service_needs(settings: models.Settings, spec: models.PlatformSpec) -> Iterator[Need]:
    """Services that use a data component the environment does not run, at spec paths."""
    for index, service in enumerate(spec.services):
        conflict = metrics_port_conflict(service)
        if conflict is not None:
            yield ("spec", "services", index, "metrics", "port"), conflict
        if (
            "elasticsearch" in service.uses
            and service.name in ELASTICSEARCH_RESERVED_NAMES
            and settings.data.elasticsearch.enabled
        ):
            yield (
                ("spec", "services", index, "name"),
                f"'{service.name}' uses elasticsearch, where '{service.name}' is a reserved "
                "user or index prefix (each service gets a user and indices of its own name): "
                "rename the service",
            )
        if "postgres" in service.uses and settings.data.postgres.enabled:
            taken = _postgres_role_owner(settings, service.name)
            if taken:
                yield (
                    ("spec", "services", index, "name"),
                    f"'{service.name}' uses postgres, whose role '{service.name}' is {taken}: "
                    "rename the service",
                )
        for j, target in enumerate(service.uses):
            if target in DATA_PEERS and not _enabled(settings.data, target):
                yield (
                    ("spec", "services", index, "uses", j),
                    f"'{service.name}' uses {target}, which is not enabled: "
                    f"set data.{target}.enabled",
                )


def _postgres_role_owner(settings: models.Settings, role: str) -> str | None:
    """Who else holds the PostgreSQL role a service of this name would get."""
    database = settings.gateway.database
    if role == settings.data.postgres.database:
        return "the database owner (data.postgres.database)"
    if role == "kong" and database.mode == "postgres" and not database.external:
        return "Kong's"
    return None
