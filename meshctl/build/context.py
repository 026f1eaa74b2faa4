"""What every component builder gets (one environment's settings) and returns."""

from __future__ import annotations

from typing import Any

from msgspec import Struct, field

from meshctl import layout, models, templating
from meshctl.catalog import CHARTS, Chart
from meshctl.errors import RenderError
from meshctl.spec import EnvironmentPlan, Platform

# The order a cluster is brought up in (Argo CD sync waves): CRDs and
# operators; the mesh control plane and the foundation stage (namespaces,
# secrets, certificates, network policy); the data tier; what serves traffic;
# the policies that refer to all of it.
CRDS_WAVE, CONTROL_WAVE, DATA_WAVE, EDGE_WAVE, RESOURCES_WAVE = 0, 1, 2, 3, 10
STAGE_WAVES = {
    layout.FOUNDATION: CONTROL_WAVE,
    layout.DATA: DATA_WAVE,
    layout.RESOURCES: RESOURCES_WAVE,
}


class Release(Struct, frozen=True):
    """A Helm release: chart from the catalog, target namespace, values."""

    name: str
    chart_key: str
    namespace: str
    values: dict[str, Any]
    wave: int
    component: str
    # Labels for the namespace Argo CD creates (before any pod starts in it).
    namespace_labels: dict[str, str] = field(default_factory=dict)

    @property
    def chart(self) -> Chart:
        return CHARTS[self.chart_key]


class Manifest(Struct, frozen=True):
    """A Kubernetes object, and the file it belongs in: <stage>/<component>/<group>.yaml."""

    component: str
    group: str
    body: dict[str, Any]
    stage: str = layout.RESOURCES

    @property
    def identity(self) -> tuple[str, str, str, str]:
        metadata = self.body.get("metadata", {})
        return (
            self.body["apiVersion"],
            self.body["kind"],
            metadata.get("namespace", ""),
            metadata["name"],
        )


class Endpoint(Struct, frozen=True):
    """Where clients reach a data-tier component, for credentials and network policy."""

    name: str  # the name services use in `uses`: postgres, redis, elasticsearch
    namespace: str
    host: str  # the DNS name clients connect to
    port: int
    # Pods that serve clients (label equality; several maps: any of them).
    selectors: tuple[dict[str, str], ...]
    # Ports the component's own pods use between each other (replication, gossip).
    peer_ports: tuple[int, ...] = ()
    # Further ports clients use besides `port` (Redis Sentinel's).
    extra_client_ports: tuple[int, ...] = ()
    # Prometheus exporters on the pods.
    metrics_ports: tuple[int, ...] = ()
    # The operator that manages the pods and reaches them: (namespace, ports).
    operator: tuple[str, tuple[int, ...]] | None = None
    # The platform's own components that call it on `port` (not services in
    # the spec's graph): (namespace, pod labels).
    platform_clients: tuple[tuple[str, dict[str, str]], ...] = ()

    @property
    def client_ports(self) -> tuple[int, ...]:
        return (self.port, *self.extra_client_ports)


class ComponentOutput(Struct):
    releases: list[Release] = field(default_factory=list)
    manifests: list[Manifest] = field(default_factory=list)


class BuildContext(Struct, frozen=True):
    platform: Platform
    plan: EnvironmentPlan

    @property
    def settings(self) -> models.Settings:
        return self.plan.settings

    @property
    def spec(self) -> models.PlatformSpec:
        return self.platform.spec

    @property
    def environment(self) -> str:
        return self.plan.name

    def render(self, template: str, **context: Any) -> list[dict[str, Any]]:
        return templating.render(template, **context)

    def render_one(self, template: str, **context: Any) -> dict[str, Any]:
        docs = self.render(template, **context)
        if len(docs) != 1 or not isinstance(docs[0], dict):
            raise RenderError(f"templates/{template} must produce exactly one mapping")
        return docs[0]

    def affinity(self, selector: dict[str, str]) -> dict[str, Any] | None:
        """Prefer one replica per node, when the environment asks for it."""
        if not self.settings.resilience.anti_affinity:
            return None
        return {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {"matchLabels": dict(selector)},
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }
                ]
            }
        }

    def zone_spread(self, selector: dict[str, str]) -> list[dict[str, Any]] | None:
        """Spread replicas evenly over zones, when the environment asks for it."""
        if not self.settings.resilience.zone_spread:
            return None
        return [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": dict(selector)},
            }
        ]


def resources(block: models.Resources) -> dict[str, Any]:
    """A resources block for Helm values. An amount that is not set is written as
    null, which Helm reads as "delete the chart's default" (Istio's charts, for
    one, default to a 2-CPU limit that a profile without CPU limits must drop)."""
    return {
        kind: {"cpu": amounts.cpu, "memory": amounts.memory}
        for kind, amounts in (("requests", block.requests), ("limits", block.limits))
    }


def container_resources(block: models.Resources) -> dict[str, Any]:
    """Requests and limits with only the amounts that are set: for pod templates
    of custom resources, where a null quantity is invalid (no chart default to
    delete)."""
    out: dict[str, Any] = {}
    for kind, amounts in (("requests", block.requests), ("limits", block.limits)):
        values = {
            name: value
            for name, value in (("cpu", amounts.cpu), ("memory", amounts.memory))
            if value is not None
        }
        if values:
            out[kind] = values
    return out
