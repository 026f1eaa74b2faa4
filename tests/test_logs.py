"""Logs: Fluent Bit and the log indices' retention, from the rendered example.

Each check reads what a cluster would get (the overlays as kubectl builds them,
the Helm values file the fluent-bit Application reads) and cross-checks it
against the other objects it depends on, not against meshctl's constants:
the Elasticsearch host against the Elasticsearch resource, the CA path
against the volume that provides it, the environment variables against the
keys the ExternalSecret puts in the Secret, the index names against the role
in ECK's roles file, the retention against the profiles.
"""

from __future__ import annotations

import fnmatch
import json
import posixpath
import re
import shlex
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from meshctl.build import logs, telemetry
from meshctl.build.context import BuildContext, container_resources

import harness
from conftest import Rendered

ENVIRONMENTS = ("dev", "staging", "prod")
NAMESPACE = "monitoring"
# profiles/*.yaml: observability.logs.retentionDays (dev inherits default's).
RETENTION_DAYS = {"dev": 3, "staging": 14, "prod": 30}
TODAY = "2026.11.29"  # Logstash_DateFormat %Y.%m.%d of some day


# -- reading the rendered tree ----------------------------------------------------


def _objects(tree: Path, env: str) -> list[dict[str, Any]]:
    return harness.kustomize_build(tree / "overlays" / env)


def _values(tree: Path, env: str) -> dict[str, Any]:
    return yaml.safe_load((tree / f"overlays/{env}/values/fluent-bit.yaml").read_text())  # type: ignore[no-any-return]


def _context(rendered: Rendered, env: str) -> BuildContext:
    platform = rendered.result.platform
    return BuildContext(platform, platform.environments[env])


def parse_classic(text: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """Fluent Bit's classic format: `[SECTION]` headers, then `key value` lines
    (indented; the value is the rest of the line)."""
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        header = re.fullmatch(r"\[([A-Z_]+)\]", line.strip())
        if header:
            sections.append((header.group(1), []))
            continue
        assert line.startswith("    "), f"not inside a section: {line!r}"
        key, _, value = line.strip().partition(" ")
        assert value.strip(), f"{key} has no value"
        sections[-1][1].append((key, value.strip()))
    return sections


def _config(values: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    """The chart's fluent-bit.conf: config.service, inputs, filters, outputs in
    that order (templates/configmap.yaml). Keys are case-insensitive to Fluent
    Bit; the last of a repeated key wins, except Parsers_File."""
    text = "\n".join(values["config"][part] for part in ("service", "inputs", "filters", "outputs"))
    return [
        (name, {k.lower(): v for k, v in pairs if k.lower() != "parsers_file"})
        for name, pairs in parse_classic(text)
    ]


def _only(config: list[tuple[str, dict[str, str]]], section: str, name: str) -> dict[str, str]:
    found = [s for header, s in config if header == section and s.get("name") == name]
    assert len(found) == 1, f"{section} {name}: {len(found)} found"
    return found[0]


def _secret_keys(external_secret: dict[str, Any]) -> set[str]:
    """The keys of the Secret an ExternalSecret makes (a template lists them all)."""
    target = external_secret["spec"]["target"]
    template = target.get("template", {}).get("data")
    if template is not None:
        return set(template)
    return {d["secretKey"] for d in external_secret["spec"]["data"]}


def _volume_file(
    pod_volumes: list[dict[str, Any]], mounts: list[dict[str, Any]], path: str
) -> tuple[dict[str, Any], str]:
    """The volume that provides the file at `path`, and the file's key in it."""
    directory, name = posixpath.split(path)
    (mount,) = [m for m in mounts if m["mountPath"].rstrip("/") == directory]
    (volume,) = [v for v in pod_volumes if v["name"] == mount["name"]]
    return volume, name


# -- Fluent Bit --------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_tail_input_reads_every_container_log_with_offsets_on_the_node(
    example_tree: Rendered, env: str
) -> None:
    values = _values(example_tree.tree, env)
    config = _config(values)
    tail = _only(config, "INPUT", "tail")
    assert tail["path"] == "/var/log/containers/*.log"
    assert tail["multiline.parser"] == "cri"
    assert tail["storage.type"] == "filesystem"
    mounts = values["daemonSetVolumeMounts"]
    volumes = values["daemonSetVolumes"]
    # The offsets database and the chunk buffer sit on a writable hostPath
    # volume (they outlive the pod); /var/log itself is only read.
    (service,) = [s for header, s in config if header == "SERVICE"]
    for path in (tail["db"], service["storage.path"].rstrip("/") + "/chunk"):
        (mount,) = [m for m in mounts if path.startswith(m["mountPath"].rstrip("/") + "/")]
        assert not mount.get("readOnly", False), path
        (volume,) = [v for v in volumes if v["name"] == mount["name"]]
        assert volume["hostPath"]["type"] == "DirectoryOrCreate"
    (logs_mount,) = [m for m in mounts if m["mountPath"] == "/var/log"]
    assert logs_mount["readOnly"] is True


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_fluent_bits_own_logs_are_not_shipped(example_tree: Rendered, env: str) -> None:
    tail = _only(_config(_values(example_tree.tree, env)), "INPUT", "tail")
    excluded = tail["exclude_path"].split(",")
    container_id = "0" * 64
    # <pod>_<namespace>_<container>-<id>.log; the DaemonSet's pods are
    # <fullname>-<suffix>, its container is the chart's name.
    own = f"/var/log/containers/fluent-bit-x7k2p_{NAMESPACE}_fluent-bit-{container_id}.log"
    other = f"/var/log/containers/api-6d9f-x7k2p_ai-api_api-{container_id}.log"
    same_name_elsewhere = f"/var/log/containers/fluent-bit-x7k2p_team_fluent-bit-{container_id}.log"
    assert any(fnmatch.fnmatchcase(own, pattern) for pattern in excluded)
    assert not any(fnmatch.fnmatchcase(other, pattern) for pattern in excluded)
    assert not any(fnmatch.fnmatchcase(same_name_elsewhere, pattern) for pattern in excluded)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_kubernetes_filter_merges_json_lines_of_the_tailed_records(
    example_tree: Rendered, env: str
) -> None:
    config = _config(_values(example_tree.tree, env))
    tail = _only(config, "INPUT", "tail")
    kubernetes = _only(config, "FILTER", "kubernetes")
    # The filter reads pod and namespace from the tag after its prefix (default
    # kube.var.log.containers.), which tail makes from Tag and the file's path.
    assert tail["tag"] == "kube.*"
    assert kubernetes.get("kube_tag_prefix", "kube.var.log.containers.") == (
        "kube.var.log.containers."
    )
    assert fnmatch.fnmatchcase("kube.var.log.containers.a_b_c-1.log", kubernetes["match"])
    assert kubernetes["merge_log"] == "On"
    assert kubernetes["merge_log_key"]
    assert kubernetes["labels"] == "On"


def _client_pod(values: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes = [*values["daemonSetVolumes"], *values["extraVolumes"]]
    mounts = [*values["daemonSetVolumeMounts"], *values["extraVolumeMounts"]]
    return volumes, mounts


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_es_output_reaches_elasticsearch_over_verified_tls(
    example_tree: Rendered, env: str
) -> None:
    objects = _objects(example_tree.tree, env)
    values = _values(example_tree.tree, env)
    es = _only(_config(values), "OUTPUT", "es")
    cluster = next(o for o in objects if o["kind"] == "Elasticsearch")
    # ECK's HTTP Service: <name>-es-http in the cluster's namespace, TLS on 9200.
    name, namespace = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    assert es["host"] == f"{name}-es-http.{namespace}.svc"
    assert es["port"] == "9200"
    assert (
        cluster["spec"]
        .get("http", {})
        .get("tls", {})
        .get("selfSignedCertificate", {})
        .get("disabled")
        is not True
    )
    assert es["tls"] == "On"
    assert es["tls.verify"] == "On"
    assert es["tls.verify_hostname"] == "On"
    assert fnmatch.fnmatchcase("kube.var.log.containers.a_b_c-1.log", es["match"])
    # The CA file is what the mounted Secret volume holds, and that Secret is
    # the copy of ECK's CA the ExternalSecret makes.
    volumes, mounts = _client_pod(values)
    volume, key = _volume_file(volumes, mounts, es["tls.ca_file"])
    secret_name = volume["secret"]["secretName"]
    assert key in {item["path"] for item in volume["secret"]["items"]}
    (item,) = [i for i in volume["secret"]["items"] if i["path"] == key]
    copy = harness.one(objects, "ExternalSecret", secret_name)
    assert copy["metadata"]["namespace"] == NAMESPACE
    assert item["key"] in _secret_keys(copy)
    assert {d["remoteRef"]["key"] for d in copy["spec"]["data"]} == {f"{name}-es-http-certs-public"}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_credentials_come_from_the_client_secret(example_tree: Rendered, env: str) -> None:
    objects = _objects(example_tree.tree, env)
    values = _values(example_tree.tree, env)
    es = _only(_config(values), "OUTPUT", "es")
    env_vars = {e["name"]: e for e in values["env"]}
    for setting, secret_key in (("http_user", "username"), ("http_passwd", "password")):
        reference = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", es[setting])
        assert reference, f"{setting} is not a ${{VARIABLE}}: no literal credential"
        variable = env_vars[reference.group(1)]
        assert "value" not in variable
        ref = variable["valueFrom"]["secretKeyRef"]
        assert ref["key"] == secret_key
        credentials = harness.one(objects, "ExternalSecret", ref["name"])
        assert credentials["metadata"]["namespace"] == NAMESPACE
        assert ref["key"] in _secret_keys(credentials)
    # The user the Secret names is the one ECK's file realm knows as fluent-bit.
    credentials = harness.one(objects, "ExternalSecret", "fluent-bit-elasticsearch")
    assert credentials["spec"]["target"]["template"]["data"]["username"] == "fluent-bit"


def _role(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    roles_secret = next(
        o for o in objects if o["kind"] == "Secret" and "roles.yml" in o.get("stringData", {})
    )
    return yaml.safe_load(roles_secret["stringData"]["roles.yml"])[name]  # type: ignore[no-any-return]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_daily_indices_are_ones_the_role_may_create_and_write(
    example_tree: Rendered, env: str
) -> None:
    objects = _objects(example_tree.tree, env)
    es = _only(_config(_values(example_tree.tree, env)), "OUTPUT", "es")
    assert es["logstash_format"] == "On"
    assert es["logstash_dateformat"] == "%Y.%m.%d"
    assert es["suppress_type_name"] == "On"
    assert es["replace_dots"] == "On"
    index = f"{es['logstash_prefix']}-{TODAY}"
    # Bulk `create` actions need create_doc; the day's first document creates
    # the index, which needs create_index (or auto_configure, or manage).
    assert es["write_operation"] == "create"
    granted: set[str] = set()
    for entry in _role(objects, "platform-fluent-bit")["indices"]:
        if any(fnmatch.fnmatchcase(index, pattern) for pattern in entry["names"]):
            granted |= set(entry["privileges"])
    assert "create_doc" in granted or granted & {"create", "index", "write", "all"}
    assert granted & {"create_index", "auto_configure", "manage", "all"}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_no_credential_in_the_values(example_tree: Rendered, env: str) -> None:
    text = (example_tree.tree / f"overlays/{env}/values/fluent-bit.yaml").read_text()
    values = yaml.safe_load(text)
    assert all("valueFrom" in e and "value" not in e for e in values["env"])
    # Helm renders the config strings through `tpl`: no template action in them.
    assert "{{" not in text
    assert "password:" not in text.lower()


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_node_and_the_metrics_endpoint(example_tree: Rendered, env: str) -> None:
    values = _values(example_tree.tree, env)
    assert values["kind"] == "DaemonSet"
    assert values["tolerations"] == [{"operator": "Exists"}]
    (service,) = [s for header, s in _config(values) if header == "SERVICE"]
    # The chart declares containerPort `http` as metricsPort; Fluent Bit must
    # serve there.
    assert service["http_server"] == "On"
    assert int(service["http_port"]) == values["metricsPort"]
    for chart_monitor in ("serviceMonitor", "prometheusRule", "dashboards"):
        assert values[chart_monitor]["enabled"] is False
    # Out of the mesh even in a namespace with injection; and the chart's own
    # selector labels are not overridden (a duplicate key in its template).
    assert values["podLabels"] == {"sidecar.istio.io/inject": "false"}
    assert not values["podLabels"].keys() & telemetry.FLUENT_BIT_PODS.keys()
    context = _context(example_tree, env)
    expected = container_resources(context.settings.observability.logs.resources)
    assert values["resources"] == expected


def test_podmonitor_selects_the_charts_pods(example_tree: Rendered) -> None:
    objects = _objects(example_tree.tree, "prod")
    monitor = harness.one(objects, "PodMonitor", "fluent-bit")
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint == {"port": "http", "path": "/api/v2/metrics/prometheus"}
    # The chart labels its pods name=<chart name> (no nameOverride here) and
    # instance=<release name>, which the Application sets.
    values = _values(example_tree.tree, "prod")
    assert not values.get("nameOverride") and not values.get("fullnameOverride")
    app = next(
        o
        for o in objects
        if o["kind"] == "Application" and o["metadata"]["name"].endswith("-fluent-bit")
    )
    (chart_source,) = [s for s in app["spec"]["sources"] if "chart" in s]
    pod_labels = {
        "app.kubernetes.io/name": chart_source["chart"],
        "app.kubernetes.io/instance": chart_source["helm"]["releaseName"],
    }
    assert monitor["spec"]["selector"]["matchLabels"] == pod_labels
    # The same labels are the ones Calico admits to Elasticsearch.
    assert pod_labels == telemetry.FLUENT_BIT_PODS


def _wave(app: dict[str, Any]) -> int:
    return int(app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])


def _stage_of(tree: Path, env: str, kind: str, name: str) -> str:
    """The stage folder (foundation, data, resources) an object was written to."""
    for folder in (tree / "overlays" / env, tree / "base"):
        for path in folder.glob("*/*/*.yaml"):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc and doc["kind"] == kind and doc["metadata"]["name"] == name:
                    return path.parent.parent.name
    raise AssertionError(f"{kind} {name} not written")


def test_fluent_bit_syncs_after_what_it_mounts(example_tree: Rendered) -> None:
    objects = _objects(example_tree.tree, "prod")
    apps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Application"}
    project = "parallel-ai-prod"
    fluent_bit = _wave(apps[f"{project}-fluent-bit"])
    needs = [
        ("ExternalSecret", "fluent-bit-elasticsearch"),
        ("ExternalSecret", "fluent-bit-elasticsearch-ca"),
        ("Elasticsearch", "elasticsearch"),
        ("ResourceQuota", logs.CRITICAL_PODS_QUOTA),
    ]
    for kind, name in needs:
        stage = _stage_of(example_tree.tree, "prod", kind, name)
        assert _wave(apps[f"{project}-{stage}"]) < fluent_bit, f"{kind} {name} ({stage})"
    # And last: nothing waits for it.
    assert fluent_bit == max(_wave(a) for a in apps.values())


def test_priority_class_is_admitted_by_a_quota(example_tree: Rendered) -> None:
    objects = _objects(example_tree.tree, "prod")
    values = _values(example_tree.tree, "prod")
    quota = harness.one(objects, "ResourceQuota", logs.CRITICAL_PODS_QUOTA)
    assert quota["metadata"]["namespace"] == NAMESPACE
    (expression,) = quota["spec"]["scopeSelector"]["matchExpressions"]
    assert expression["scopeName"] == "PriorityClass"
    assert values["priorityClassName"] in expression["values"]


# -- retention ---------------------------------------------------------------------


def _bodies(objects: list[dict[str, Any]]) -> dict[str, Any]:
    config_map = harness.one(objects, "ConfigMap", "log-retention")
    assert config_map["metadata"]["namespace"] == NAMESPACE
    return {key: json.loads(text) for key, text in config_map["data"].items()}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_retention_follows_the_profile(example_tree: Rendered, env: str) -> None:
    objects = _objects(example_tree.tree, env)
    bodies = _bodies(objects)
    policy = bodies["policy.json"]["policy"]
    assert policy["phases"] == {
        "delete": {"min_age": f"{RETENTION_DAYS[env]}d", "actions": {"delete": {}}}
    }
    template = bodies["template.json"]
    assert template["index_patterns"] == [telemetry.LOG_INDICES]
    settings = template["template"]["settings"]
    # One replica where there is a second node to hold it.
    cluster = harness.one(objects, "Elasticsearch", "elasticsearch")
    nodes = sum(n["count"] for n in cluster["spec"]["nodeSets"])
    assert settings["index.number_of_replicas"] == (0 if nodes == 1 else 1)
    existing = bodies["settings.json"]
    assert existing["index.lifecycle.name"] == settings["index.lifecycle.name"]
    assert existing["index.number_of_replicas"] == settings["index.number_of_replicas"]
    # Only dynamic settings can be put on an existing index.
    assert "index.number_of_shards" not in existing


def test_profiles_differ_in_retention(example_tree: Rendered) -> None:
    days = {
        env: _bodies(_objects(example_tree.tree, env))["policy.json"]["policy"]["phases"]["delete"][
            "min_age"
        ]
        for env in ENVIRONMENTS
    }
    assert len(set(days.values())) == len(ENVIRONMENTS)


def _cronjob_pod(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    cronjob = harness.one(objects, "CronJob", "log-retention")
    return cronjob, cronjob["spec"]["jobTemplate"]["spec"]["template"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_retention_job_uses_only_what_it_mounts(example_tree: Rendered, env: str) -> None:
    objects = _objects(example_tree.tree, env)
    bodies = _bodies(objects)
    _cronjob, pod = _cronjob_pod(objects)
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["/bin/sh", "-c"]
    (script,) = container["args"]
    volumes, mounts = pod["spec"]["volumes"], container["volumeMounts"]
    files = set(re.findall(r"/[A-Za-z0-9._/-]+\.(?:json|crt)", script))
    assert files
    for path in files:
        volume, key = _volume_file(volumes, mounts, path)
        if "configMap" in volume:
            assert volume["configMap"]["name"] == "log-retention"
            assert key in bodies
        else:
            secret = volume["secret"]
            assert key in {item["path"] for item in secret["items"]}
            copy = harness.one(objects, "ExternalSecret", secret["secretName"])
            assert {i["key"] for i in secret["items"]} <= _secret_keys(copy)
    # Every body is sent, and every variable the script reads is set from the
    # client Secret.
    assert {posixpath.basename(p) for p in files if p.endswith(".json")} == set(bodies)
    env_vars = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    used = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", script))
    assert used and used <= set(env_vars)
    credentials = harness.one(objects, "ExternalSecret", "log-retention-elasticsearch")
    assert {ref["name"] for ref in env_vars.values()} == {"log-retention-elasticsearch"}
    assert {ref["key"] for ref in env_vars.values()} <= _secret_keys(credentials)
    assert "--fail-with-body" in shlex.split(script.replace("\\\n", " "), comments=True)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_retention_job_calls_match_the_bodies(example_tree: Rendered, env: str) -> None:
    objects = _objects(example_tree.tree, env)
    bodies = _bodies(objects)
    _, pod = _cronjob_pod(objects)
    (script,) = pod["spec"]["containers"][0]["args"]
    calls = {
        posixpath.basename(body): path
        for path, body in re.findall(r"^put '([^']+)' (\S+)$", script, re.MULTILINE)
    }
    policy = bodies["template.json"]["template"]["settings"]["index.lifecycle.name"]
    assert calls["policy.json"] == f"_ilm/policy/{policy}"
    assert calls["template.json"].startswith("_index_template/")
    # The existing indices are the ones the template matches.
    target = calls["settings.json"].split("/")[0]
    assert target in bodies["template.json"]["index_patterns"]


def test_retention_job_runs_hourly_alone_and_unprivileged(example_tree: Rendered) -> None:
    objects = _objects(example_tree.tree, "prod")
    cronjob, pod = _cronjob_pod(objects)
    spec = cronjob["spec"]
    minute, hour, *rest = spec["schedule"].split()
    assert minute.isdigit() and hour == "*" and rest == ["*", "*", "*"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["jobTemplate"]["spec"]["ttlSecondsAfterFinished"] > 0
    pod_spec = pod["spec"]
    assert pod_spec["automountServiceAccountToken"] is False
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    (container,) = pod_spec["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+", container["image"])
    # Calico admits these pods to Elasticsearch by these labels.
    assert telemetry.LOG_RETENTION_PODS.items() <= pod["metadata"]["labels"].items()
    # A sidecar would keep the Job's pod running for ever.
    assert pod["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"


# -- off ---------------------------------------------------------------------------


def test_disabled_means_nothing(example_tree: Rendered) -> None:
    ctx = _context(example_tree, "dev")
    observability = ctx.settings.observability
    settings = ctx.settings.model_copy(
        update={
            "observability": observability.model_copy(
                update={"logs": observability.logs.model_copy(update={"enabled": False})}
            )
        }
    )
    off = BuildContext(ctx.platform, msgspec.structs.replace(ctx.plan, settings=settings))
    output = logs.build(off)
    assert output.releases == [] and output.manifests == []
    assert logs.monitors(off) == []
    # And on, the same context builds both.
    assert logs.build(ctx).releases and logs.monitors(ctx)


def test_a_value_that_would_break_the_config_is_refused() -> None:
    from meshctl.errors import RenderError

    assert logs.classic("INPUT", [[["Name", "tail"], ["Flag", True]]]) == (
        "[INPUT]\n    Name tail\n    Flag On\n"
    )
    for bad in ("a\n[OUTPUT]", "{{ .Values.x }}", " padded"):
        with pytest.raises(RenderError):
            logs.classic("INPUT", [[["Path", bad]]])


# -- alerts, proven with promtool --------------------------------------------------

OUTPUT = {"job": f"{NAMESPACE}/fluent-bit", "namespace": NAMESPACE, "pod": "fluent-bit-x7k2p"}
DROPPED = "fluentbit_output_dropped_records_total"
FAILED = "fluentbit_output_retries_failed_total"
RETRIES = "fluentbit_output_retries_total"


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted({**labels, "name": "es.0"}.items()))
    return {"series": f"{name}{{{inner}}}", "values": values}


def _quiet(labels: dict[str, str]) -> list[dict[str, str]]:
    return [_series(metric, labels, "0+0x60") for metric in (DROPPED, FAILED, RETRIES)]


def _alert_cases() -> list[tuple[str, list[dict[str, str]], int, dict[str, bool]]]:
    """(case, input series, minute, {alert: firing})."""
    other = {**OUTPUT, "job": "team/fluent-bit"}
    growing = "0+0x10 5+5x50"  # from minute 11 on, 5 more every minute
    return [
        ("quiet", _quiet(OUTPUT), 45, {"FluentBitDroppingLogs": False, "FluentBitRetrying": False}),
        (
            "dropped-over-the-limit",
            [*_quiet(OUTPUT)[1:], _series(DROPPED, OUTPUT, growing)],
            12,
            {"FluentBitDroppingLogs": True},
        ),
        (
            "retries-exhausted",
            [
                *(s for s in _quiet(OUTPUT) if FAILED not in s["series"]),
                _series(FAILED, OUTPUT, growing),
            ],
            12,
            {"FluentBitDroppingLogs": True},
        ),
        (
            "retrying-briefly",
            [
                *(s for s in _quiet(OUTPUT) if RETRIES not in s["series"]),
                _series(RETRIES, OUTPUT, growing),
            ],
            20,
            {"FluentBitRetrying": False},
        ),
        (
            "retrying",
            [
                *(s for s in _quiet(OUTPUT) if RETRIES not in s["series"]),
                _series(RETRIES, OUTPUT, growing),
            ],
            30,
            {"FluentBitRetrying": True},
        ),
        (
            "another-fluent-bit",
            [_series(DROPPED, other, growing), _series(RETRIES, other, growing)],
            40,
            {"FluentBitDroppingLogs": False, "FluentBitRetrying": False},
        ),
    ]


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_alerts_fire_when_logs_are_lost_or_late(
    example_tree: Rendered, tmp_path: Path, env: str
) -> None:
    objects = _objects(example_tree.tree, env)
    rule = harness.one(objects, "PrometheusRule", "fluent-bit")
    assert rule["metadata"]["namespace"] == NAMESPACE
    # The scrape job is the PodMonitor's, as the Prometheus Operator names it.
    monitor = harness.one(objects, "PodMonitor", "fluent-bit")
    assert OUTPUT["job"] == f"{monitor['metadata']['namespace']}/{monitor['metadata']['name']}"
    harness.promtool_check(rule["spec"]["groups"], tmp_path)
    tests = []
    for case, series, minute, expected in _alert_cases():
        checks = [
            {
                "eval_time": f"{minute}m",
                "alertname": alert,
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "namespace": NAMESPACE,
                            "pod": OUTPUT["pod"],
                            "environment": env,
                            "severity": "ticket",
                        }
                    }
                ]
                if firing
                else [],
            }
            for alert, firing in expected.items()
        ]
        tests.append(
            {"name": case, "interval": "1m", "input_series": series, "alert_rule_test": checks}
        )
    harness.promtool_test(rule["spec"]["groups"], tests, tmp_path)
