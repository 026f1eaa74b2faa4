"""Long-term metrics: Thanos.

Prometheus (kube-prometheus-stack) runs the Thanos sidecar, which uploads each
two-hour block to the bucket ``data.objectStorage.buckets.metrics`` (default
``<platform>-<env>-metrics``) and serves recent data over gRPC; the
``thanos-discovery`` headless Service of the chart lets the query find every
sidecar. The Bitnami ``thanos`` chart runs:

- the query (``thanos-query``, HTTP 9090): one PromQL view over the sidecars
  and the store gateway, merging the Prometheus replicas' copies
  (``prometheus_replica``) and reading downsampled blocks for long ranges.
  Grafana's default data source points at it when Thanos is on;
- the store gateway: serves the blocks in the bucket (index cache on a volume);
- the compactor (one replica: it must be the bucket's only writer of
  compactions): compacts, deduplicates, downsamples (5m after 40 h, 1h after
  10 days) and deletes each resolution after its retention (prod: raw 30 days,
  5-minute 90 days, 1-hour 180 days).

All of them and the sidecar read one ``objstore.yml`` from the Secret
``thanos-objstore``: made by an ExternalSecret from the same store key as
PostgreSQL's backups (``<prefix>/object-storage``, properties
``access-key-id`` and ``secret-access-key``), or, with workload identity, a
plain Secret without keys (the AWS SDK's credential chain: IRSA and the like).
Every series carries the external labels ``platform`` and ``environment`` so
that buckets shared between environments never mix blocks.

The release is at the data wave, with kube-prometheus-stack: the objstore
Secret comes from the foundation stage.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from meshctl import layout, models, yamlio
from meshctl.build import postgres, secrets
from meshctl.build.context import (
    DATA_WAVE,
    BuildContext,
    ComponentOutput,
    Manifest,
    Release,
    container_resources,
)
from meshctl.build.telemetry import Monitor
from meshctl.errors import RenderError

COMPONENT = "thanos"
RELEASE = "thanos"
OBJSTORE_SECRET = "thanos-objstore"
OBJSTORE_KEY = "objstore.yml"
# Thanos' own image at the chart's app version.
IMAGE = {"registry": "quay.io", "repository": "thanos/thanos", "tag": "v0.39.2"}
QUERY_SERVICE = f"{RELEASE}-query"
QUERY_HTTP_PORT = 9090
# kube-prometheus-stack's headless Service for the sidecars (release name
# `kube-prometheus-stack`, which the chart uses as its full name).
SIDECARS_SERVICE = "kube-prometheus-stack-thanos-discovery"
PODS = {"app.kubernetes.io/name": "thanos", "app.kubernetes.io/instance": RELEASE}
METRICS_PORT = "http"  # 10902 on the query, store gateway and compactor containers


def enabled(ctx: BuildContext) -> bool:
    observability = ctx.settings.observability
    return observability.enabled and observability.thanos.enabled


def query_url(ctx: BuildContext) -> str:
    namespace = ctx.settings.observability.namespace
    return f"http://{QUERY_SERVICE}.{namespace}.svc:{QUERY_HTTP_PORT}"


def external_labels(ctx: BuildContext) -> dict[str, str]:
    return {"platform": ctx.platform.name, "environment": ctx.environment}


def bucket(ctx: BuildContext) -> str:
    storage = _storage(ctx)
    return storage.buckets.metrics or f"{ctx.platform.name}-{ctx.environment}-metrics"


def _storage(ctx: BuildContext) -> models.ObjectStorage:
    storage = ctx.settings.data.object_storage
    if storage is None:  # the dependency check refuses this first
        raise RenderError("Thanos needs data.objectStorage")
    return storage


def objstore_config(ctx: BuildContext) -> dict[str, Any]:
    """objstore.yml (https://thanos.io/tip/thanos/storage.md/#s3), keys as
    External Secrets template references when they come from the store."""
    storage = _storage(ctx)
    config: dict[str, Any] = {"bucket": bucket(ctx)}
    if storage.endpoint:
        url = urlsplit(storage.endpoint)
        config["endpoint"] = url.netloc
    else:
        config["endpoint"] = (
            f"s3.{storage.region}.amazonaws.com" if storage.region else "s3.amazonaws.com"
        )
    if storage.region:
        config["region"] = storage.region
    if storage.credentials == "store":
        config["access_key"] = "{{ .access_key_id }}"
        config["secret_key"] = "{{ .secret_access_key }}"
    else:
        config["aws_sdk_auth"] = True
    return {"type": "S3", "config": config}


def _objstore_secret(ctx: BuildContext) -> Manifest:
    storage = _storage(ctx)
    namespace = ctx.settings.observability.namespace
    text = yamlio.dump(objstore_config(ctx))
    if storage.credentials == "store":
        return secrets.credential(
            ctx,
            COMPONENT,
            "credentials",
            secrets.Credential(
                OBJSTORE_SECRET,
                namespace,
                properties={
                    "access-key-id": "access-key-id",
                    "secret-access-key": "secret-access-key",
                },
                remote=secrets.remote_key(ctx, postgres.OBJECT_STORAGE_SECRET),
                literals={OBJSTORE_KEY: text},
            ),
        )
    body = ctx.render_one(
        "thanos/objstore-secret.yaml.j2",
        name=OBJSTORE_SECRET,
        namespace=namespace,
        key=OBJSTORE_KEY,
        text=text,
    )
    return Manifest(COMPONENT, "credentials", body, stage=layout.FOUNDATION)


def _persistence(volume: models.Volume) -> dict[str, Any]:
    persistence: dict[str, Any] = {"enabled": True, "size": volume.size}
    if volume.storage_class:
        persistence["storageClass"] = volume.storage_class
    return persistence


def build(ctx: BuildContext) -> ComponentOutput:
    if not enabled(ctx):
        return ComponentOutput()
    thanos = ctx.settings.observability.thanos
    namespace = ctx.settings.observability.namespace
    resilience = ctx.settings.resilience
    query_pods = {**PODS, "app.kubernetes.io/component": "query"}
    store_pods = {**PODS, "app.kubernetes.io/component": "storegateway"}
    values = ctx.render_one(
        "thanos/values.yaml.j2",
        image=IMAGE,
        thanos=thanos,
        namespace=namespace,
        objstore_secret=OBJSTORE_SECRET,
        objstore_key=OBJSTORE_KEY,
        sidecars_service=SIDECARS_SERVICE,
        anti_affinity="soft" if resilience.anti_affinity else "",
        query_resources=container_resources(thanos.query.resources),
        query_spread=ctx.zone_spread(query_pods) or [],
        query_budget=resilience.disruption_budgets and thanos.query.replicas > 1,
        store_resources=container_resources(thanos.store_gateway.resources),
        store_persistence=_persistence(thanos.store_gateway.storage),
        store_spread=ctx.zone_spread(store_pods) or [],
        store_budget=resilience.disruption_budgets and thanos.store_gateway.replicas > 1,
        compactor_resources=container_resources(thanos.compactor.resources),
        compactor_persistence=_persistence(thanos.compactor.storage),
    )
    release = Release(RELEASE, "thanos", namespace, values, wave=DATA_WAVE, component=COMPONENT)
    return ComponentOutput([release], [_objstore_secret(ctx)])


def monitors(ctx: BuildContext) -> list[Monitor]:
    if not enabled(ctx):
        return []
    return [
        Monitor(
            "PodMonitor",
            "thanos",
            [ctx.settings.observability.namespace],
            {"matchLabels": dict(PODS)},
            [{"port": METRICS_PORT}],
            "Thanos query, store gateway and compactor (uploads, compactions, bucket errors).",
        )
    ]
