"""Tracing: Jaeger v2 through the ``jaeger`` chart, spans in Elasticsearch.

The chart (4.11.1, Jaeger 2.19) runs one Deployment, ``jaeger`` (pods
``app.kubernetes.io/name: jaeger``, ``instance: jaeger``, ``component:
all-in-one``), behind the Service ``jaeger`` in the observability namespace,
configured entirely by ``userconfig`` (an OpenTelemetry Collector
configuration the chart mounts from the ConfigMap ``user-config`` and passes
with ``--config``). meshctl writes that configuration whole, from
``config(ctx)``:

- **Receivers.** OTLP over gRPC (4317: Istio's sidecars) and HTTP (4318:
  Kong's ``opentelemetry`` plugin), the Service's ``otlp-grpc`` and
  ``otlp-http`` ports, which ``telemetry.collector`` hands to both. Every
  listener binds 0.0.0.0 explicitly: recent collectors default to localhost.
- **Storage.** One ``jaeger_storage`` backend, ``elasticsearch``, at the data
  tier's HTTPS Service (``elastic.url``). Jaeger logs in as its own file-realm
  user ``jaeger`` (role ``platform-jaeger``: everything on
  ``platform-jaeger-*``, index templates, cluster monitoring): the username
  and password come from the Secret ``jaeger-elasticsearch`` as the
  environment variables ``ES_USERNAME``/``ES_PASSWORD``, which the
  configuration names as ``${env:...}``; no credential is in the values or
  the ConfigMap. TLS is verified against ECK's CA, copied as the Secret
  ``jaeger-elasticsearch-ca`` and mounted read-only (``tls.ca_file``).
- **Index names.** ``indices.index_prefix: platform``: Jaeger joins prefix and
  index with ``-`` and writes ``platform-jaeger-span-YYYY-MM-DD``,
  ``platform-jaeger-service-...``, ``-dependencies-`` and ``-sampling-``,
  exactly what the role permits (``telemetry.JAEGER_INDICES``). Spans get one
  primary shard per Elasticsearch node (the writes spread over the cluster),
  the small indices one; replicas are 1, or 0 on a one-node cluster (a
  replica that can never be placed would keep the cluster yellow).
  ``max_span_age`` is the retention, so a trace can be found by ID as long
  as it is kept (Jaeger's default looks back 72 hours only).
- **Retention.** The CronJob ``jaeger-es-index-cleaner`` deletes, every
  night (23:55, the cluster's time), the daily indices older than
  ``retentionDays``, with the image the chart would use
  (``jaegertracing/jaeger-es-index-cleaner``, the chart's appVersion). It
  takes the days and the URL as arguments, the prefix
  (``--index-prefix=platform``) and TLS (``--es.tls.enabled``,
  ``--es.tls.ca``: the same CA Secret, mounted read-only) as flags, and the
  credentials from the same Secret through ``ES_USERNAME`` and
  ``ES_PASSWORD``, which it reads as its ``--es.username``/``--es.password``.
  meshctl writes it rather than turning on the chart's ``esIndexCleaner``:
  the chart puts its own ``ES_USERNAME`` and a literal ``ES_PASSWORD``
  (``changeme``) before any ``extraEnv``, so every variable would be there
  twice. Its pods carry Jaeger's selector labels, so Elasticsearch's network
  policy admits them as it admits Jaeger, and the component
  ``es-index-cleaner``, so no Service, budget or monitor selects them. The
  annotation ``meshctl.io/retention`` lets ``meshctl diff`` flag a shorter
  retention.
- **Sampling for SDKs.** The ``remote_sampling`` extension serves Jaeger's
  sampling protocol on 5778 (HTTP, in the chart's Service) and 5779 (gRPC,
  added to it). ``probabilistic``: a file provider without a file, i.e. one
  default strategy, ``mesh.tracing.samplingPercent`` / 100 for every service.
  ``adaptive``: Jaeger computes a probability per service and endpoint to
  reach ``targetSamplesPerSecond``, with the ``adaptive_sampling`` processor
  in the pipeline. Jaeger v2 cannot keep adaptive-sampling state in
  Elasticsearch: its Elasticsearch backend has a sampling store but no
  distributed lock, and the ``remote_sampling`` extension refuses a backend
  without both (``storage ... does not support sampling store``); only
  memory, Badger and Cassandra have both. The state therefore lives in a
  ``memory`` backend of each pod: every pod is its own leader and computes
  from the spans it receives, which is 1/replicas of the traffic, so each
  pod's target is ``targetSamplesPerSecond / replicas`` and together they
  meet the target. A restarted pod starts again from the initial
  probability (the mesh's rate) and converges within minutes. Istio and Kong
  do not ask: they sample at ``mesh.tracing.samplingPercent``.
- **Metrics.** The collector's own telemetry is served for Prometheus on
  8888 (``service.telemetry.metrics.readers`` with a pull exporter); the
  PodMonitor ``jaeger`` scrapes it by port number (the chart's container
  ports have no names).

**Wave.** The release syncs at wave 11, the last, after the resources stage
(wave 10). Jaeger's pods mount ``jaeger-elasticsearch-ca``, the copy of ECK's
CA that the Elasticsearch component makes in the data stage (wave 2) for the
platform's own clients, and log in as a user the data stage makes: any wave
after 2 would find both. Argo CD's app of apps only starts a wave when the
previous one is healthy, so at wave 3 a Jaeger that cannot start (a wrong
password in the store, Elasticsearch unreachable) would hold the resources
stage, i.e. the mesh's policies, the routes and their certificates, for the
sake of telemetry. At the last wave nothing waits for it; Istio and Kong,
configured in the resources stage, drop their spans for the minute between
the two waves on a first install. Were the CA copy moved to the resources
stage, wave 11 would still come after it.

**Resilience.** ``replicas`` pods; with ``resilience.antiAffinity`` they prefer
separate nodes, with ``zoneSpread`` separate zones too (an affinity rule: the
chart reads ``jaeger.topologySpreadConstraints`` but its values.yaml only
shows a misspelled key). With ``disruptionBudgets`` and more than one pod, a
PodDisruptionBudget (``maxUnavailable: 1``) in the resources stage.

Secret store: ``<prefix>/elasticsearch-jaeger``, property ``password`` (the
Elasticsearch component makes the user and both Secrets). See docs/tracing.md.
"""

from __future__ import annotations

from typing import Any

from meshctl import layout
from meshctl.build import elastic, telemetry
from meshctl.build.context import (
    RESOURCES_WAVE,
    BuildContext,
    ComponentOutput,
    Manifest,
    Release,
    container_resources,
)
from meshctl.build.telemetry import Monitor

COMPONENT = "tracing"
RELEASE = telemetry.JAEGER_RELEASE
# The last wave: a Jaeger that cannot start must hold nothing (see above).
WAVE = RESOURCES_WAVE + 1
# The Deployment's pods (the chart's selector labels and component).
PODS = {**telemetry.JAEGER_PODS, "app.kubernetes.io/component": "all-in-one"}

CREDENTIALS_SECRET = telemetry.credentials_secret(telemetry.JAEGER_RELEASE)  # elastic.py
CA_SECRET = telemetry.ca_secret(telemetry.JAEGER_RELEASE)  # made by elastic.py
CA_DIR = "/etc/jaeger/elasticsearch-ca"
CA_FILE = f"{CA_DIR}/ca.crt"
CLEANER = f"{RELEASE}-es-index-cleaner"
CLEANER_PODS = {**telemetry.JAEGER_PODS, "app.kubernetes.io/component": "es-index-cleaner"}
# The chart's cleaner image at its appVersion (Jaeger 2.19), and its user.
CLEANER_IMAGE = "jaegertracing/jaeger-es-index-cleaner:2.19.0"
CLEANER_USER_ID = 1000
CLEANER_SCHEDULE = "55 23 * * *"
CLEANER_CA_DIR = "/es-tls"

STORE = "elasticsearch"  # the jaeger_storage backend with the spans
SAMPLING_STORE = "adaptive-sampling"  # adaptive: the memory backend with its state
QUERY_HTTP_PORT = 16686
QUERY_GRPC_PORT = 16685
SAMPLING_HTTP_PORT = 5778
SAMPLING_GRPC_PORT = 5779
HEALTH_PORT = 13133  # the chart's probes: GET /status
METRICS_PORT = 8888  # the chart's "internal-metrics"

_CLEANER_RESOURCES = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}}


def enabled(ctx: BuildContext) -> bool:
    observability = ctx.settings.observability
    return (
        observability.enabled
        and observability.tracing.enabled
        and ctx.settings.data.elasticsearch.enabled  # validate requires it
    )


def sampling_probability(ctx: BuildContext) -> float:
    """The mesh's sampling rate as a probability (0..1), for Kong and Jaeger."""
    return round(ctx.settings.mesh.tracing.sampling_percent / 100, 8)


def build(ctx: BuildContext) -> ComponentOutput:
    if not enabled(ctx):
        return ComponentOutput()
    tracing = ctx.settings.observability.tracing
    namespace = ctx.settings.observability.namespace
    values = ctx.render_one(
        "tracing/values.yaml.j2",
        config=config(ctx),
        replicas=tracing.replicas,
        resources=container_resources(tracing.resources),
        credentials_secret=CREDENTIALS_SECRET,
        ca_secret=CA_SECRET,
        ca_dir=CA_DIR,
        sampling_grpc_port=SAMPLING_GRPC_PORT,
        affinity=_affinity(ctx),
    )
    release = Release(RELEASE, "jaeger", namespace, values, WAVE, COMPONENT)
    manifests = [Manifest(COMPONENT, "index-cleaner", _cleaner(ctx), stage=layout.RESOURCES)]
    if ctx.settings.resilience.disruption_budgets and tracing.replicas > 1:
        budget = ctx.render_one(
            "tracing/disruption-budget.yaml.j2", name=RELEASE, namespace=namespace, selector=PODS
        )
        manifests.append(Manifest(COMPONENT, "jaeger", budget, stage=layout.RESOURCES))
    return ComponentOutput([release], manifests)


def cleaner_args(ctx: BuildContext) -> list[str]:
    """The index cleaner's command line: <days> <url> and flags."""
    return [
        str(ctx.settings.observability.tracing.retention_days),
        elastic.url(ctx),
        f"--index-prefix={telemetry.JAEGER_INDEX_PREFIX}",
        "--es.tls.enabled=true",
        f"--es.tls.ca={CLEANER_CA_DIR}/ca.crt",
    ]


def _cleaner(ctx: BuildContext) -> dict[str, Any]:
    return ctx.render_one(
        "tracing/index-cleaner.yaml.j2",
        name=CLEANER,
        namespace=ctx.settings.observability.namespace,
        labels=dict(CLEANER_PODS),
        pod_labels={**CLEANER_PODS, **telemetry.NO_SIDECAR},
        retention=f"{ctx.settings.observability.tracing.retention_days}d",
        schedule=CLEANER_SCHEDULE,
        user_id=CLEANER_USER_ID,
        image=CLEANER_IMAGE,
        args=cleaner_args(ctx),
        credentials_secret=CREDENTIALS_SECRET,
        resources=_CLEANER_RESOURCES,
        ca_dir=CLEANER_CA_DIR,
        ca_secret=CA_SECRET,
    )


def config(ctx: BuildContext) -> dict[str, Any]:
    """Jaeger's whole configuration (the chart's ``userconfig``)."""
    tracing = ctx.settings.observability.tracing
    adaptive = tracing.sampling.strategy == "adaptive"
    backends: dict[str, Any] = {STORE: {"elasticsearch": _elasticsearch(ctx)}}
    processors: dict[str, Any] = {
        # Refuse data before the pod's memory limit is hit, rather than be killed.
        "memory_limiter": {
            "check_interval": "1s",
            "limit_percentage": 80,
            "spike_limit_percentage": 20,
        },
        "batch": {},
    }
    remote_sampling: dict[str, Any]
    if adaptive:
        # Jaeger's Elasticsearch backend has no distributed lock: see the docstring.
        backends[SAMPLING_STORE] = {"memory": {"max_traces": 1}}
        processors["adaptive_sampling"] = {}
        remote_sampling = {
            "adaptive": {
                "sampling_store": SAMPLING_STORE,
                "target_samples_per_second": round(
                    tracing.sampling.target_samples_per_second / tracing.replicas, 8
                ),
                "initial_sampling_probability": sampling_probability(ctx),
            }
        }
    else:
        remote_sampling = {"file": {"default_sampling_probability": sampling_probability(ctx)}}
    remote_sampling["http"] = {"endpoint": f"0.0.0.0:{SAMPLING_HTTP_PORT}"}
    remote_sampling["grpc"] = {"endpoint": f"0.0.0.0:{SAMPLING_GRPC_PORT}"}
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query", "remote_sampling", "healthcheckv2"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    # memory_limiter first, as the collector recommends.
                    "processors": list(processors),
                    "exporters": ["jaeger_storage_exporter"],
                }
            },
            "telemetry": {
                "resource": {"service.name": "jaeger"},
                "logs": {"level": "info"},
                "metrics": {
                    "level": "normal",
                    "readers": [
                        {
                            "pull": {
                                "exporter": {
                                    "prometheus": {"host": "0.0.0.0", "port": METRICS_PORT}
                                }
                            }
                        }
                    ],
                },
            },
        },
        "extensions": {
            "healthcheckv2": {"use_v2": True, "http": {"endpoint": f"0.0.0.0:{HEALTH_PORT}"}},
            "jaeger_query": {
                "storage": {"traces": STORE},
                "http": {"endpoint": f"0.0.0.0:{QUERY_HTTP_PORT}"},
                "grpc": {"endpoint": f"0.0.0.0:{QUERY_GRPC_PORT}"},
            },
            "jaeger_storage": {"backends": backends},
            "remote_sampling": remote_sampling,
        },
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"0.0.0.0:{telemetry.OTLP_GRPC_PORT}"},
                    "http": {"endpoint": f"0.0.0.0:{telemetry.OTLP_HTTP_PORT}"},
                }
            }
        },
        "processors": processors,
        "exporters": {"jaeger_storage_exporter": {"trace_storage": STORE}},
    }


def _elasticsearch(ctx: BuildContext) -> dict[str, Any]:
    nodes = ctx.settings.data.elasticsearch.nodes
    # A replica on a one-node cluster can never be assigned: the cluster would stay yellow.
    replicas = 0 if nodes == 1 else 1
    small = {"shards": 1, "replicas": replicas}
    return {
        "server_urls": [elastic.url(ctx)],
        "auth": {"basic": {"username": "${env:ES_USERNAME}", "password": "${env:ES_PASSWORD}"}},
        "tls": {"ca_file": CA_FILE},
        "max_span_age": f"{ctx.settings.observability.tracing.retention_days * 24}h",
        "indices": {
            "index_prefix": telemetry.JAEGER_INDEX_PREFIX,
            "spans": {"shards": nodes, "replicas": replicas},
            "services": dict(small),
            "dependencies": dict(small),
            "sampling": dict(small),
        },
    }


def _affinity(ctx: BuildContext) -> dict[str, Any] | None:
    """One pod per node (antiAffinity) and per zone (zoneSpread), preferred."""
    affinity = ctx.affinity(PODS)
    if ctx.settings.resilience.zone_spread:
        term = {
            "weight": 100,
            "podAffinityTerm": {
                "labelSelector": {"matchLabels": dict(PODS)},
                "topologyKey": "topology.kubernetes.io/zone",
            },
        }
        if affinity is None:
            affinity = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
        affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"].append(term)
    return affinity


def monitors(ctx: BuildContext) -> list[Monitor]:
    if not enabled(ctx):
        return []
    return [
        Monitor(
            "PodMonitor",
            RELEASE,
            [ctx.settings.observability.namespace],
            {"matchLabels": dict(PODS)},
            [{"portNumber": METRICS_PORT, "path": "/metrics"}],
            "Jaeger's own telemetry: spans received, refused and written to Elasticsearch.",
        )
    ]
