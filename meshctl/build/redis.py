"""Redis: the Bitnami `redis` chart (OCI), standalone or replicated under Sentinel.

One release, ``redis``, in the data namespace. Its password never appears in
the output: an ExternalSecret makes the Secret ``redis`` from the store key
``<prefix>/redis`` (property ``password``) and the chart reads it through
``auth.existingSecret``. Every service that ``uses: [redis]`` gets a Secret
``<service>-redis`` in its own namespace from the same store key, with the
connection details next to the password.

Images: since 28 August 2025 Bitnami no longer publishes versioned images of
its free catalog under docker.io/bitnami; the tags this chart pins were moved
to docker.io/bitnamilegacy (frozen, no updates). Every image the chart can
run is pointed there at the chart's own tag, and the chart's check that
refuses substituted images is acknowledged (``allowInsecureImages``). See
docs/data.md.
"""

from __future__ import annotations

from typing import Any

from meshctl import models
from meshctl.build import secrets
from meshctl.build.context import (
    DATA_WAVE,
    BuildContext,
    ComponentOutput,
    Endpoint,
    Manifest,
    Release,
    container_resources,
)

COMPONENT = "redis"
# The release name is also the chart's fullname ("redis" + chart "redis"):
# Services redis-master (standalone), redis (sentinel) and redis-headless.
RELEASE = "redis"
CREDENTIAL = "redis"  # Secret in the data namespace; store key <prefix>/redis
PASSWORD_KEY = "password"
PORT = 6379
SENTINEL_PORT = 26379
EXPORTER_PORT = 9121  # the chart's redis_exporter sidecar
MASTER_SET = "mymaster"  # the chart's sentinel.masterSet

# Chart 23.1.1's images (values.yaml and Chart.yaml `images`), same tags, from
# the Bitnami Legacy repository: docker.io/bitnami no longer serves them.
REGISTRY = "docker.io"
IMAGES: dict[str, tuple[str, str]] = {
    "redis": ("bitnamilegacy/redis", "8.2.1-debian-12-r0"),
    "sentinel": ("bitnamilegacy/redis-sentinel", "8.2.1-debian-12-r0"),
    "metrics": ("bitnamilegacy/redis-exporter", "1.76.0-debian-12-r0"),
    # Off here (root init containers), but a user who turns them on gets an
    # image that pulls.
    "volumePermissions": ("bitnamilegacy/os-shell", "12-debian-12-r51"),
    "sysctl": ("bitnamilegacy/os-shell", "12-debian-12-r51"),
    "kubectl": ("bitnamilegacy/kubectl", "1.33.4-debian-12-r0"),
}

# The chart's pod labels (common.labels.matchLabels): every Redis pod of the
# release carries these; `app.kubernetes.io/component` is master (standalone)
# or node (sentinel: each pod runs redis and sentinel).
POD_LABELS = {"app.kubernetes.io/name": "redis", "app.kubernetes.io/instance": RELEASE}

# The sentinel and exporter sidecars are small and fixed.
SIDECAR_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}


def endpoint(ctx: BuildContext) -> Endpoint | None:
    redis = ctx.settings.data.redis
    if not redis.enabled:
        return None
    namespace = ctx.settings.data.namespace
    sentinel = redis.mode == "sentinel"
    return Endpoint(
        name="redis",
        namespace=namespace,
        host=host(ctx),
        port=PORT,
        selectors=(dict(POD_LABELS),),
        # Replication between the nodes and Sentinel's gossip; one pod alone has no peers.
        peer_ports=(PORT, SENTINEL_PORT) if sentinel else (),
        # A client asks a sentinel for the master, then connects to it.
        extra_client_ports=(SENTINEL_PORT,) if sentinel else (),
        metrics_ports=(EXPORTER_PORT,) if redis.metrics else (),
    )


def host(ctx: BuildContext) -> str:
    """The Service clients connect to: the master (standalone) or every node (sentinel)."""
    service = f"{RELEASE}-master" if ctx.settings.data.redis.mode == "standalone" else RELEASE
    return f"{service}.{ctx.settings.data.namespace}.svc"


def build(ctx: BuildContext) -> ComponentOutput:
    redis = ctx.settings.data.redis
    if not redis.enabled:
        return ComponentOutput()
    namespace = ctx.settings.data.namespace
    values = ctx.render_one("redis/values.yaml.j2", **_values_context(ctx, redis))
    release = Release(RELEASE, "redis", namespace, values, wave=DATA_WAVE, component=COMPONENT)
    manifests = [
        secrets.credential(
            ctx,
            COMPONENT,
            "credentials",
            secrets.Credential(CREDENTIAL, namespace, properties={PASSWORD_KEY: "password"}),
        )
    ]
    manifests.extend(_client_credentials(ctx))
    return ComponentOutput([release], manifests)


def _values_context(ctx: BuildContext, redis: models.Redis) -> dict[str, Any]:
    sentinel = redis.mode == "sentinel"
    resilience = ctx.settings.resilience
    # Sentinel mode runs no master StatefulSet: every pod is a "node" (redis +
    # sentinel) of the replica StatefulSet, replica.replicaCount of them, and
    # Sentinel elects the master among them. master.count stays at the chart's 1
    # (the chart's single-writer model); the master PDB, which the chart still
    # renders with sentinel on, would select no pod and is turned off.
    component = "node" if sentinel else "master"
    selector = {**POD_LABELS, "app.kubernetes.io/component": component}
    persistence: dict[str, Any] = {
        "enabled": redis.persistence.enabled,
        "size": redis.persistence.size,
    }
    if redis.persistence.storage_class:
        persistence["storageClass"] = redis.persistence.storage_class
    return {
        "sentinel": sentinel,
        "images": {
            key: {"registry": REGISTRY, "repository": repository, "tag": tag}
            for key, (repository, tag) in IMAGES.items()
        },
        "secret": CREDENTIAL,
        "password_key": PASSWORD_KEY,
        "replicas": redis.replicas,
        # A majority of the sentinels must agree that the master is down.
        "quorum": redis.replicas // 2 + 1,
        "master_set": MASTER_SET,
        "resources": container_resources(redis.resources),
        "sidecar_resources": SIDECAR_RESOURCES,
        "persistence": persistence,
        "metrics": redis.metrics,
        "disruption_budget": resilience.disruption_budgets,
        # The chart's preset "soft" is a preferred one-pod-per-node rule on the
        # pods' own labels (the same rule as ctx.affinity); "" turns it off.
        "anti_affinity": "soft" if resilience.anti_affinity else "",
        "topology_spread": ctx.zone_spread(selector) or [],
    }


def _client_credentials(ctx: BuildContext) -> list[Manifest]:
    """A Secret `<service>-redis` in each consuming service's namespace."""
    redis = ctx.settings.data.redis
    literals = {"host": host(ctx), "port": str(PORT)}
    if redis.mode == "sentinel":
        literals.update(
            {
                "sentinel-host": host(ctx),
                "sentinel-port": str(SENTINEL_PORT),
                "sentinel-master-set": MASTER_SET,
            }
        )
    remote = secrets.remote_key(ctx, CREDENTIAL)  # the server's key: one password
    return [
        secrets.credential(
            ctx,
            COMPONENT,
            "credentials",
            secrets.Credential(
                f"{service.name}-redis",
                service.namespace,
                properties={PASSWORD_KEY: "password"},
                remote=remote,
                literals=dict(literals),
            ),
        )
        for service in ctx.spec.services
        if "redis" in service.uses
    ]
