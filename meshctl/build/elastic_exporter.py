"""Elasticsearch metrics: the prometheus-community ``elasticsearch_exporter``.

ECK ships no Prometheus endpoint for Elasticsearch, so when observability and
the data tier's Elasticsearch are both on, a Deployment
``elasticsearch-exporter`` (one pod) in the observability namespace asks the
cluster's HTTP API for its health and its nodes' statistics at each scrape,
and a PodMonitor scrapes it. Plain manifests, no chart: the exporter is one
container, and its community chart would bring a Service, a ServiceMonitor
and keys meshctl would only turn off.

- **Who it is.** A file-realm user of its own, ``elasticsearch-exporter``
  (role ``platform-elasticsearch-exporter``: cluster ``monitor``, ``monitor``
  on the indices), one of ``telemetry.elasticsearch_clients``, so the
  Elasticsearch component makes its user and its two Secrets and Calico admits
  its pods (by ``telemetry.ELASTICSEARCH_EXPORTER_PODS``). The exporter exists
  exactly when that client does.
- **Credentials.** The username and password come from the Secret
  ``elasticsearch-exporter-elasticsearch`` (keys ``username``, ``password``)
  as ``ES_USERNAME`` and ``ES_PASSWORD``, the variables the exporter reads
  (1.3+) and puts into the URL it calls; ``--es.uri`` holds no credentials,
  so none is in the pod spec or in the exporter's logs. ECK's CA comes from
  the Secret ``elasticsearch-exporter-elasticsearch-ca`` (key ``ca.crt``),
  mounted read-only for ``--es.ca``: TLS is verified, never skipped.
- **What it collects.** Cluster health and, with ``--es.all``, every node's
  statistics (JVM heap, disk, thread pools) through the one HTTP Service:
  without it the exporter reports only the node the Service happened to pick.
  ``--es.indices`` is off: it adds about a hundred series per index, and the
  platform makes new indices every day (logs and spans, per retention day),
  so the series would grow with retention for figures no alert reads; each
  scrape would also fetch ``/_all/_stats`` from the cluster.
- **Timing.** The exporter queries Elasticsearch during the scrape: its
  timeout (10 s) stays under the PodMonitor's scrape timeout (15 s), so a
  slow cluster shows up as missing Elasticsearch series on a target that is
  up, not as a scrape failure that looks like a dead exporter.
- **Stage.** Resources (wave 10): the CA Secret is copied there, after the
  data stage made the cluster; the pod waits for it like any other mount.
- **Hardening.** Non-root (65534: the image's ``nobody``, which the kubelet
  cannot verify by name), read-only root file system, no capabilities, no
  privilege escalation, the runtime's seccomp profile, no service account
  token (it never calls the Kubernetes API), no sidecar (Elasticsearch is
  outside the mesh and Prometheus scrapes in plain HTTP).
- **One pod, no budget.** A missed scrape while it restarts costs nothing; a
  PodDisruptionBudget on one replica would only block node drains.

Health alerts (``health_rules``, for the data tier's PrometheusRule that
meshctl/build/slo.py makes): the exporter's own series only, each proven with
promtool in tests/test_elastic_exporter.py. They select the exporter's scrape
job (``<observability namespace>/elasticsearch-exporter``, the job name the
Prometheus Operator gives a PodMonitor's targets), so another exporter of
another cluster in the same Prometheus never trips them.

- ``ElasticsearchDown`` (page): the exporter runs but gets no cluster health.
  The exporter emits the health series only after a successful call, so their
  absence on a live target is the signal (``elasticsearch_cluster_health_up``
  is not a metric every release has).
- ``ElasticsearchExporterDown`` (ticket): no live target (pod gone, crashing,
  or not scraped), so none of the other alerts can fire.
- ``ElasticsearchClusterRed`` (page): a primary shard is unassigned, its
  index neither readable nor writable. ``ElasticsearchClusterYellow``
  (ticket) only with more than one node: a single node can never place a
  replica, and would be yellow for ever.
- ``ElasticsearchNodesMissing`` (ticket, with more than one node): fewer
  nodes than ``data.elasticsearch.nodes`` for 15 minutes (a node that does
  not come back; restarts are shorter). A lone node's absence is
  ``ElasticsearchDown``.
- ``ElasticsearchDiskSpaceLow``: a ticket below 15 % free (Elasticsearch's
  low watermark: no new shard goes to the node), a page below 10 % (past the
  high watermark it moves shards away; at 5 % it makes every index with a
  shard there read-only, and logs and spans stop). One alert name, so that
  Alertmanager's page-silences-ticket rule applies.
- ``ElasticsearchHeapHigh`` (ticket): JVM heap above 90 % for 15 minutes,
  the eve of long collections and circuit breakers tripping.

The exporter reads the CA at start only: after ECK renews its CA (a year by
default), the pod must be restarted; until then ``ElasticsearchDown`` fires.
See docs/elasticsearch-metrics.md.
"""

from __future__ import annotations

from typing import Any

from meshctl.build import elastic, telemetry
from meshctl.build.context import BuildContext, ComponentOutput, Manifest
from meshctl.build.telemetry import Monitor

COMPONENT = "elastic_exporter"
NAME = "elasticsearch-exporter"  # the Deployment, the PodMonitor, the Elasticsearch user
# Released 2025-02-27 (the project's release job pushes each v* tag to
# quay.io); the flags and ES_USERNAME/ES_PASSWORD are as its main.go reads them.
VERSION = "v1.9.0"
IMAGE = f"quay.io/prometheuscommunity/elasticsearch-exporter:{VERSION}"
PORT = 9114  # the exporter's registered port
PORT_NAME = "metrics"
HEALTH_PATH = "/healthz"  # answers 200 while the HTTP server runs
CA_DIR = "/etc/elasticsearch-exporter/ca"
CA_KEY = "ca.crt"  # the key of the CA copy (elastic.py's ca-secret template)
USERNAME_KEY = "username"  # keys of the client Secret (elastic.py's credentials)
PASSWORD_KEY = "password"
ES_TIMEOUT = "10s"
SCRAPE_INTERVAL = "30s"
SCRAPE_TIMEOUT = "15s"
USER_ID = 65534
# Without --es.indices the exporter decodes one health and one node-stats
# response per scrape and keeps nothing between scrapes: small for the few
# nodes a profile runs; raise the limit for clusters of dozens of nodes.
RESOURCES = {"requests": {"cpu": "25m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}
RUNBOOK = "docs/slo.md#data-tier-health"
# Free space on a node's data path: Elasticsearch's low watermark (85 % used)
# and a margin before its flood stage (95 % used).
DISK_TICKET_FREE = 0.15
DISK_PAGE_FREE = 0.10
HEAP_TICKET_USED = 0.9


def client(ctx: BuildContext) -> telemetry.ElasticsearchClient | None:
    """The exporter's Elasticsearch user, when the platform has one (observability
    and Elasticsearch both on)."""
    found = [c for c in telemetry.elasticsearch_clients(ctx) if c.name == NAME]
    return found[0] if found else None


def credentials_secret(user: telemetry.ElasticsearchClient) -> str:
    """The Secret elastic.py makes for a client: url, host, port, username, password."""
    return telemetry.credentials_secret(user.name)


def ca_secret(user: telemetry.ElasticsearchClient) -> str:
    """The copy of ECK's CA elastic.py makes for a client (key ca.crt)."""
    return telemetry.ca_secret(user.name)


def args(ctx: BuildContext) -> list[str]:
    return [
        f"--es.uri={elastic.url(ctx)}",
        f"--es.ca={CA_DIR}/{CA_KEY}",
        "--es.all",
        f"--es.timeout={ES_TIMEOUT}",
        f"--web.listen-address=:{PORT}",
    ]


def build(ctx: BuildContext) -> ComponentOutput:
    user = client(ctx)
    if user is None:
        return ComponentOutput()
    pod_labels = {
        **user.pods,
        "app.kubernetes.io/version": VERSION,
        "app.kubernetes.io/component": "metrics",
        # Elasticsearch is outside the mesh and Prometheus scrapes in plain
        # HTTP: a sidecar would only be in the way, whatever the namespace says.
        "sidecar.istio.io/inject": "false",
    }
    body = ctx.render_one(
        "elastic-exporter/deployment.yaml.j2",
        name=NAME,
        namespace=user.namespace,
        selector=dict(user.pods),
        pod_labels=pod_labels,
        image=IMAGE,
        args=args(ctx),
        port=PORT,
        port_name=PORT_NAME,
        health_path=HEALTH_PATH,
        credentials=credentials_secret(user),
        username_key=USERNAME_KEY,
        password_key=PASSWORD_KEY,
        ca_secret=ca_secret(user),
        ca_key=CA_KEY,
        ca_dir=CA_DIR,
        user_id=USER_ID,
        resources=RESOURCES,
    )
    return ComponentOutput(manifests=[Manifest(COMPONENT, "deployment", body)])


def monitors(ctx: BuildContext) -> list[Monitor]:
    user = client(ctx)
    if user is None:
        return []
    endpoint: dict[str, Any] = {
        "port": PORT_NAME,
        "path": "/metrics",
        "interval": SCRAPE_INTERVAL,
        "scrapeTimeout": SCRAPE_TIMEOUT,
    }
    return [
        Monitor(
            "PodMonitor",
            NAME,
            [user.namespace],
            {"matchLabels": dict(user.pods)},
            [endpoint],
            "elasticsearch_exporter: Elasticsearch's cluster health and every node's "
            "statistics (ECK has no metrics endpoint).",
        )
    ]


def job(ctx: BuildContext) -> str | None:
    """The scrape job of the exporter's target: the Prometheus Operator names a
    PodMonitor's targets <namespace>/<name>."""
    user = client(ctx)
    return None if user is None else f"{user.namespace}/{NAME}"


def health_rules(ctx: BuildContext) -> list[dict[str, Any]]:
    """Elasticsearch's health alerts, for the data tier's rule group (see the
    module docstring); none without the exporter."""
    scrape_job = job(ctx)
    if scrape_job is None:
        return []
    on = f'job="{scrape_job}"'
    nodes = ctx.settings.data.elasticsearch.nodes
    labels = {"environment": ctx.environment, "slo": "health"}

    def rule(
        alert: str, expr: str, wait: str, severity: str, *, summary: str, description: str
    ) -> dict[str, Any]:
        return {
            "alert": alert,
            "expr": expr,
            "for": wait,
            "labels": {**labels, "severity": severity},
            "annotations": {"summary": summary, "description": description, "runbook": RUNBOOK},
        }

    node = "Elasticsearch node {{ $labels.name }}"
    free = (
        f"elasticsearch_filesystem_data_available_bytes{{{on}}}\n"
        f"/\nelasticsearch_filesystem_data_size_bytes{{{on}}}"
    )
    rules = [
        rule(
            "ElasticsearchDown",
            f"up{{{on}}} == 1\nunless on (job)\nelasticsearch_cluster_health_status{{{on}}}",
            "5m",
            "page",
            summary="Elasticsearch does not answer its exporter",
            description=(
                "The exporter has had no cluster health from Elasticsearch for 5 minutes: the "
                "cluster is down or unreachable, or refuses the exporter's user or CA (see the "
                "exporter's log). Logs and spans are not being stored."
            ),
        ),
        rule(
            "ElasticsearchExporterDown",
            f"absent(up{{{on}}} == 1)",
            "10m",
            "ticket",
            summary="No Elasticsearch metrics: the exporter is not scraped",
            description=(
                "Prometheus has had no live elasticsearch-exporter target for 10 minutes, so "
                "no other Elasticsearch alert can fire. Check the exporter's pod and its log "
                "(label app.kubernetes.io/name=elasticsearch-exporter)."
            ),
        ),
        rule(
            "ElasticsearchClusterRed",
            f'elasticsearch_cluster_health_status{{{on},color="red"}} == 1',
            "5m",
            "page",
            summary="Elasticsearch cluster {{ $labels.cluster }} is red",
            description=(
                "A primary shard has been unassigned for 5 minutes: its index can be neither "
                "read nor written."
            ),
        ),
    ]
    if nodes > 1:
        # A single node can never place a replica (it would be yellow for
        # ever), and "fewer than one node" is never reported: ElasticsearchDown
        # says it.
        rules.append(
            rule(
                "ElasticsearchClusterYellow",
                f'elasticsearch_cluster_health_status{{{on},color="yellow"}} == 1',
                "30m",
                "ticket",
                summary="Elasticsearch cluster {{ $labels.cluster }} is yellow",
                description=(
                    "Replica shards have been unassigned for 30 minutes: one more node lost "
                    "would lose data."
                ),
            )
        )
        rules.append(
            rule(
                "ElasticsearchNodesMissing",
                f"elasticsearch_cluster_health_number_of_nodes{{{on}}} < {nodes}",
                "15m",
                "ticket",
                summary=(
                    "Elasticsearch cluster {{ $labels.cluster }} runs {{ $value }} of "
                    f"{nodes} nodes"
                ),
                description=(
                    f"Fewer than the {nodes} nodes of data.elasticsearch.nodes have been in the "
                    "cluster for 15 minutes."
                ),
            )
        )
    rules += [
        rule(
            "ElasticsearchDiskSpaceLow",
            f"{free} < {DISK_TICKET_FREE}",
            "15m",
            "ticket",
            summary=f"{node} has {{{{ $value | humanizePercentage }}}} of its disk free",
            description=(
                "Below Elasticsearch's low watermark (85 % used) no new shard is placed on "
                "the node; at 95 % every index with a shard there becomes read-only."
            ),
        ),
        rule(
            "ElasticsearchDiskSpaceLow",
            f"{free} < {DISK_PAGE_FREE}",
            "5m",
            "page",
            summary=f"{node} has {{{{ $value | humanizePercentage }}}} of its disk free",
            description=(
                "Past Elasticsearch's high watermark (90 % used) it moves shards away; at 95 % "
                "it makes every index with a shard on the node read-only, and logs and spans "
                "stop. Grow the volume or shorten retention now."
            ),
        ),
        rule(
            "ElasticsearchHeapHigh",
            f'elasticsearch_jvm_memory_used_bytes{{{on},area="heap"}}\n/\n'
            f'elasticsearch_jvm_memory_max_bytes{{{on},area="heap"}} > {HEAP_TICKET_USED}',
            "15m",
            "ticket",
            summary=f"{node} uses {{{{ $value | humanizePercentage }}}} of its heap",
            description=(
                "The JVM heap has been above 90 % for 15 minutes: expect long garbage "
                "collections and circuit breakers refusing requests. Raise "
                "data.elasticsearch.heap (and the memory with it)."
            ),
        ),
    ]
    return rules
