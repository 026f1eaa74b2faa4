"""Scraping the services' own metrics (``services[].metrics``).

A service that sets ``metrics: {port, path}`` gets, in every environment:

- a **PodMonitor** (when meshctl runs Prometheus): its pods by
  ``service.pod_selector``, the container port by number (``portNumber``), the
  path. A PodMonitor rather than a ServiceMonitor because meshctl does not own
  the service's Kubernetes Service and does not know its port names; the spec
  knows a container port number. Prometheus drops a target whose pod does not
  declare that ``containerPort``, so the pod spec must list it.
- in the **mesh** (``meshctl.build.istio``, ``templates/istio/service.yaml.j2``):
  a PeerAuthentication for the service's pods that sets that one port to
  PERMISSIVE (``portLevelMtls``, keyed by the workload's port, as Istio wants
  it), and a rule in the service's AuthorizationPolicy that allows
  ``GET <path>`` on that port from any source. Prometheus has no sidecar and
  scrapes in plain text, which carries no identity, so the rule cannot name a
  principal; the sidecar refuses anything else on that port (another path,
  another method), and every other port keeps the environment's mTLS mode and
  the callers' principals.
- in the **network** (``meshctl.build.calico``): the service's policy admits
  Prometheus' pods, and only them, on that port.

So plain text reaches one port of the pod, from Prometheus' pods (Calico, at
L3/L4), for one path and method (Istio, at L7). The other options Istio
documents were weighed and left:

- Prometheus with Istio's certificates (a sidecar in Prometheus' pod that only
  writes certificates, scrapes over TLS with ``insecure_skip_verify``): it
  changes the whole Prometheus release for every scrape, Prometheus cannot
  check the workload's identity anyway, and the certificates' rotation hangs
  on that extra container.
- metrics merging (istio-agent scrapes the application and serves it on
  15020): it needs ``prometheus.io/*`` annotations on the pods, which meshctl
  does not deploy, and mixes the application's and Envoy's series in one job.

The metrics port must be a port of its own: neither the service's port (a
port-level PERMISSIVE there would take the service's own traffic out of STRICT
mTLS) nor one of the sidecar's (Envoy owns them; 15020, 15021 and 15090 are
not even intercepted). :func:`port_conflict` says why a port is refused;
validation refuses such a spec, and the build refuses it again rather than
render a weaker mesh or a scrape that cannot work.
"""

from __future__ import annotations

from meshctl import models
from meshctl.build.context import BuildContext
from meshctl.build.names import dns_label
from meshctl.build.telemetry import Monitor
from meshctl.dependencies import metrics_port_conflict as port_conflict
from meshctl.errors import RenderError

# Prometheus scrapes with GET; nothing else is allowed in plain text.
SCRAPE_METHODS = ("GET",)


def scraped(ctx: BuildContext) -> list[tuple[models.Service, models.ServiceMetrics]]:
    """The services whose metrics Prometheus scrapes; refuses a port that cannot be opened."""
    found = []
    for service in ctx.spec.services:
        if service.metrics is None:
            continue
        problem = port_conflict(service)
        if problem is not None:
            # Validation refuses this spec first; reaching here is a meshctl bug.
            raise RenderError(f"service '{service.name}': metrics.port {problem}")
        found.append((service, service.metrics))
    return found


def monitor_name(service: models.Service) -> str:
    """The PodMonitor's name: prefixed, so a service cannot take a component's monitor name."""
    return dns_label("service", service.name)


def monitors(ctx: BuildContext) -> list[Monitor]:
    """A PodMonitor per service with metrics, when meshctl runs Prometheus."""
    if not ctx.settings.observability.enabled:
        return []
    found = []
    for service, metrics in scraped(ctx):
        found.append(
            Monitor(
                "PodMonitor",
                monitor_name(service),
                [service.namespace],
                {"matchLabels": service.pod_selector},
                [{"portNumber": metrics.port, "path": metrics.path}],
                f"{service.name}'s own metrics (services[].metrics), in plain text past "
                "its sidecar.",
            )
        )
    return found
