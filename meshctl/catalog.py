"""The pinned charts: one version per component, changed only on purpose.

Every GitOps object points at these; the conformance tests check the values
meshctl renders against each chart's defaults and schema at exactly this
version (``upstream`` names its folder under ``$MESHCTL_UPSTREAM_DIR/charts``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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


@dataclass(frozen=True)
class Chart:
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
}
