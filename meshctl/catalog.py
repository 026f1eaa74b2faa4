"""The pinned charts: one version per component, changed only on purpose.

Every GitOps object points at these; the conformance tests check the values
meshctl renders against each chart's defaults and schema at exactly this
version (``upstream`` names its folder under ``$MESHCTL_UPSTREAM_DIR/charts``).
"""

from __future__ import annotations

from typing import Any

from msgspec import Struct, field

ISTIO_REPO = "https://istio-release.storage.googleapis.com/charts"
ISTIO_VERSION = "1.30.3"

# istiod flips its webhooks' failurePolicy to Fail and injects caBundle once it
# is ready; without this Argo CD would show the charts out of sync forever.
_ISTIO_WEBHOOK_DRIFT = [
    {
        "group": "admissionregistration.k8s.io",
        "kind": "ValidatingWebhookConfiguration",
        "jqPathExpressions": [
            ".webhooks[]?.failurePolicy",
            ".webhooks[]?.clientConfig.caBundle",
        ],
    },
    {
        "group": "admissionregistration.k8s.io",
        "kind": "MutatingWebhookConfiguration",
        "jqPathExpressions": [".webhooks[]?.clientConfig.caBundle"],
    },
]


# The kong chart generates its admission webhook's CA and certificate on every
# `helm template` (Argo CD cannot `lookup` the existing ones), so the Secrets
# and the webhook's caBundle would differ on each refresh.
_KONG_WEBHOOK_CERTS = [
    {"group": "", "kind": "Secret", "jsonPointers": ["/data"]},
    {
        "group": "admissionregistration.k8s.io",
        "kind": "ValidatingWebhookConfiguration",
        "jqPathExpressions": [".webhooks[]?.clientConfig.caBundle"],
    },
]


# Operators whose webhooks get their CA bundle injected after Argo CD applied them.
_WEBHOOK_CA_BUNDLES = [
    {
        "group": "admissionregistration.k8s.io",
        "kind": "ValidatingWebhookConfiguration",
        "jqPathExpressions": [".webhooks[]?.clientConfig.caBundle"],
    },
    {
        "group": "admissionregistration.k8s.io",
        "kind": "MutatingWebhookConfiguration",
        "jqPathExpressions": [".webhooks[]?.clientConfig.caBundle"],
    },
]

# external-secrets' cert-controller also patches its CRDs' conversion webhooks.
_CRD_CONVERSION_CA_BUNDLES = [
    {
        "group": "apiextensions.k8s.io",
        "kind": "CustomResourceDefinition",
        "jqPathExpressions": [".spec.conversion.webhook.clientConfig.caBundle"],
    },
]


class Chart(Struct, frozen=True):
    repo: str
    chart: str
    version: str
    upstream: str
    app_version: str
    ignore_differences: list[dict[str, Any]] = field(default_factory=list)
    server_side_apply: bool = False
    # Charts that install CRDs are never cascade-deleted with their Application:
    # removing an environment must not delete every custom resource in a cluster.
    installs_crds: bool = False

    @property
    def oci(self) -> bool:
        """Served from an OCI registry (``repo`` is ``oci://host/path``)."""
        return self.repo.startswith("oci://")

    @property
    def major(self) -> str:
        return self.version.lstrip("v").split(".")[0]


CHARTS: dict[str, Chart] = {
    "kong": Chart(
        "https://charts.konghq.com",
        "kong",
        "3.4.1",
        "kong",
        "3.9",
        ignore_differences=_KONG_WEBHOOK_CERTS,
        installs_crds=True,
    ),
    "istio-base": Chart(
        ISTIO_REPO,
        "base",
        ISTIO_VERSION,
        "base",
        ISTIO_VERSION,
        ignore_differences=_ISTIO_WEBHOOK_DRIFT,
        installs_crds=True,
    ),
    "istiod": Chart(
        ISTIO_REPO,
        "istiod",
        ISTIO_VERSION,
        "istiod",
        ISTIO_VERSION,
        ignore_differences=_ISTIO_WEBHOOK_DRIFT,
    ),
    "istio-gateway": Chart(ISTIO_REPO, "gateway", ISTIO_VERSION, "gateway", ISTIO_VERSION),
    "tigera-operator": Chart(
        "https://docs.tigera.io/calico/charts",
        "tigera-operator",
        "v3.32.1",
        "tigera-operator",
        "v3.32.1",
        installs_crds=True,
        # Calico's CRDs are too large for client-side apply's annotation.
        server_side_apply=True,
    ),
    "cert-manager": Chart(
        "https://charts.jetstack.io",
        "cert-manager",
        "v1.21.1",
        "cert-manager",
        "v1.21.1",
        ignore_differences=_WEBHOOK_CA_BUNDLES,
        installs_crds=True,
    ),
    "external-secrets": Chart(
        "https://charts.external-secrets.io",
        "external-secrets",
        "2.9.0",
        "external-secrets",
        "v2.9.0",
        ignore_differences=_WEBHOOK_CA_BUNDLES + _CRD_CONVERSION_CA_BUNDLES,
        installs_crds=True,
        server_side_apply=True,
    ),
    "cloudnative-pg": Chart(
        "https://cloudnative-pg.github.io/charts",
        "cloudnative-pg",
        "0.29.0",
        "cloudnative-pg",
        "1.30.0",
        ignore_differences=_WEBHOOK_CA_BUNDLES,
        installs_crds=True,
        server_side_apply=True,
    ),
    "redis": Chart(
        "oci://registry-1.docker.io/bitnamicharts",
        "redis",
        "23.1.1",
        "redis",
        "8.2.1",
    ),
    "eck-operator": Chart(
        "https://helm.elastic.co",
        "eck-operator",
        "3.5.0",
        "eck-operator",
        "3.5.0",
        ignore_differences=_WEBHOOK_CA_BUNDLES,
        installs_crds=True,
        server_side_apply=True,
    ),
    "kube-prometheus-stack": Chart(
        "https://prometheus-community.github.io/helm-charts",
        "kube-prometheus-stack",
        "88.5.3",
        "kube-prometheus-stack",
        "v0.93.1",
        # The operator's admission webhook gets its CA bundle patched in by
        # the chart's certgen job.
        ignore_differences=_WEBHOOK_CA_BUNDLES,
        installs_crds=True,
        # The Prometheus Operator's CRDs are far too large for client-side apply.
        server_side_apply=True,
    ),
    "thanos": Chart(
        "oci://registry-1.docker.io/bitnamicharts",
        "thanos",
        "17.6.0",
        "thanos",
        "0.39.2",
    ),
    "jaeger": Chart(
        "https://jaegertracing.github.io/helm-charts",
        "jaeger",
        "4.11.1",
        "jaeger",
        "2.19.0",
    ),
    "fluent-bit": Chart(
        "https://fluent.github.io/helm-charts",
        "fluent-bit",
        "0.58.1",
        "fluent-bit",
        "5.1.1",
    ),
}
