"""The spec as pydantic models: the one source of truth for its schema.

Two kinds of models live here:

- the document (``PlatformDocument`` and the structural parts: metadata,
  gitops, environments, services), validated as written;
- the layered settings (``Settings``: domain, gateway, mesh, resilience), which
  come from built-in defaults, a profile, the spec and per-environment
  overrides. ``Settings`` is the merged, effective result per environment,
  where required fields must be present. The spec and profiles hold *layers*
  of it (``SettingsLayer``, ``GatewayLayer``, ...): derived from the settings
  models' own core schema, every field optional and ``null`` (remove what a
  lower layer set), with the same types and constraints.

``meshctl.schema`` turns these into ``schemas/platform.schema.json``: one
source of truth for pydantic's validation and the published JSON Schema.
Field names are snake_case in Python and camelCase in YAML. Validation is
strict, as JSON Schema is: "5" is not an integer.
"""

import inspect
import ipaddress
from functools import cache
from typing import Annotated, Any, Literal, Self, cast

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import core_schema

API_VERSION = "meshctl.io/v1alpha1"

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
HOSTNAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
CPU_PATTERN = r"^([0-9]+m|[0-9]+(\.[0-9]{1,3})?)$"
MEMORY_PATTERN = r"^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$"
DURATION_PATTERN = r"^[0-9]+(ms|s|m|h)$"
# Free text ends up in annotations and Argo CD descriptions: one line, no
# control characters. Quotes, ': ' and '---' are fine; output quotes them.
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"

DnsLabel = Annotated[
    str,
    StringConstraints(pattern=DNS_LABEL_PATTERN, max_length=63),
    Field(description="A DNS-1123 label: lowercase letters, digits and '-', at most 63."),
]
Hostname = Annotated[
    str,
    StringConstraints(pattern=HOSTNAME_PATTERN, max_length=253),
]
Text = Annotated[str, StringConstraints(pattern=TEXT_PATTERN, max_length=1024)]
Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN)]


def _number_to_string(value: Any) -> Any:
    # `cpu: 2` is as natural in YAML as `cpu: "2"`; Kubernetes takes both.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _quantity_schema(pattern: str, description: str) -> WithJsonSchema:
    return WithJsonSchema(
        {"type": ["string", "number"], "pattern": pattern, "description": description}
    )


CpuQuantity = Annotated[
    str,
    BeforeValidator(_number_to_string),
    StringConstraints(pattern=CPU_PATTERN),
    _quantity_schema(CPU_PATTERN, "CPU as a Kubernetes quantity: 500m, 1, 2.5."),
]
MemoryQuantity = Annotated[
    str,
    BeforeValidator(_number_to_string),
    StringConstraints(pattern=MEMORY_PATTERN),
    _quantity_schema(MEMORY_PATTERN, "Memory as a Kubernetes quantity: 512Mi, 4Gi."),
]


def _empty_list() -> list[Any]:
    """A default factory. Not the builtin `list`: pydantic reads a factory's
    signature, and a builtin's is parsed from text with tokenize, whose first
    use compiles its regexes (5 ms of every command)."""
    return []


def _empty_dict() -> dict[Any, Any]:
    """A default factory; see _empty_list."""
    return {}


class Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        strict=True,
        # Build validators on first use: only the document and the settings are
        # ever validated as a whole, so the ~40 nested models need no
        # validators of their own (this halves meshctl's start-up).
        defer_build=True,
    )


# --------------------------------------------------------------------------
# Layered settings (effective form)


class Amounts(Model):
    cpu: CpuQuantity | None = Field(None, description="CPU; null removes it.")
    memory: MemoryQuantity | None = Field(None, description="Memory; null removes it.")


class Resources(Model):
    """Container requests and limits."""

    requests: Amounts = Field(description="What the scheduler reserves.")
    limits: Amounts = Field(
        default_factory=Amounts,
        description="Hard caps; a null CPU limit avoids CFS throttling.",
    )


class Autoscaling(Model):
    """A HorizontalPodAutoscaler from `replicas` (the minimum) to `maxReplicas`."""

    enabled: bool = Field(description="Create a HorizontalPodAutoscaler.")
    max_replicas: int = Field(ge=1, le=1000, description="Upper bound for the autoscaler.")
    target_cpu_utilization: int = Field(
        ge=1,
        le=100,
        alias="targetCPUUtilization",
        description="Average CPU utilization (% of requests) to scale at.",
    )


class SecretRef(Model):
    """A key of a Kubernetes Secret; the spec never holds a secret value."""

    name: Annotated[str, StringConstraints(pattern=HOSTNAME_PATTERN, max_length=253)] = Field(
        description="Secret name (in the component's namespace)."
    )
    key: Annotated[str, StringConstraints(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)] = Field(
        description="Key inside the Secret."
    )


class KongDatabase(Model):
    """Kong's configuration store: DB-less (declarative) or PostgreSQL."""

    mode: Literal["dbless", "postgres"] = Field(
        description="dbless: configuration from the ingress controller only; "
        "postgres: Kong keeps its configuration in PostgreSQL."
    )
    host: Hostname | None = Field(
        None,
        description="External PostgreSQL host (postgres mode); unset: the platform's own "
        "(data.postgres), wired by meshctl.",
    )
    port: int = Field(5432, ge=1, le=65535, description="PostgreSQL port.")
    database: DnsLabel | None = Field(None, description="Database name (postgres mode).")
    user: Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]*$")] | None = Field(
        None, description="Database user (postgres mode)."
    )
    password_secret: SecretRef | None = Field(
        None, description="Secret holding the database password (postgres mode)."
    )
    ssl: bool = Field(
        True, description="Connect to PostgreSQL over TLS and verify its certificate."
    )
    ca_secret: SecretRef | None = Field(
        None,
        description="Secret holding the CA that signed the database's certificate, when it is "
        "not a public CA (an operator's or a cloud provider's own).",
    )

    @model_validator(mode="after")
    def _postgres_needs_connection(self) -> Self:
        if self.mode != "postgres":
            return self
        connection = (
            ("database", self.database),
            ("user", self.user),
            ("passwordSecret", self.password_secret),
            ("caSecret", self.ca_secret),
        )
        if self.host is None:
            extra = [alias for alias, value in connection if value is not None]
            if extra:
                raise ValueError(
                    "without host Kong uses the platform's PostgreSQL (data.postgres); "
                    f"set host for an external database, or remove {', '.join(extra)}"
                )
            return self
        missing = [alias for alias, value in connection[:3] if value is None]
        if missing:
            raise ValueError(f"postgres mode with an external host needs {', '.join(missing)}")
        return self

    @property
    def external(self) -> bool:
        """Kong's database is outside the platform (else: the data tier's PostgreSQL)."""
        return self.host is not None


ANNOTATION_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
AnnotationKey = Annotated[str, StringConstraints(pattern=ANNOTATION_KEY_PATTERN, max_length=316)]


class Proxy(Model):
    service_type: Literal["LoadBalancer", "NodePort", "ClusterIP"] = Field(
        description="Kubernetes Service type of Kong's proxy."
    )
    annotations: dict[AnnotationKey, Text] = Field(
        default_factory=_empty_dict,
        description="Annotations of the proxy Service (cloud load balancer settings).",
    )
    load_balancer_source_ranges: list[
        Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F:.]+/[0-9]{1,3}$")]
    ] = Field(
        default_factory=_empty_list,
        description="CIDRs allowed to reach the load balancer (serviceType LoadBalancer only).",
    )

    @model_validator(mode="after")
    def _ranges_need_a_load_balancer(self) -> Self:
        # Kubernetes (and the chart) ignore source ranges on other Service types:
        # an allow-list that silently allows everyone is worse than an error.
        if self.load_balancer_source_ranges and self.service_type != "LoadBalancer":
            raise ValueError(
                f"loadBalancerSourceRanges only restrict a LoadBalancer Service, not "
                f"{self.service_type}"
            )
        return self


TlsVersion = Literal["1.0", "1.1", "1.2", "1.3"]


class GatewayTls(Model):
    enabled: bool = Field(description="Serve routes over HTTPS with a certificate per host.")
    min_version: TlsVersion = Field(description="Lowest TLS version Kong accepts.")
    redirect_http: bool = Field(
        description="Redirect plain HTTP to HTTPS (308, keeping method and body)."
    )


class Metrics(Model):
    enabled: bool = Field(description="Expose Prometheus metrics.")


class RateLimit(Model):
    """Kong rate-limiting plugin; counters are per Kong node with the local policy."""

    second: int | None = Field(None, ge=1)
    minute: int | None = Field(None, ge=1)
    hour: int | None = Field(None, ge=1)
    day: int | None = Field(None, ge=1)
    limit_by: Literal["ip", "consumer", "credential", "service"] = Field(
        "ip", description="What a counter is kept for."
    )
    policy: Literal["local"] = Field(
        "local",
        description="Where counters live; `local` keeps them in each Kong node's memory.",
    )

    @model_validator(mode="after")
    def _one_window(self) -> Self:
        if all(v is None for v in (self.second, self.minute, self.hour, self.day)):
            raise ValueError("set at least one of second, minute, hour, day")
        return self


class CorrelationId(Model):
    enabled: bool
    header: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]+$")] = "X-Request-ID"


class RequestSizeLimit(Model):
    megabytes: int = Field(ge=1, le=1024, description="Largest request body accepted.")


HttpMethod = Literal["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS"]
_CORS_METHODS: tuple[HttpMethod, ...] = ("GET", "POST")


class Cors(Model):
    origins: list[Annotated[str, StringConstraints(pattern=r"^(\*|https?://[^\s,]+)$")]] = Field(
        min_length=1, description="Allowed origins (`*` or full origins)."
    )
    methods: list[HttpMethod] = Field(default_factory=lambda: list(_CORS_METHODS))
    credentials: bool = False
    max_age: int = Field(3600, ge=0, le=86400)


class GatewayPlugins(Model):
    """Kong plugins applied to every route (KongClusterPlugins labelled global)."""

    correlation_id: CorrelationId = Field(description="Add a request id header.")
    rate_limiting: RateLimit | None = Field(None, description="Global rate limit.")
    request_size_limit: RequestSizeLimit | None = Field(
        None, description="Reject large request bodies."
    )
    cors: Cors | None = Field(None, description="CORS for browser clients.")


class Sidecar(Model):
    resources: Resources


class Gateway(Model):
    """Kong Gateway with its ingress controller (chart `kong`)."""

    namespace: DnsLabel = Field(description="Namespace Kong runs in.")
    replicas: int = Field(ge=1, le=1000, description="Kong pods (the minimum when autoscaling).")
    autoscaling: Autoscaling
    resources: Resources
    sidecar: Sidecar = Field(
        description="Kong's own Istio sidecar: every proxied request leaves through it, so it "
        "is sized for the gateway, not like an application's."
    )
    database: KongDatabase
    proxy: Proxy
    tls: GatewayTls
    metrics: Metrics
    plugins: GatewayPlugins


class MeshMtls(Model):
    mode: Literal["STRICT", "PERMISSIVE"] = Field(
        description="Mesh-wide PeerAuthentication mode; PERMISSIVE also accepts plain text."
    )
    min_tls_version: Literal["1.2", "1.3"] = Field(
        description="Lowest TLS version between sidecars."
    )


class ControlPlane(Model):
    replicas: int = Field(ge=1, le=100, description="istiod pods (the minimum when autoscaling).")
    autoscaling: Autoscaling
    resources: Resources


class Collector(Model):
    host: Hostname = Field(description="OpenTelemetry (OTLP/gRPC) collector service host.")
    port: int = Field(4317, ge=1, le=65535, description="OTLP/gRPC port (Istio's sidecars).")
    http_port: int = Field(
        4318, ge=1, le=65535, description="OTLP/HTTP port (Kong's OpenTelemetry plugin)."
    )


class Tracing(Model):
    sampling_percent: float = Field(ge=0, le=100, description="Share of requests traced.")
    collector: Collector | None = Field(
        None, description="Where spans go; tracing is off without a collector."
    )


class AccessLogs(Model):
    enabled: bool
    encoding: Literal["JSON", "TEXT"] = "JSON"


class ConnectionPool(Model):
    max_connections: int = Field(ge=1, description="TCP connections per upstream host.")
    connect_timeout: Duration = Field(description="TCP connect timeout.")
    http1_max_pending_requests: int = Field(ge=1, description="Queued HTTP/1.1 requests.")
    http2_max_requests: int = Field(ge=1, description="Concurrent HTTP/2 requests.")
    max_requests_per_connection: int = Field(
        ge=0, description="Requests before a connection is recycled; 0 means unlimited."
    )


class OutlierDetection(Model):
    consecutive5xx_errors: int = Field(
        ge=0, alias="consecutive5xxErrors", description="5xx responses before ejection."
    )
    interval: Duration = Field(description="Time between ejection sweeps.")
    base_ejection_time: Duration = Field(description="Minimum ejection duration.")
    max_ejection_percent: int = Field(ge=0, le=100, description="Most hosts ejected at once.")


class TrafficPolicy(Model):
    """DestinationRule traffic policy applied to every service."""

    connection_pool: ConnectionPool
    outlier_detection: OutlierDetection


class EgressGateway(Model):
    enabled: bool = Field(description="Deploy an Istio egress gateway (chart `gateway`).")
    replicas: int = Field(ge=1, le=100)
    resources: Resources


class Egress(Model):
    policy: Literal["ALLOW_ANY", "REGISTRY_ONLY"] = Field(
        description="REGISTRY_ONLY blocks calls to hosts the mesh does not know."
    )
    hosts: list[Hostname] = Field(
        default_factory=_empty_list,
        description="External HTTPS hosts the services may call (ServiceEntries).",
    )
    gateway: EgressGateway


class Mesh(Model):
    """Istio: control plane, sidecars and mesh-wide policy (charts base, istiod, gateway)."""

    trust_domain: Hostname = Field(description="SPIFFE trust domain of the mesh.")
    mtls: MeshMtls
    control_plane: ControlPlane
    sidecar: Sidecar
    tracing: Tracing
    access_logs: AccessLogs
    traffic_policy: TrafficPolicy
    egress: Egress


class Resilience(Model):
    """Disruption budgets and spreading, for every component that runs replicas."""

    disruption_budgets: bool = Field(description="PodDisruptionBudgets for replicated pods.")
    anti_affinity: bool = Field(description="Prefer one replica per node.")
    zone_spread: bool = Field(description="Spread replicas across availability zones.")


# --------------------------------------------------------------------------
# Network: Calico

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
CIDR_PATTERN = rf"^({_OCTET}\.){{3}}{_OCTET}/([0-9]|[12][0-9]|3[0-2])$"


class IpPool(Model):
    """A Calico IP pool for pod addresses."""

    cidr: Annotated[str, StringConstraints(pattern=CIDR_PATTERN)] = Field(
        description="IPv4 range pods get their addresses from."
    )
    block_size: int = Field(26, ge=20, le=32, description="Per-node address block (prefix).")
    encapsulation: Literal["VXLAN", "VXLANCrossSubnet", "IPIP", "IPIPCrossSubnet", "None"] = Field(
        "VXLANCrossSubnet", description="Overlay between nodes; `None` for routed pods."
    )
    nat_outgoing: bool = Field(True, description="SNAT traffic leaving the pool.")


class Calico(Model):
    """Calico through the Tigera operator: the Installation the operator reconciles."""

    ip_pools: list[IpPool] = Field(min_length=1, description="Pod IP pools.")
    mtu: int | None = Field(
        None, ge=576, le=9000, description="Pod interface MTU; unset lets Calico detect it."
    )
    bgp: Literal["Enabled", "Disabled"] = Field(
        description="BGP between nodes (needed for `None` or IPIP encapsulation)."
    )

    @model_validator(mode="after")
    def _routes_need_bgp(self) -> Self:
        if self.bgp == "Disabled":
            routed = sorted(
                {p.encapsulation for p in self.ip_pools} & {"IPIP", "IPIPCrossSubnet", "None"}
            )
            if routed:
                raise ValueError(
                    f"encapsulation {', '.join(routed)} needs bgp: Enabled (only VXLAN works "
                    "without BGP)"
                )
        networks = [ipaddress.ip_network(p.cidr, strict=False) for p in self.ip_pools]
        for i, first in enumerate(networks):
            for second in networks[i + 1 :]:
                if first.overlaps(second):
                    raise ValueError(f"IP pools {first} and {second} overlap")
        return self


class Network(Model):
    """Pod networking and L3/L4 policy (Calico)."""

    calico: Calico
    default_deny: bool = Field(
        description="Deny all traffic in the platform's namespaces except what the spec allows."
    )


# --------------------------------------------------------------------------
# Secrets: the external store

REMOTE_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9/_.+=@-]*$"
RemoteKey = Annotated[str, StringConstraints(pattern=REMOTE_KEY_PATTERN, max_length=512)]
HTTPS_URL_PATTERN = r"^https://[^\s/?#]+(/[^\s?#]*)?$"
HttpsUrl = Annotated[str, StringConstraints(pattern=HTTPS_URL_PATTERN)]


class VaultStore(Model):
    """HashiCorp Vault, KV engine, Kubernetes auth."""

    server: HttpsUrl = Field(description="Vault address.")
    path: RemoteKey = Field("secret", description="Mount path of the KV engine.")
    version: Literal["v1", "v2"] = Field("v2", description="KV engine version.")
    auth_mount: RemoteKey = Field("kubernetes", description="Mount path of Kubernetes auth.")
    role: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+$", max_length=128)] = Field(
        description="Vault role bound to the external-secrets service account."
    )


class AwsStore(Model):
    """AWS Secrets Manager or Parameter Store, IAM role for service accounts."""

    service: Literal["SecretsManager", "ParameterStore"] = "SecretsManager"
    region: Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]$")]
    role_arn: Annotated[
        str, StringConstraints(pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/\S+$")
    ] = Field(description="IAM role the external-secrets service account assumes (IRSA).")


class GcpStore(Model):
    """Google Secret Manager, Workload Identity."""

    project_id: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")]
    service_account: Annotated[
        str, StringConstraints(pattern=r"^[a-z0-9-]+@[a-z0-9-]+\.iam\.gserviceaccount\.com$")
    ] = Field(description="Google service account the external-secrets service account maps to.")


class AzureStore(Model):
    """Azure Key Vault, Workload Identity."""

    vault_url: Annotated[
        str, StringConstraints(pattern=r"^https://[a-z0-9-]+\.vault\.azure\.net/?$")
    ]
    tenant_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f-]{36}$")]
    client_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f-]{36}$")] = Field(
        description="Client id of the managed identity external-secrets uses."
    )


class SecretStore(Model):
    """The store every credential comes from; exactly one provider block, the one named."""

    provider: Literal["vault", "aws", "gcp", "azure"]
    vault: VaultStore | None = None
    aws: AwsStore | None = None
    gcp: GcpStore | None = None
    azure: AzureStore | None = None

    @model_validator(mode="after")
    def _provider_block(self) -> Self:
        # Other providers' blocks may stay (an environment can switch provider
        # without removing the spec's block); only the named one is used.
        if getattr(self, self.provider) is None:
            raise ValueError(
                f"provider is {self.provider}; set `{self.provider}` with its settings"
            )
        return self


class Secrets(Model):
    """External Secrets Operator: the store, and where credentials live in it."""

    store: SecretStore
    key_prefix: RemoteKey | None = Field(
        None,
        description="Prefix of every credential's key in the store; default <platform>/<env>.",
    )
    refresh_interval: Duration = Field("1h", description="How often secrets are re-read.")


# --------------------------------------------------------------------------
# TLS: cert-manager

EMAIL_PATTERN = (
    r"^[A-Za-z0-9._%+-]+@[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$"
)


class Acme(Model):
    """An ACME issuer (Let's Encrypt by default), HTTP-01 through Kong."""

    email: Annotated[str, StringConstraints(pattern=EMAIL_PATTERN, max_length=254)] = Field(
        description="Account e-mail: expiry notices go here."
    )
    server: HttpsUrl = Field(
        "https://acme-v02.api.letsencrypt.org/directory", description="ACME directory URL."
    )


class CaIssuer(Model):
    """A private CA whose certificate and key are in the secret store."""

    key: RemoteKey = Field(
        description="Key in the store holding the CA (properties `tls.crt` and `tls.key`)."
    )


class Tls(Model):
    """cert-manager: the issuer, and the certificates for every gateway host."""

    issuer: Literal["acme", "ca", "selfSigned"] = Field(
        description="acme (public hosts), ca (a CA from the store) or selfSigned (a CA of its own)."
    )
    acme: Acme | None = None
    ca: CaIssuer | None = None
    duration: Duration = Field("2160h", description="Certificate lifetime requested.")
    renew_before: Duration = Field("720h", description="Renew this long before expiry.")

    @model_validator(mode="after")
    def _issuer_block(self) -> Self:
        if self.issuer == "acme" and self.acme is None:
            raise ValueError("issuer is acme; set `acme` with at least its email")
        if self.issuer == "ca" and self.ca is None:
            raise ValueError("issuer is ca; set `ca` with the CA's key in the secret store")
        return self


# --------------------------------------------------------------------------
# Data tier

StorageClass = Annotated[str, StringConstraints(pattern=HOSTNAME_PATTERN, max_length=253)]
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
BucketName = Annotated[str, StringConstraints(pattern=BUCKET_PATTERN)]


class Volume(Model):
    size: MemoryQuantity = Field(description="Volume size: 10Gi.")
    storage_class: StorageClass | None = Field(None, description="Unset: the cluster default.")


class PostgresBackup(Model):
    enabled: bool = Field(description="Continuous WAL archival and scheduled base backups.")
    schedule: Annotated[str, StringConstraints(pattern=r"^\S+( \S+){5}$")] = Field(
        "0 0 3 * * *", description="Base backup schedule (six fields, seconds first)."
    )
    retention: Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]*[dwm]$")] = Field(
        "30d", description="How long backups and WAL are kept: 30d, 4w, 6m."
    )


class Pooler(Model):
    """PgBouncer in front of the cluster: one pooler for writes, one for reads."""

    instances: int = Field(ge=1, le=20, description="PgBouncer pods per pooler.")
    pool_mode: Literal["session", "transaction"] = "transaction"
    max_client_connections: int = Field(1000, ge=1, le=100000)
    default_pool_size: int = Field(20, ge=1, le=10000)


class Postgres(Model):
    """PostgreSQL through CloudNativePG."""

    enabled: bool
    instances: int = Field(ge=1, le=9, description="Primary plus replicas.")
    image_name: (
        Annotated[
            str,
            StringConstraints(pattern=r"^[a-z0-9./_-]+(:[A-Za-z0-9._-]+)?(@sha256:[a-f0-9]{64})?$"),
        ]
        | None
    ) = Field(None, description="PostgreSQL image; unset: the operator's default.")
    database: Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]{0,62}$")] = Field(
        "app", description="Application database, owned by a role of the same name."
    )
    storage: Volume
    wal_storage: Volume | None = Field(None, description="Separate volume for WAL.")
    resources: Resources
    parameters: dict[Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_.]*$")], Text] = (
        Field(default_factory=_empty_dict, description="postgresql.conf parameters.")
    )
    backup: PostgresBackup
    pooler: Pooler


class Persistence(Model):
    enabled: bool = Field(description="Keep data on a volume; off: in memory only.")
    size: MemoryQuantity = Field(description="Volume size: 8Gi.")
    storage_class: StorageClass | None = Field(None, description="Unset: the cluster default.")


class Redis(Model):
    """Redis through the Bitnami chart."""

    enabled: bool
    mode: Literal["standalone", "sentinel"] = Field(
        description="standalone: one pod; sentinel: replication with Sentinel failover."
    )
    replicas: int = Field(ge=1, le=9, description="Redis pods in sentinel mode.")
    persistence: Persistence
    resources: Resources
    metrics: bool = Field(description="Prometheus exporter sidecar.")


class Kibana(Model):
    enabled: bool
    count: int = Field(ge=1, le=10)
    resources: Resources


class Elasticsearch(Model):
    """Elasticsearch and Kibana through ECK."""

    enabled: bool
    version: Annotated[str, StringConstraints(pattern=r"^[89]\.[0-9]+\.[0-9]+$")] = Field(
        description="Elastic Stack version."
    )
    nodes: int = Field(ge=1, le=50, description="Nodes of the one node set (all roles).")
    storage: Volume
    heap: MemoryQuantity = Field(description="JVM heap; at most half the memory limit.")
    mmap: bool = Field(
        False,
        description="Let Elasticsearch memory-map its files: only where the nodes already set "
        "vm.max_map_count to 1048576 (meshctl runs no privileged init container).",
    )
    resources: Resources
    kibana: Kibana


class Buckets(Model):
    backups: BucketName | None = Field(
        None, description="PostgreSQL backups; default <platform>-<env>-backups."
    )
    metrics: BucketName | None = Field(
        None, description="Long-term metrics; default <platform>-<env>-metrics."
    )


class ObjectStorage(Model):
    """An S3-compatible store, referenced (meshctl does not deploy one)."""

    endpoint: HttpsUrl | None = Field(None, description="S3 endpoint; unset: AWS S3.")
    region: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]+$")] | None = None
    buckets: Buckets = Field(default_factory=Buckets)
    credentials: Literal["store", "workloadIdentity"] = Field(
        "store",
        description="store: keys from the secret store; workloadIdentity: the pods' cloud "
        "identity (IRSA and the like).",
    )


class Data(Model):
    namespace: DnsLabel = Field(description="Namespace of the data tier.")
    object_storage: ObjectStorage | None = None
    postgres: Postgres
    redis: Redis
    elasticsearch: Elasticsearch


# --------------------------------------------------------------------------
# Observability: metrics, alerting, SLOs, traces, logs

Retention = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]*(h|d|w|y)$")]


class Prometheus(Model):
    replicas: int = Field(ge=1, le=10, description="Prometheus pods.")
    retention: Retention = Field(description="How long Prometheus keeps samples locally: 2d, 30d.")
    storage: Volume
    resources: Resources


Severity = Literal["page", "ticket"]
SEVERITIES: tuple[Severity, ...] = ("page", "ticket")


class Receiver(Model):
    """Where Alertmanager sends alerts; its credential is a key in the secret store."""

    name: DnsLabel
    type: Literal["slack", "pagerduty", "webhook"] = Field(
        description="slack (webhook URL), pagerduty (routing key) or webhook (URL)."
    )
    key: RemoteKey = Field(
        description="Key in the secret store holding the URL or routing key (property `value`)."
    )
    channel: Annotated[str, StringConstraints(pattern=r"^#?[a-z0-9_-]{1,80}$")] | None = Field(
        None, description="Slack channel."
    )
    severities: list[Severity] = Field(
        default_factory=lambda: list(SEVERITIES),
        description="Which alerts go here: page (fast burn) and ticket (slow burn).",
    )


class Alerting(Model):
    receivers: list[Receiver] = Field(
        default_factory=_empty_list,
        description="Alertmanager receivers; none: alerts stay in the UI.",
    )
    replicas: int = Field(ge=1, le=5, description="Alertmanager pods.")


class Slo(Model):
    """The targets alerts are computed from (multi-window, multi-burn-rate)."""

    availability: float = Field(
        ge=90, lt=100, description="Share of requests that succeed, in percent: 99.9."
    )
    latency_p95_ms: int = Field(ge=1, description="95 % of requests faster than this.")
    latency_p99_ms: int = Field(ge=1, description="99 % of requests faster than this.")
    period_days: int = Field(28, ge=7, le=90, description="The SLO window the budget covers.")


class ThanosRetention(Model):
    """How long the compactor keeps blocks at each resolution (downsampling)."""

    raw: Retention = Field(description="Raw samples: 30d.")
    five_minutes: Retention = Field(
        alias="fiveMinutes", description="5-minute downsampled blocks: 90d."
    )
    one_hour: Retention = Field(alias="oneHour", description="1-hour downsampled blocks: 180d.")


class Scaled(Model):
    replicas: int = Field(ge=1, le=20)
    resources: Resources


class StoreGateway(Model):
    replicas: int = Field(ge=1, le=20)
    resources: Resources
    storage: Volume = Field(description="Index cache volume of each store gateway.")


class Compactor(Model):
    resources: Resources
    storage: Volume = Field(description="Scratch volume for compaction and downsampling.")


class Thanos(Model):
    """Long-term metrics: the Prometheus sidecar uploads blocks to object storage
    (bucket `data.objectStorage.buckets.metrics`); query, store gateway and
    compactor from the `thanos` chart."""

    enabled: bool = Field(description="Ship Prometheus' blocks to object storage.")
    retention: ThanosRetention
    query: Scaled
    store_gateway: StoreGateway
    compactor: Compactor


class TraceSampling(Model):
    """What Jaeger's remote sampling endpoint tells SDK-instrumented services;
    Istio and Kong sample at `mesh.tracing.samplingPercent`."""

    strategy: Literal["probabilistic", "adaptive"] = Field(
        description="probabilistic: mesh.tracing.samplingPercent for every service; adaptive: "
        "Jaeger adjusts per service and endpoint to reach targetSamplesPerSecond."
    )
    target_samples_per_second: float = Field(
        1.0, gt=0, le=1000, description="adaptive: traces per second per service and endpoint."
    )


class Jaeger(Model):
    """Tracing: Jaeger v2 (`jaeger` chart) storing spans in the data tier's Elasticsearch."""

    enabled: bool = Field(description="Deploy Jaeger; Istio and Kong send their spans to it.")
    replicas: int = Field(ge=1, le=20, description="Jaeger pods (collector and query).")
    retention_days: int = Field(ge=1, le=365, description="Days of spans kept.")
    sampling: TraceSampling
    resources: Resources


class Logs(Model):
    """Logs: Fluent Bit on every node ships container logs as JSON to Elasticsearch."""

    enabled: bool = Field(description="Deploy Fluent Bit and the log indices' retention.")
    retention_days: int = Field(ge=1, le=3650, description="Days of logs kept.")
    resources: Resources


class Observability(Model):
    """Metrics (kube-prometheus-stack, Thanos), alerting, SLO alerts, traces and logs."""

    namespace: DnsLabel = Field(description="Namespace of the monitoring stack.")
    enabled: bool = Field(description="Deploy the metrics stack, monitors and alerts.")
    prometheus: Prometheus
    thanos: Thanos
    alerting: Alerting
    grafana: bool = Field(description="Deploy Grafana (admin credentials from the store).")
    slo: Slo
    tracing: Jaeger
    logs: Logs


class Settings(Model):
    """Everything that layers: defaults -> profile -> spec -> environment overrides."""

    domain: Hostname = Field(description="Base DNS domain; bare route hosts are put under it.")
    gateway: Gateway
    mesh: Mesh
    network: Network
    data: Data
    tls: Tls
    secrets: Secrets | None = Field(None, description="External secret store.")
    observability: Observability
    resilience: Resilience


LAYERED_SECTIONS = tuple((info.alias or name) for name, info in Settings.model_fields.items())


# --------------------------------------------------------------------------
# Layers

LAYER_SUFFIX = "Layer"
_CONTAINERS = ("nullable", "list", "dict", "union")
_SCALARS = frozenset({"str", "int", "float", "bool", "literal", "none", "any"})


class _Layer(dict[str, Any]):
    """The layer of a settings model, as a field type: every field optional and
    nullable (``null`` removes what a lower layer set), the same types and
    constraints, no cross-field rules (a layer may set one field of a pair).

    A layer is derived from its settings model's own core schema when pydantic
    builds a document's validator, not declared as a twin model: defining the
    64 twin classes and generating their schemas was 9 % of a render.
    The validated value is a plain dict (the layers are merged as written; only
    the merged settings become models). The published schema is pydantic's
    JSON Schema of the same core schema, so it still cannot disagree.
    """

    model: type["Model"]

    def __init_subclass__(cls, model: type["Model"]) -> None:
        cls.model = model

    @classmethod
    def __get_pydantic_core_schema__(cls, _source: Any, _handler: Any) -> core_schema.CoreSchema:
        return _LayerSchemas().of(cls.model)


class _LayerSchemas:
    """Derives layers from the effective settings' core schema: fresh dicts for
    each document, as pydantic inlines single-use definitions in place."""

    def __init__(self) -> None:
        self.shared, self.effective = _effective_schemas()
        self.layers: dict[str, core_schema.CoreSchema] = {}

    def of(self, model: type["Model"]) -> core_schema.CoreSchema:
        root = self._layer(self.effective[model])
        return core_schema.definitions_schema(root, list(self.layers.values()))

    def _layer(self, schema: Any) -> Any:
        model = _model_schema(schema, self.shared)
        if model is not None:
            return self._model_layer(model)
        kind = schema["type"]
        if kind == "nullable":
            return {**schema, "schema": self._layer(schema["schema"])}
        if kind == "list":
            return {**schema, "items_schema": self._layer(schema["items_schema"])}
        if kind == "dict":
            return {**schema, "values_schema": self._layer(schema["values_schema"])}
        if kind == "union":
            choices = [
                (self._layer(c[0]), c[1]) if isinstance(c, tuple) else self._layer(c)
                for c in schema["choices"]
            ]
            return {**schema, "choices": choices}
        if kind not in _SCALARS and _mentions_model(schema):
            raise TypeError(f"cannot derive a layer through a {kind!r} schema")
        return schema

    def _model_layer(self, model: Any) -> core_schema.CoreSchema:
        cls: type[Model] = model["cls"]
        name = cls.__name__ + LAYER_SUFFIX
        ref = f"{cls.__module__}.{name}"
        if ref not in self.layers:
            fields = {}
            for key, field in model["schema"]["fields"].items():
                inner = field["schema"]
                if inner["type"] == "default":
                    inner = inner["schema"]
                inner = self._layer(inner)
                if inner["type"] != "nullable":
                    inner = core_schema.nullable_schema(inner)
                description = cls.model_fields[key].description
                fields[key] = core_schema.typed_dict_field(
                    inner,
                    required=False,
                    validation_alias=field.get("validation_alias"),
                    serialization_alias=field.get("serialization_alias"),
                    metadata={"pydantic_js_updates": {"description": description}}
                    if description
                    else None,
                )
            self.layers[ref] = core_schema.typed_dict_schema(
                fields,
                extra_behavior="forbid",
                config=cast(core_schema.CoreConfig, {**model["config"], "title": name}),
                ref=ref,
                metadata={"pydantic_js_functions": [_layer_json_schema(name, cls.__doc__)]},
            )
        return core_schema.definition_reference_schema(ref)


@cache
def _effective_schemas() -> tuple[dict[str, Any], dict[type, Any]]:
    """Settings' shared definitions by ref, and each settings model's schema."""
    if not Settings.__pydantic_complete__:
        Settings.model_rebuild()
    schema: Any = Settings.__pydantic_core_schema__
    shared: dict[str, Any] = {}
    if schema["type"] == "definitions":
        shared = {d["ref"]: d for d in schema["definitions"]}
        schema = schema["schema"]
    effective: dict[type, Any] = {}
    pending = [schema]
    while pending:
        node = pending.pop()
        model = _model_schema(node, shared)
        if model is not None:
            if model["cls"] not in effective:
                effective[model["cls"]] = model
                pending.extend(f["schema"] for f in model["schema"]["fields"].values())
        elif node["type"] in ("default", *_CONTAINERS):
            keys = ("schema", "items_schema", "values_schema")
            pending.extend(node[k] for k in keys if k in node)
            pending.extend(c[0] if isinstance(c, tuple) else c for c in node.get("choices", ()))
    return shared, effective


def _model_schema(schema: Any, shared: dict[str, Any]) -> Any:
    """The model schema `schema` stands for, without its validators; else None."""
    if schema["type"] == "definition-ref":
        schema = shared[schema["schema_ref"]]
    # A model with cross-field rules is wrapped in its (after) validators.
    while schema["type"].startswith("function-") and _kind(schema.get("schema")) == "model":
        schema = schema["schema"]
    return schema if schema["type"] == "model" else None


@cache
def _layer_json_schema(name: str, doc: str | None) -> Any:
    """A layer's JSON Schema hook: what a model's schema takes from its class
    (title, docstring, closed to unknown keys). pydantic 2.10 ignores
    ``pydantic_js_updates`` and ``extra_behavior`` in a typed dict's schema."""
    updates: dict[str, Any] = {"title": name, "additionalProperties": False}
    if doc:
        updates["description"] = inspect.cleandoc(doc)

    def hook(schema: Any, handler: Any) -> Any:
        json_schema = handler.resolve_ref_schema(handler(schema))
        json_schema.update(updates)
        return json_schema

    return hook


def _kind(schema: Any) -> Any:
    return schema["type"] if isinstance(schema, dict) else None


def _mentions_model(schema: Any) -> bool:
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") in ("model", "definition-ref"):
                return True
            stack.extend(v for k, v in node.items() if k not in ("metadata", "cls", "function"))
        elif isinstance(node, list | tuple):
            stack.extend(node)
    return False


class SettingsLayer(_Layer, model=Settings):
    pass


class GatewayLayer(_Layer, model=Gateway):
    pass


class MeshLayer(_Layer, model=Mesh):
    pass


class ResilienceLayer(_Layer, model=Resilience):
    pass


class NetworkLayer(_Layer, model=Network):
    pass


class DataLayer(_Layer, model=Data):
    pass


class TlsLayer(_Layer, model=Tls):
    pass


class SecretsLayer(_Layer, model=Secrets):
    pass


class ObservabilityLayer(_Layer, model=Observability):
    pass


# --------------------------------------------------------------------------
# The document


class Metadata(Model):
    name: DnsLabel = Field(description="Platform name; prefixes GitOps object names.")
    description: Text | None = Field(None, description="One line about the platform.")


FLUX_NAMESPACE = "flux-system"


class GitOps(Model):
    """Where the rendered tree lives and which engine syncs it."""

    engine: Literal["argocd", "flux"] = Field(
        description="GitOps engine that syncs the tree: Argo CD (`argocd`) or Flux (`flux`)."
    )
    repo_url: Annotated[
        str, StringConstraints(pattern=r"^(https://|ssh://|git@)[^\s]+$", max_length=512)
    ] = Field(alias="repoURL", description="Git repository the rendered tree is committed to.")
    revision: Annotated[
        str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$", max_length=255)
    ] = Field("HEAD", description="Branch, tag or commit to sync.")
    path: Annotated[
        str,
        StringConstraints(
            pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$",
            max_length=255,
        ),
    ] = Field("rendered", description="Path of the rendered tree inside the repository.")
    # The default follows the engine (each one's conventional namespace), so it is
    # computed from the validated `engine` and left out of the published schema.
    namespace: DnsLabel = Field(
        default_factory=lambda data: FLUX_NAMESPACE if data.get("engine") == "flux" else "argocd",
        description="Namespace the GitOps engine runs in, where meshctl puts its GitOps "
        "objects; defaults to `argocd` for Argo CD and `flux-system` for Flux.",
    )


class Cluster(Model):
    """Argo CD destination: an API server URL or a cluster name known to Argo CD."""

    server: Annotated[str, StringConstraints(pattern=r"^https://[^\s]+$")] | None = Field(
        None, description="API server URL, e.g. https://kubernetes.default.svc."
    )
    name: DnsLabel | None = Field(None, description="Name of a cluster registered in Argo CD.")

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.server is None) == (self.name is None):
            raise ValueError("set exactly one of server and name")
        return self


Policy = Literal[
    "mtls-strict",
    "tls-min-version",
    "disruption-budgets",
    "resource-limits",
    "default-deny",
    "backups",
]


class Waiver(Model):
    """A recorded exception to a production policy."""

    policy: Policy = Field(description="The production policy waived.")
    reason: Text = Field(min_length=10, description="Why; kept in the rendered AppProject.")


class Environment(Model):
    profile: DnsLabel = Field(description="Profile the environment starts from.")
    cluster: Cluster = Field(
        default_factory=lambda: Cluster(server="https://kubernetes.default.svc"),
        description="Where Argo CD deploys this environment.",
    )
    overrides: SettingsLayer = Field(
        default_factory=SettingsLayer,
        description="Settings for this environment only; the top layer.",
    )
    waivers: list[Waiver] = Field(
        default_factory=_empty_list, description="Production policies this environment may break."
    )


class ServiceRateLimit(RateLimit):
    pass


# RFC 3986 path characters; percent-encoding must be well formed and may not
# encode a slash (Kubernetes rejects %2F in Ingress paths). Segments may not be
# "." or ".." (a leading dot needs a non-dot after it).
_PCHAR = r"(?:[A-Za-z0-9_~!$&'()*+,;=:@-]|%(?:[013-9A-Fa-f][0-9A-Fa-f]|2[0-9A-Ea-e]))"
_SEGMENT = rf"(?:{_PCHAR}|\.{_PCHAR})(?:{_PCHAR}|\.)*"
PATH_PATTERN = rf"^(/{_SEGMENT})*/?$"


class Route(Model):
    """A public route through Kong to the service."""

    name: DnsLabel | None = Field(
        None,
        description="Name of the route's Ingress; defaults to the service name (or "
        "<service>-<index> when the service has several routes).",
    )
    host: Hostname = Field(
        description="FQDN, or a single label that is put under the environment's domain."
    )
    paths: list[Annotated[str, StringConstraints(pattern=PATH_PATTERN, max_length=512)]] = Field(
        min_length=1, description="Path prefixes."
    )
    strip_path: bool = Field(False, description="Remove the matched prefix upstream.")


class ServiceMetrics(Model):
    port: int = Field(ge=1, le=65535, description="Container port of the metrics endpoint.")
    path: Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9._~/-]*$")] = Field(
        "/metrics", description="HTTP path of the metrics endpoint."
    )


class Service(Model):
    """A workload in the mesh. meshctl routes to it and guards it; it does not deploy it."""

    name: DnsLabel = Field(description="Service name; also its Kubernetes Service name.")
    namespace: DnsLabel
    port: int = Field(ge=1, le=65535, description="Port of the Kubernetes Service.")
    description: Text | None = None
    service_account: DnsLabel | None = Field(
        None, description="Workload service account; defaults to the service name."
    )
    selector: dict[
        Annotated[str, StringConstraints(pattern=r"^([a-z0-9.-]+/)?[A-Za-z0-9._-]+$")],
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{0,63}$")],
    ] = Field(default_factory=_empty_dict, description="Pod labels; defaults to app: <name>.")
    routes: list[Route] = Field(default_factory=_empty_list)
    allow_from: list[DnsLabel] = Field(
        default_factory=_empty_list,
        description="Callers allowed in: service names, or `gateway` for Kong. Everything else "
        "is denied.",
    )
    uses: list[DnsLabel] = Field(
        default_factory=_empty_list,
        description="What this one calls: services (each must allow it in) and the data tier "
        "(`postgres`, `redis`, `elasticsearch`), which gives it credentials and network access.",
    )
    rate_limit: ServiceRateLimit | None = Field(
        None, description="Rate limit on this service's routes (overrides the global one)."
    )
    metrics: ServiceMetrics | None = Field(
        None, description="Where the service's pods serve Prometheus metrics; unset: none."
    )

    @property
    def account(self) -> str:
        return self.service_account or self.name

    @property
    def pod_selector(self) -> dict[str, str]:
        return dict(self.selector) or {"app": self.name}


class PlatformSpec(Model):
    domain: Hostname | None = Field(None, description="Base DNS domain of the platform.")
    gitops: GitOps
    environments: dict[DnsLabel, Environment] = Field(min_length=1)
    gateway: GatewayLayer | None = Field(None, description="Kong Gateway, for every environment.")
    mesh: MeshLayer | None = Field(None, description="Istio, for every environment.")
    network: NetworkLayer | None = Field(
        None, description="Calico networking and policy, for every environment."
    )
    data: DataLayer | None = Field(None, description="The data tier, for every environment.")
    tls: TlsLayer | None = Field(
        None, description="Certificates through cert-manager, for every environment."
    )
    secrets: SecretsLayer | None = Field(
        None, description="The external secret store, for every environment."
    )
    observability: ObservabilityLayer | None = Field(
        None, description="Metrics, alerting and SLO alerts, for every environment."
    )
    resilience: ResilienceLayer | None = Field(
        None, description="Disruption budgets and spreading, for every environment."
    )
    services: list[Service] = Field(default_factory=_empty_list)


class PlatformDocument(Model):
    """A meshctl platform spec (platform.yaml)."""

    api_version: Literal["meshctl.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Platform"]
    metadata: Metadata
    spec: PlatformSpec


class ProfileDocument(Model):
    """A profile file: named settings layered under the spec, possibly on another profile."""

    name: DnsLabel
    description: Text
    extends: DnsLabel | None = None
    production: bool | None = Field(
        None, description="Production policies apply (inherited when unset)."
    )
    settings: SettingsLayer = Field(
        default_factory=SettingsLayer, description="The profile's settings layer."
    )
