"""Logs: Fluent Bit on every node ships container logs to Elasticsearch, and a
job keeps the log indices to the profile's retention.

**Fluent Bit.** The `fluent-bit` chart runs a DaemonSet ``fluent-bit`` in the
observability namespace (the release name is the chart's fullname, so its pods
carry ``telemetry.FLUENT_BIT_PODS``, the labels Calico admits to
Elasticsearch). It tolerates every taint and runs at ``system-node-critical``,
so every node's logs are read and the shipper is evicted after the workloads
it ships for. The pipeline (``templates/logs/pipeline.yaml.j2``, written as the
chart's classic-format ``config`` strings): the tail input reads
``/var/log/containers/*.log`` with the CRI multiline parser (containerd), keeps
its offsets in a database and buffers chunks on disk, both in a hostPath
directory that outlives the pod; Fluent Bit's own files are excluded, or its
errors about Elasticsearch would be shipped to Elasticsearch. The kubernetes
filter adds pod metadata and labels (not annotations) and merges a line that
is a JSON object into structured fields under ``log_processed`` rather than at
the top level, where an application's ``@timestamp`` or ``kubernetes`` key
would collide with the record's own. The es output writes daily indices
``platform-logs-YYYY.MM.DD`` over TLS, verifying the certificate and host name
against ECK's CA (the ``fluent-bit-elasticsearch-ca`` copy, mounted), as the
user ``fluent-bit`` whose name and password come from the Secret
``fluent-bit-elasticsearch`` into environment variables that Fluent Bit expands
in its configuration; the configuration holds no credential.

**What the role allows.** ``Write_Operation create`` is stated: bulk
``create`` actions need the ``create_doc`` index privilege, and the first
document of the day creates the index, which needs ``create_index``; both are
in telemetry.py's role for ``platform-logs-*``.

**Not losing logs silently.** Chunks that cannot be sent stay on disk
(``storage.total_limit_size`` per node, the oldest dropped past it) and are
retried with exponential backoff capped at five minutes, ``Retry_Limit``
times (on average over two hours of outage). A chunk dropped after that, or
over the limit, is logged and counted in ``fluentbit_output_retries_failed_total``
or ``fluentbit_output_dropped_records_total`` (the PodMonitor scrapes them),
and the PrometheusRule ``fluent-bit`` raises a ticket: ``FluentBitDroppingLogs``
as soon as a node drops records, ``FluentBitRetrying`` when a node has been
retrying for 15 minutes (logs late, and lost if it goes on for hours). A
Fluent Bit that does not run is for the rules kube-prometheus-stack already
has (``KubeDaemonSetRolloutStuck``, ``TargetDown``). The es output counts a
bulk request as sent when any of its documents was accepted; ``Trace_Error``
logs the documents Elasticsearch refused. The readiness probe
(``/api/v2/health``) fails when the output reports errors it cannot retry or
drops chunks after their last retry; the liveness probe does not (a restart
would not bring Elasticsearch back).

**Order.** The release syncs at wave 11, the last: nothing waits for Fluent
Bit, and its readiness depends on Elasticsearch taking its logs, so at an
earlier wave a struggling Elasticsearch would hold back every later wave of
each sync (Argo CD's app-of-apps waits for a wave's Applications to be healthy
before the next). Wave 11 is also after everything it needs wherever it is:
the credentials (foundation), Elasticsearch and the CA copy elastic.py makes
(data stage for the platform's own clients, resources for services), the
quota that admits its priority class (resources, wave 10); a pod that mounts
a Secret does not start before the Secret exists. Under Flux the HelmRelease
dependsOn the lower waves' releases only, and its pods wait for those Secrets.
Starting late loses nothing: the tail input reads files it finds without an
offset from their start (``Read_from_Head``), so what containers wrote before
Fluent Bit came to their node is shipped, as far as the kubelet's log rotation
kept it.

**Retention.** Elasticsearch deletes old indices itself through the ILM policy
``platform-logs`` (delete phase at ``retentionDays``, counted from each
index's creation). The index template ``platform-logs`` attaches the policy to
every new ``platform-logs-*`` index, with one shard and no replica on a
single-node cluster (a replica there would never be assigned, and the
cluster would stay yellow), one replica otherwise. A CronJob ``log-retention``
(resources stage) PUTs both every hour, idempotently, as the user
``log-retention`` (``manage_ilm``, ``manage_index_templates``, ``manage`` on
the log indices), and PUTs the policy and replica count onto the existing
``platform-logs-*`` indices: Fluent Bit may create the first index before the
job first runs (up to an hour after the sync), and that index would otherwise
never be deleted. The JSON bodies live in a ConfigMap next to it.
"""

from __future__ import annotations

import json
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
from meshctl.errors import RenderError

COMPONENT = "logs"
CHART = "fluent-bit"
# Release name == chart name: the chart's fullname and its pod labels
# (app.kubernetes.io/name and /instance) are both "fluent-bit".
RELEASE = "fluent-bit"
# The last wave, after everything it mounts (module docstring, "Order").
WAVE = RESOURCES_WAVE + 1
CLIENT = "fluent-bit"  # telemetry.elasticsearch_clients: user, Secrets <client>-elasticsearch*
RETENTION = "log-retention"
PRIORITY_CLASS = "system-node-critical"
CRITICAL_PODS_QUOTA = "fluent-bit-critical-pods"
# A ceiling on the DaemonSet's pods, one per node: Kubernetes' largest
# supported cluster.
MAX_NODES = 5000

# The chart's container port "http" (metricsPort): HTTP server, health, metrics.
HTTP_PORT = 2020
HTTP_PORT_NAME = "http"
METRICS_PATH = "/api/v2/metrics/prometheus"

# Keys of the Secrets elastic.py makes for each client.
URL_KEY, USERNAME_KEY, PASSWORD_KEY, CA_KEY = "url", "username", "password", "ca.crt"
USER_ENV = "FLUENT_ELASTICSEARCH_USER"
PASSWORD_ENV = "FLUENT_ELASTICSEARCH_PASSWORD"

# On the node: the tail offsets database and the filesystem buffer.
STATE_VOLUME = "state"
STATE_DIR = "/var/lib/fluent-bit"
CA_VOLUME = "elasticsearch-ca"
CA_DIR = "/fluent-bit/elasticsearch-ca"

# Merged JSON log lines go under this key (see the module docstring).
MERGE_KEY = "log_processed"
# Retries: each wait is random between scheduler.base seconds and a bound that
# doubles per retry up to scheduler.cap; 60 retries average 2.3 hours.
SCHEDULER_BASE, SCHEDULER_CAP, RETRY_LIMIT = 5, 300, 60
STORAGE_LIMIT = "2G"  # per node, for the es output's queue
MAX_CHUNKS_UP = 32  # ~2 MB each in memory; more chunks wait on disk

# The retention job.
RETENTION_IMAGE = "curlimages/curl:8.16.0"
RETENTION_USER_ID = 65532
RETENTION_SCHEDULE = "7 * * * *"  # hourly
BODIES_DIR = "/etc/log-retention"
RETENTION_CA_DIR = "/etc/elasticsearch-ca"
POLICY_FILE, TEMPLATE_FILE, SETTINGS_FILE = "policy.json", "template.json", "settings.json"
RETENTION_RESOURCES = {
    "requests": {"cpu": "10m", "memory": "16Mi"},
    "limits": {"memory": "64Mi"},
}
# Above the stack's built-in templates (logs-*-* is 100), which do not match
# these names anyway; an operator's own template for the same names wins
# only with a higher priority.
TEMPLATE_PRIORITY = 200
# Kept whole in the index (searchable as keywords up to this length): one
# application logging `status` as a number and another as an object would
# otherwise be a mapping conflict, and Elasticsearch would refuse the second.
FLATTENED_IGNORE_ABOVE = 4096
RUNBOOK = "docs/logs.md#when-elasticsearch-is-down"


def enabled(ctx: BuildContext) -> bool:
    observability = ctx.settings.observability
    return (
        observability.enabled
        and observability.logs.enabled
        and ctx.settings.data.elasticsearch.enabled
    )


def build(ctx: BuildContext) -> ComponentOutput:
    if not enabled(ctx):
        return ComponentOutput()
    namespace = ctx.settings.observability.namespace
    release = Release(RELEASE, CHART, namespace, fluent_bit_values(ctx), WAVE, COMPONENT)
    quota = ctx.render_one(
        "logs/critical-pods.yaml.j2",
        name=CRITICAL_PODS_QUOTA,
        namespace=namespace,
        pods=str(MAX_NODES),
        priority_class=PRIORITY_CLASS,
    )
    manifests = [
        Manifest(COMPONENT, "fluent-bit", quota, stage=layout.RESOURCES),
        Manifest(COMPONENT, "fluent-bit", _rules_manifest(ctx, namespace), stage=layout.RESOURCES),
    ]
    manifests += [
        Manifest(COMPONENT, "retention", doc, stage=layout.RESOURCES)
        for doc in _retention(ctx, namespace)
    ]
    return ComponentOutput([release], manifests)


def monitors(ctx: BuildContext) -> list[Monitor]:
    if not enabled(ctx):
        return []
    return [
        Monitor(
            "PodMonitor",
            RELEASE,
            [ctx.settings.observability.namespace],
            {"matchLabels": dict(telemetry.FLUENT_BIT_PODS)},
            [{"port": HTTP_PORT_NAME, "path": METRICS_PATH}],
            "Fluent Bit on every node: records read and sent, retries, dropped "
            "records, buffered chunks.",
        )
    ]


def job(ctx: BuildContext) -> str:
    """The scrape job of the PodMonitor's targets (the Prometheus Operator's
    <namespace>/<monitor> naming): the alerts select it, so another Fluent Bit
    in the same Prometheus never trips them."""
    return f"{ctx.settings.observability.namespace}/{RELEASE}"


def alert_rules(ctx: BuildContext) -> list[dict[str, Any]]:
    """Logs lost or late (module docstring); tickets, both."""
    on = f'job="{job(ctx)}"'
    by = "sum by (namespace, pod) "
    labels = {"environment": ctx.environment, "severity": "ticket"}
    dropped = (
        f"{by}(increase(fluentbit_output_dropped_records_total{{{on}}}[15m])) > 0\n"
        f"or\n{by}(increase(fluentbit_output_retries_failed_total{{{on}}}[15m])) > 0"
    )
    return [
        {
            "alert": "FluentBitDroppingLogs",
            "expr": dropped,
            "labels": labels,
            "annotations": {
                "summary": "Fluent Bit is dropping logs",
                "description": (
                    "Fluent Bit ({{ $labels.pod }}) dropped records in the last 15 minutes: "
                    "chunks that failed every retry, or the oldest chunks over the node's "
                    "buffer limit. Those logs are not in Elasticsearch. Its log says why."
                ),
                "runbook": RUNBOOK,
            },
        },
        {
            "alert": "FluentBitRetrying",
            "expr": f"{by}(rate(fluentbit_output_retries_total{{{on}}}[5m])) > 0",
            "for": "15m",
            "labels": labels,
            "annotations": {
                "summary": "Fluent Bit cannot deliver logs to Elasticsearch",
                "description": (
                    "Fluent Bit ({{ $labels.pod }}) has been retrying requests to "
                    "Elasticsearch for 15 minutes: logs are late and wait on the node's disk; "
                    "after about two hours of retries they are dropped."
                ),
                "runbook": RUNBOOK,
            },
        },
    ]


def _rules_manifest(ctx: BuildContext, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": RELEASE,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "meshctl"},
        },
        "spec": {"groups": [{"name": "fluent-bit", "rules": alert_rules(ctx)}]},
    }


# -- Fluent Bit ------------------------------------------------------------------------


def fluent_bit_values(ctx: BuildContext) -> dict[str, Any]:
    logs = ctx.settings.observability.logs
    return ctx.render_one(
        "logs/values.yaml.j2",
        priority_class=PRIORITY_CLASS,
        no_sidecar=telemetry.NO_SIDECAR,
        resources=container_resources(logs.resources),
        http_port=HTTP_PORT,
        user_env=USER_ENV,
        password_env=PASSWORD_ENV,
        credentials=telemetry.credentials_secret(CLIENT),
        username_key=USERNAME_KEY,
        password_key=PASSWORD_KEY,
        state_volume=STATE_VOLUME,
        state_dir=STATE_DIR,
        ca_volume=CA_VOLUME,
        ca_secret=telemetry.ca_secret(CLIENT),
        ca_key=CA_KEY,
        ca_dir=CA_DIR,
        config=pipeline(ctx),
    )


def pipeline(ctx: BuildContext) -> dict[str, str]:
    """The chart's config.service/inputs/filters/outputs, in classic format."""
    namespace = ctx.settings.observability.namespace
    parts = ctx.render_one(
        "logs/pipeline.yaml.j2",
        http_port=HTTP_PORT,
        storage_dir=f"{STATE_DIR}/storage/",
        max_chunks_up=MAX_CHUNKS_UP,
        scheduler_base=SCHEDULER_BASE,
        scheduler_cap=SCHEDULER_CAP,
        # <pod>_<namespace>_<container>-<id>.log: this release's pods and container.
        exclude_path=f"/var/log/containers/{RELEASE}-*_{namespace}_{CHART}-*.log",
        db_file=f"{STATE_DIR}/tail-containers.db",
        merge_key=MERGE_KEY,
        host=elastic.host(ctx),
        port=elastic.HTTP_PORT,
        user_env=USER_ENV,
        password_env=PASSWORD_ENV,
        ca_file=f"{CA_DIR}/{CA_KEY}",
        index_prefix=telemetry.LOG_INDEX_PREFIX,
        retry_limit=RETRY_LIMIT,
        storage_limit=STORAGE_LIMIT,
    )
    headers = {"service": "SERVICE", "inputs": "INPUT", "filters": "FILTER", "outputs": "OUTPUT"}
    return {part: classic(header, parts[part]) for part, header in headers.items()}


def classic(header: str, sections: list[list[list[Any]]]) -> str:
    """Sections of [key, value] pairs as Fluent Bit's classic configuration text.

    The chart passes the text through Helm's ``tpl``, and Fluent Bit reads one
    ``key value`` per line: a value that could start a template action or a
    new line is refused rather than written.
    """
    blocks = []
    for pairs in sections:
        lines = [f"[{header}]"]
        width = max(len(str(key)) for key, _ in pairs)
        for key, value in pairs:
            text = _classic_value(value)
            if "\n" in text or "{{" in text or text != text.strip() or not text:
                raise RenderError(f"Fluent Bit setting {key} cannot be written as {text!r}")
            lines.append(f"    {key:<{width}} {text}")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def _classic_value(value: Any) -> str:
    if isinstance(value, bool):
        return "On" if value else "Off"
    return str(value)


# -- Retention -------------------------------------------------------------------------


def ilm_policy(ctx: BuildContext) -> dict[str, Any]:
    days = ctx.settings.observability.logs.retention_days
    return {
        "policy": {
            "_meta": {"managed_by": "meshctl", "retention_days": days},
            "phases": {"delete": {"min_age": f"{days}d", "actions": {"delete": {}}}},
        }
    }


def replicas(ctx: BuildContext) -> int:
    # A replica is never allocated on the node that holds its primary.
    return 0 if ctx.settings.data.elasticsearch.nodes == 1 else 1


def index_template(ctx: BuildContext) -> dict[str, Any]:
    return {
        "index_patterns": [telemetry.LOG_INDICES],
        "priority": TEMPLATE_PRIORITY,
        "_meta": {"managed_by": "meshctl"},
        "template": {
            "settings": {
                "index.lifecycle.name": telemetry.LOG_INDEX_PREFIX,
                "index.number_of_shards": 1,
                "index.number_of_replicas": replicas(ctx),
            },
            "mappings": {
                "properties": {
                    "@timestamp": {"type": "date"},
                    MERGE_KEY: {"type": "flattened", "ignore_above": FLATTENED_IGNORE_ABOVE},
                }
            },
        },
    }


def index_settings(ctx: BuildContext) -> dict[str, Any]:
    """For indices that exist already (dynamic settings only)."""
    return {
        "index.lifecycle.name": telemetry.LOG_INDEX_PREFIX,
        "index.number_of_replicas": replicas(ctx),
    }


def retention_script() -> str:
    """PUT the policy, the template and the existing indices' settings.

    ``--fail-with-body`` makes an HTTP error fail the job (with Elasticsearch's
    reason in its log). curl blanks ``--user`` from its argument list; no other
    process shares the pod.
    """
    calls = [
        (f"_ilm/policy/{telemetry.LOG_INDEX_PREFIX}", POLICY_FILE),
        (f"_index_template/{telemetry.LOG_INDEX_PREFIX}", TEMPLATE_FILE),
        # No index yet (before Fluent Bit's first document) is not an error.
        (f"{telemetry.LOG_INDICES}/_settings?allow_no_indices=true", SETTINGS_FILE),
    ]
    lines = [
        "set -eu",
        "put() {",
        "  curl --silent --show-error --fail-with-body --max-time 60 --retry 3 "
        "--retry-connrefused \\",
        f'    --cacert {RETENTION_CA_DIR}/{CA_KEY} --user "$ES_USERNAME:$ES_PASSWORD" \\',
        '    --request PUT --header "Content-Type: application/json" \\',
        '    --data-binary "@$2" "$ES_URL/$1"',
        "  echo",
        "}",
        *(f"put '{path}' {BODIES_DIR}/{body}" for path, body in calls),
    ]
    return "\n".join(lines) + "\n"


def _json(body: dict[str, Any]) -> str:
    return json.dumps(body, indent=2, sort_keys=True) + "\n"


def _retention(ctx: BuildContext, namespace: str) -> list[dict[str, Any]]:
    bodies = {
        POLICY_FILE: _json(ilm_policy(ctx)),
        TEMPLATE_FILE: _json(index_template(ctx)),
        SETTINGS_FILE: _json(index_settings(ctx)),
    }
    return ctx.render(
        "logs/retention.yaml.j2",
        name=RETENTION,
        namespace=namespace,
        labels=dict(telemetry.LOG_RETENTION_PODS),
        pod_labels={**telemetry.LOG_RETENTION_PODS, **telemetry.NO_SIDECAR},
        bodies=bodies,
        retention=f"{ctx.settings.observability.logs.retention_days}d",
        schedule=RETENTION_SCHEDULE,
        user_id=RETENTION_USER_ID,
        image=RETENTION_IMAGE,
        script=retention_script(),
        credentials=telemetry.credentials_secret(RETENTION),
        url_key=URL_KEY,
        username_key=USERNAME_KEY,
        password_key=PASSWORD_KEY,
        resources=RETENTION_RESOURCES,
        bodies_dir=BODIES_DIR,
        ca_dir=RETENTION_CA_DIR,
        ca_secret=telemetry.ca_secret(RETENTION),
        ca_key=CA_KEY,
    )
