"""Secrets: External Secrets Operator, one ClusterSecretStore per environment,
and an ExternalSecret for every credential a component needs.

The spec never holds a secret value. Every credential is a key in the
external store: ``<keyPrefix>/<credential>`` (default prefix
``<platform>/<environment>``), with named properties (``password``, ...).
Components ask for Secrets through ``credential``; the Secret is made in the
cluster by the operator, never by meshctl.
"""

from __future__ import annotations

from typing import Any

from msgspec import Struct

from meshctl import layout, models
from meshctl.build.context import CRDS_WAVE, BuildContext, ComponentOutput, Manifest, Release
from meshctl.errors import RenderError

COMPONENT = "secrets"
NAMESPACE = "external-secrets"
RELEASE = "external-secrets"
SERVICE_ACCOUNT = "external-secrets"


class Credential(Struct, frozen=True):
    """A Secret the cluster needs, filled from one key of the external store."""

    name: str  # the Secret's name, and the key's last segment in the store
    namespace: str
    properties: dict[str, str]  # Secret key -> property of the store key
    remote: str | None = None  # the store key; default <prefix>/<name>
    type: str | None = None  # the Secret's type, e.g. kubernetes.io/basic-auth
    literals: dict[str, str] | None = None  # non-secret Secret keys (a username, a host)


def store_name(ctx: BuildContext) -> str:
    return ctx.platform.name


def remote_key(ctx: BuildContext, name: str) -> str:
    secrets = _settings(ctx)
    prefix = secrets.key_prefix or f"{ctx.platform.name}/{ctx.environment}"
    return f"{prefix}/{name}"


def credential(ctx: BuildContext, component: str, group: str, wanted: Credential) -> Manifest:
    """The ExternalSecret that makes the Secret `wanted` describes (foundation stage)."""
    secrets = _settings(ctx)
    key = wanted.remote or remote_key(ctx, wanted.name)
    template: dict[str, Any] = {}
    if wanted.type:
        template["type"] = wanted.type
    if wanted.literals:
        # With a template, only what it lists ends up in the Secret: list the
        # fetched keys too (ESO's template engine: {{ .key }}).
        template["engineVersion"] = "v2"
        template["data"] = {
            **{k: "{{ ." + _go_identifier(k) + " }}" for k in wanted.properties},
            **wanted.literals,
        }
    data = [
        {
            "secretKey": _go_identifier(k) if wanted.literals else k,
            "remoteRef": {"key": key, "property": prop},
        }
        for k, prop in sorted(wanted.properties.items())
    ]
    body = ctx.render_one(
        "secrets/external-secret.yaml.j2",
        name=wanted.name,
        namespace=wanted.namespace,
        refresh_interval=secrets.refresh_interval,
        store=store_name(ctx),
        target_template=template,
        data=data,
    )
    return Manifest(component, group, body, stage=layout.FOUNDATION)


def _go_identifier(key: str) -> str:
    # Secret keys may hold '-' and '.', which Go templates cannot name.
    return "".join(c if c.isalnum() else "_" for c in key)


def _settings(ctx: BuildContext) -> models.Secrets:
    secrets = ctx.settings.secrets
    if secrets is None:
        # validate refuses this first; reaching it is a bug in meshctl.
        raise RenderError("a component needs a credential but spec.secrets is not set")
    return secrets


def build(ctx: BuildContext) -> ComponentOutput:
    secrets = ctx.settings.secrets
    if secrets is None:
        return ComponentOutput()
    store = secrets.store
    account_annotations: dict[str, str] = {}
    pod_labels: dict[str, str] = {}
    account_ref = {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
    provider: dict[str, Any]
    if store.provider == "vault" and store.vault:
        vault = store.vault
        provider = {
            "vault": {
                "server": vault.server,
                "path": vault.path,
                "version": vault.version,
                "auth": {
                    "kubernetes": {
                        "mountPath": vault.auth_mount,
                        "role": vault.role,
                        "serviceAccountRef": account_ref,
                    }
                },
            }
        }
    elif store.provider == "aws" and store.aws:
        # IRSA: the controller's own identity; no credentials in the store object.
        account_annotations["eks.amazonaws.com/role-arn"] = store.aws.role_arn
        provider = {"aws": {"service": store.aws.service, "region": store.aws.region}}
    elif store.provider == "gcp" and store.gcp:
        account_annotations["iam.gke.io/gcp-service-account"] = store.gcp.service_account
        provider = {"gcpsm": {"projectID": store.gcp.project_id}}
    elif store.provider == "azure" and store.azure:
        account_annotations["azure.workload.identity/client-id"] = store.azure.client_id
        pod_labels["azure.workload.identity/use"] = "true"
        provider = {
            "azurekv": {
                "vaultUrl": store.azure.vault_url,
                "tenantId": store.azure.tenant_id,
                "authType": "WorkloadIdentity",
                "serviceAccountRef": account_ref,
            }
        }
    else:  # the model guarantees the named provider's block
        raise RenderError(f"secret store provider {store.provider} has no settings")
    values = ctx.render_one(
        "secrets/values.yaml.j2",
        service_account=SERVICE_ACCOUNT,
        account_annotations=account_annotations,
        pod_labels=pod_labels,
    )
    store_doc = ctx.render_one("secrets/store.yaml.j2", name=store_name(ctx), provider=provider)
    return ComponentOutput(
        releases=[Release(RELEASE, "external-secrets", NAMESPACE, values, CRDS_WAVE, COMPONENT)],
        manifests=[Manifest(COMPONENT, "store", store_doc, stage=layout.FOUNDATION)],
    )


def limit_store(ctx: BuildContext, manifests: list[Manifest]) -> None:
    """Admit the platform's store only from the namespaces meshctl puts
    ExternalSecrets in: without `conditions` a ClusterSecretStore serves every
    namespace, and anyone who may create an ExternalSecret could read the
    database owner's password."""
    name = store_name(ctx)
    users = sorted(
        {
            m.body["metadata"]["namespace"]
            for m in manifests
            if m.body["kind"] == "ExternalSecret"
            and m.body["spec"]["secretStoreRef"] == {"kind": "ClusterSecretStore", "name": name}
        }
    )
    for manifest in manifests:
        if (
            manifest.body["kind"] == "ClusterSecretStore"
            and manifest.body["metadata"]["name"] == name
        ):
            manifest.body["spec"]["conditions"] = [{"namespaces": users}]
