"""Kong Gateway: Helm values for the `kong` chart, global plugins, routes.

Tracing: when spans have somewhere to go (``telemetry.collector``: Jaeger, or
the spec's own collector), the global KongClusterPlugin ``global-opentelemetry``
sends Kong's spans over OTLP/HTTP to ``http://<collector>:<httpPort>/v1/traces``
at ``mesh.tracing.samplingPercent``, with ``service.name: kong``. Kong 3.9's
plugin reads ``traces_endpoint`` (``endpoint`` is a deprecated alias),
``sampling_rate`` (which overrides kong.conf's ``tracing_sampling_rate``) and
``propagation``: it extracts W3C ``traceparent`` and B3 from clients, and
injects W3C only, the one format Istio's sidecars (Envoy's OpenTelemetry
tracer) read, so Kong's span is the parent of the mesh's. Kong makes spans
only for the instrumentations kong.conf loads: ``tracing_instrumentations:
all`` (the request, router, balancer, upstream call, plugins, DNS, database);
the sampling decision is taken at the root, so unsampled requests cost no
child spans. kong.conf's ``tracing_sampling_rate``, the global default the
plugin's ``sampling_rate`` overrides, is set to the same rate, so the two never
disagree.
"""

from __future__ import annotations

import math
from typing import Any

from meshctl import models
from meshctl.build import postgres, telemetry, tracing
from meshctl.build.context import (
    EDGE_WAVE,
    BuildContext,
    ComponentOutput,
    Manifest,
    Release,
    resources,
)
from meshctl.build.names import dns_label, tls_secret
from meshctl.spec import route_host

COMPONENT = "kong"
SERVICE_ACCOUNT = "kong"
_TLS_PROTOCOLS = ("1.0", "1.1", "1.2", "1.3")


def build(ctx: BuildContext) -> ComponentOutput:
    gateway = ctx.settings.gateway
    collector = telemetry.collector(ctx)
    sampling_rate = tracing.sampling_probability(ctx)
    values = ctx.render_one(
        "kong/values.yaml.j2",
        gateway=gateway,
        resilience=ctx.settings.resilience,
        service_account=SERVICE_ACCOUNT,
        worker_processes=str(_worker_processes(gateway.resources)),
        ssl_protocols=_ssl_protocols(gateway.tls.min_version),
        resources=resources(gateway.resources),
        pod_annotations=_pod_annotations(gateway),
        # Kong in postgres mode without a host: the platform's own database.
        platform_database=postgres.kong_connection(ctx),
        affinity=ctx.affinity(
            {"app.kubernetes.io/name": "kong", "app.kubernetes.io/instance": "kong"}
        ),
        topology_spread=ctx.zone_spread(
            {"app.kubernetes.io/name": "kong", "app.kubernetes.io/instance": "kong"}
        ),
        # kong.conf takes the rate as a string like every KONG_* variable.
        tracing_sampling_rate=format(sampling_rate, "g") if collector else None,
    )
    release = Release(
        "kong", "kong", gateway.namespace, values, wave=EDGE_WAVE, component=COMPONENT
    )
    manifests = [
        Manifest(COMPONENT, "cluster-plugins", doc)
        for doc in ctx.render(
            "kong/cluster-plugins.yaml.j2",
            plugins=global_plugins(gateway) + tracing_plugins(collector, sampling_rate),
        )
    ]
    for service in ctx.spec.services:
        if not service.routes:
            continue
        plugins = _service_plugins(service)
        routes = _routes(service, ctx.settings, [p["name"] for p in plugins])
        manifests.extend(
            Manifest("services", service.name, doc)
            for doc in ctx.render(
                "kong/routes.yaml.j2",
                service=service,
                routes=routes,
                plugins=plugins,
                tls=gateway.tls.enabled,
            )
        )
    return ComponentOutput([release], manifests)


def _pod_annotations(gateway: models.Gateway) -> dict[str, str]:
    annotations = {"traffic.sidecar.istio.io/includeInboundPorts": ""}
    sidecar = gateway.sidecar.resources
    for annotation, value in (
        ("sidecar.istio.io/proxyCPU", sidecar.requests.cpu),
        ("sidecar.istio.io/proxyMemory", sidecar.requests.memory),
        ("sidecar.istio.io/proxyCPULimit", sidecar.limits.cpu),
        ("sidecar.istio.io/proxyMemoryLimit", sidecar.limits.memory),
    ):
        if value:
            annotations[annotation] = value
    return annotations


def principal(ctx: BuildContext) -> str:
    """Kong's mesh identity, for AuthorizationPolicies that let the gateway in."""
    mesh = ctx.settings.mesh
    return f"{mesh.trust_domain}/ns/{ctx.settings.gateway.namespace}/sa/{SERVICE_ACCOUNT}"


def _worker_processes(resources: models.Resources) -> int:
    # One nginx worker per reserved core: more workers than cores only add
    # context switches; Kong's default of "auto" would read the node's cores.
    cpu = resources.requests.cpu or "1"
    cores = int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    return max(1, math.ceil(cores))


def _ssl_protocols(min_version: str) -> str:
    return " ".join(f"TLSv{v}" for v in _TLS_PROTOCOLS[_TLS_PROTOCOLS.index(min_version) :])


def _rate_limit_config(limit: models.RateLimit) -> dict[str, Any]:
    config: dict[str, Any] = {"limit_by": limit.limit_by, "policy": limit.policy}
    for window in ("second", "minute", "hour", "day"):
        value = getattr(limit, window)
        if value is not None:
            config[window] = value
    return config


def global_plugins(gateway: models.Gateway) -> list[dict[str, Any]]:
    plugins = gateway.plugins
    out: list[dict[str, Any]] = []
    if gateway.metrics.enabled:
        out.append(
            {
                "name": "global-prometheus",
                "plugin": "prometheus",
                "config": {
                    "status_code_metrics": True,
                    "latency_metrics": True,
                    "bandwidth_metrics": True,
                    "upstream_health_metrics": True,
                },
            }
        )
    if plugins.correlation_id.enabled:
        out.append(
            {
                "name": "global-correlation-id",
                "plugin": "correlation-id",
                "config": {
                    "header_name": plugins.correlation_id.header,
                    "generator": "uuid#counter",
                    "echo_downstream": True,
                },
            }
        )
    if plugins.rate_limiting is not None:
        out.append(
            {
                "name": "global-rate-limiting",
                "plugin": "rate-limiting",
                "config": _rate_limit_config(plugins.rate_limiting),
            }
        )
    if plugins.request_size_limit is not None:
        out.append(
            {
                "name": "global-request-size-limiting",
                "plugin": "request-size-limiting",
                "config": {
                    "allowed_payload_size": plugins.request_size_limit.megabytes,
                    "size_unit": "megabytes",
                },
            }
        )
    if plugins.cors is not None:
        cors = plugins.cors
        out.append(
            {
                "name": "global-cors",
                "plugin": "cors",
                "config": {
                    "origins": list(cors.origins),
                    "methods": list(cors.methods),
                    "credentials": cors.credentials,
                    "max_age": cors.max_age,
                },
            }
        )
    return out


def tracing_plugins(
    collector: models.Collector | None, sampling_rate: float
) -> list[dict[str, Any]]:
    """Kong's spans to the collector over OTLP/HTTP; none without a collector."""
    if collector is None:
        return []
    return [
        {
            "name": "global-opentelemetry",
            "plugin": "opentelemetry",
            "config": {
                "traces_endpoint": f"http://{collector.host}:{collector.http_port}/v1/traces",
                "sampling_rate": sampling_rate,
                "resource_attributes": {"service.name": "kong"},
                "propagation": {
                    "extract": ["w3c", "b3"],
                    "inject": ["w3c"],
                    "default_format": "w3c",
                },
            },
        }
    ]


def _service_plugins(service: models.Service) -> list[dict[str, Any]]:
    if service.rate_limit is None:
        return []
    return [
        {
            "name": dns_label(service.name, "rate-limiting"),
            "plugin": "rate-limiting",
            "config": _rate_limit_config(service.rate_limit),
        }
    ]


def route_names(service: models.Service) -> list[str]:
    if len(service.routes) == 1:
        return [service.routes[0].name or service.name]
    return [route.name or dns_label(service.name, str(i)) for i, route in enumerate(service.routes)]


def _routes(
    service: models.Service, settings: models.Settings, plugin_names: list[str]
) -> list[dict[str, Any]]:
    tls = settings.gateway.tls
    routes = []
    for name, route in zip(route_names(service), service.routes, strict=True):
        annotations = {
            "konghq.com/strip-path": "true" if route.strip_path else "false",
            # Kong's sidecar routes by Host: the public host matches no mesh
            # service, so Kong must send the upstream's (the client's host is
            # kept in X-Forwarded-Host).
            "konghq.com/preserve-host": "false",
        }
        if tls.enabled and tls.redirect_http:
            annotations["konghq.com/protocols"] = "https"
            # 308, not 301: clients keep the method and body (an API takes POSTs).
            annotations["konghq.com/https-redirect-status-code"] = "308"
        if plugin_names:
            annotations["konghq.com/plugins"] = ",".join(plugin_names)
        if service.description:
            annotations["meshctl.io/description"] = service.description
        host = route_host(route.host, settings.domain)
        routes.append(
            {
                "name": name,
                "host": host,
                "tls_secret": tls_secret(host),
                "paths": list(route.paths),
                "annotations": annotations,
            }
        )
    return routes
