"""Tracing: Jaeger (the `jaeger` chart) and the spans Istio and Kong send it,
from the rendered example.

Asserted where a mistake would cost spans or leak a secret on a cluster:
retention and sampling per profile, the Elasticsearch URL, credentials and CA
wired from the Secrets the Elasticsearch component really makes, no password
in any value, a Jaeger configuration whose every reference resolves, span
destinations (Istio's provider, Kong's plugin) that are Jaeger's Service and
listening ports, index names the Elasticsearch role permits and the index
cleaner finds, and a monitor that selects the chart's real pods and port.

The chart's templates are not in the reference data; the facts taken from
them (jaeger 4.11.1, ``templates/jaeger/jaeger-deploy.yaml`` and
``jaeger-service.yaml``) are transcribed below, once.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from meshctl import layout
from meshctl.build import elastic, kong, telemetry, tracing
from meshctl.build.context import BuildContext

import harness
from conftest import Rendered

ENVIRONMENTS = ("dev", "staging", "prod")

# The settings per profile: (retention days, sampling strategy).
PROFILE = {
    "dev": (7, "probabilistic"),
    "staging": (30, "probabilistic"),
    "prod": (30, "adaptive"),
}

# From the jaeger chart 4.11.1: the Service `jaeger.fullname` (the release
# name, since it contains the chart's name) and its named ports; the pods'
# labels (jaeger.selectorLabels + component); the probes' port.
CHART_SERVICE_PORTS = {
    "config-rest": 5778,
    "otlp-grpc": 4317,
    "otlp-http": 4318,
    "http-query": 16686,
    "grpc-query": 16685,
    "internal-metrics": 8888,
}
CHART_CONTAINER_PORTS = {5775, 6831, 6832, 5778, 16686, 16685, 9411, 4317, 4318, 13133, 8888, 8889}
CHART_PROBE_PORT = 13133
CHART_POD_LABELS = {
    "app.kubernetes.io/name": "jaeger",  # the chart's name (no nameOverride)
    "app.kubernetes.io/instance": telemetry.JAEGER_RELEASE,
    "app.kubernetes.io/component": "all-in-one",
}

# Jaeger v2's storage backends that implement a sampling store *and* a lock,
# which remote_sampling.adaptive requires (Elasticsearch has no lock).
SAMPLING_STORE_KINDS = {"memory", "badger", "cassandra"}


def _values(tree: Path, env: str) -> dict[str, Any]:
    text = (tree / f"overlays/{env}/values/jaeger.yaml").read_text()
    return yaml.safe_load(text)  # type: ignore[no-any-return]


def _config(tree: Path, env: str) -> dict[str, Any]:
    return _values(tree, env)["userconfig"]  # type: ignore[no-any-return]


def _objects(tree: Path, env: str) -> list[dict[str, Any]]:
    return harness.kustomize_build(tree / "overlays" / env)


def _cleaner_pod(tree: Path, env: str) -> dict[str, Any]:
    """The index cleaner's pod template, from its CronJob."""
    cron = harness.one(_objects(tree, env), "CronJob", tracing.CLEANER)
    return cron["spec"]["jobTemplate"]["spec"]["template"]  # type: ignore[no-any-return]


def _cleaner(tree: Path, env: str) -> dict[str, Any]:
    """The index cleaner's one container."""
    (container,) = _cleaner_pod(tree, env)["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def _context(rendered: Rendered, env: str) -> BuildContext:
    platform = rendered.result.platform
    return BuildContext(platform, platform.environments[env])


def _backend(config: dict[str, Any], name: str) -> dict[str, Any]:
    return config["extensions"]["jaeger_storage"]["backends"][name]  # type: ignore[no-any-return]


def _port(endpoint: str) -> int:
    host, _, port = endpoint.rpartition(":")
    assert host == "0.0.0.0", f"{endpoint}: must listen on every interface"
    return int(port)


# -- the release -----------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_release_syncs_after_the_ca_copy(example_tree: Rendered, env: str) -> None:
    """The pods mount jaeger-elasticsearch-ca and log in to Elasticsearch: the
    Application must come after the stages that make the copy and the cluster,
    or its wave would wait for ever; and last, so that a Jaeger that cannot
    start holds no other part of the platform."""
    tree = example_tree.tree
    objects = _objects(tree, env)
    apps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Application"}
    project = f"{example_tree.result.platform.name}-{env}"

    def wave(app: str) -> int:
        return int(
            apps[f"{project}-{app}"]["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]
        )

    ca = harness.one(objects, "ExternalSecret", tracing.CA_SECRET)
    elasticsearch = harness.one(objects, "Elasticsearch", elastic.NAME)
    assert wave(tracing.RELEASE) > wave(_stage_of(tree, env, ca))
    assert wave(tracing.RELEASE) > wave(_stage_of(tree, env, elasticsearch))
    others = [name.removeprefix(f"{project}-") for name in apps if name != project]
    assert all(wave(tracing.RELEASE) >= wave(other) for other in others)
    jaeger = apps[f"{project}-{tracing.RELEASE}"]
    assert jaeger["spec"]["destination"]["namespace"] == "monitoring"
    source = jaeger["spec"]["sources"][0]
    assert (source["chart"], source["targetRevision"]) == ("jaeger", "4.11.1")


def _stage_of(tree: Path, env: str, doc: dict[str, Any]) -> str:
    """The stage whose folder (overlay or base) holds the document."""
    wanted = harness.identity(doc)
    stages = set()
    for root in (tree / "overlays" / env, tree / "base"):
        for stage in layout.STAGES:
            for path in (root / stage).rglob("*.yaml"):
                if path.name == "kustomization.yaml":
                    continue
                for other in yaml.safe_load_all(path.read_text()):
                    if isinstance(other, dict) and harness.identity(other) == wanted:
                        stages.add(stage)
    assert len(stages) == 1, stages
    return stages.pop()


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_retention_per_profile(example_tree: Rendered, env: str) -> None:
    days, _ = PROFILE[env]
    values = _values(example_tree.tree, env)
    # meshctl's CronJob, not the chart's (which would carry the credentials twice).
    assert values["esIndexCleaner"] == {"enabled": False}
    cron = harness.one(_objects(example_tree.tree, env), "CronJob", tracing.CLEANER)
    assert cron["metadata"]["annotations"]["meshctl.io/retention"] == f"{days}d"
    assert cron["spec"]["schedule"] == "55 23 * * *"
    assert _cleaner(example_tree.tree, env)["args"][0] == str(days)
    es = _backend(values["userconfig"], tracing.STORE)["elasticsearch"]
    # A trace is found by ID for as long as it is kept, not only 72 hours.
    assert es["max_span_age"] == f"{days * 24}h"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_sampling_per_profile(example_tree: Rendered, env: str) -> None:
    _, strategy = PROFILE[env]
    ctx = _context(example_tree, env)
    probability = ctx.settings.mesh.tracing.sampling_percent / 100
    config = _config(example_tree.tree, env)
    remote = config["extensions"]["remote_sampling"]
    processors = config["service"]["pipelines"]["traces"]["processors"]
    if strategy == "probabilistic":
        assert "adaptive" not in remote
        assert remote["file"] == {"default_sampling_probability": pytest.approx(probability)}
        assert "adaptive_sampling" not in processors
        return
    assert "file" not in remote
    adaptive = remote["adaptive"]
    # The processor feeds the adaptive calculation; without it nothing adapts.
    assert "adaptive_sampling" in processors
    assert adaptive["initial_sampling_probability"] == pytest.approx(probability)
    # Each pod sees 1/replicas of the spans and computes on its own.
    tracing_settings = ctx.settings.observability.tracing
    assert adaptive["target_samples_per_second"] * tracing_settings.replicas == pytest.approx(
        tracing_settings.sampling.target_samples_per_second
    )
    store = _backend(config, adaptive["sampling_store"])
    assert set(store) <= SAMPLING_STORE_KINDS, (
        "Jaeger v2's Elasticsearch backend cannot hold adaptive sampling state (no lock)"
    )


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_replicas_resources_and_placement(example_tree: Rendered, env: str) -> None:
    ctx = _context(example_tree, env)
    settings = ctx.settings.observability.tracing
    jaeger = _values(example_tree.tree, env)["jaeger"]
    assert jaeger["replicas"] == settings.replicas
    assert jaeger["resources"]["requests"]["memory"] == settings.resources.requests.memory
    resilience = ctx.settings.resilience
    terms = (jaeger.get("affinity") or {}).get("podAntiAffinity", {})
    keys = {
        t["podAffinityTerm"]["topologyKey"]
        for t in terms.get("preferredDuringSchedulingIgnoredDuringExecution", [])
    }
    assert ("kubernetes.io/hostname" in keys) == resilience.anti_affinity
    assert ("topology.kubernetes.io/zone" in keys) == resilience.zone_spread
    for term in terms.get("preferredDuringSchedulingIgnoredDuringExecution", []):
        assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= (
            CHART_POD_LABELS.items()
        )
    budgets = [
        o
        for o in _objects(example_tree.tree, env)
        if o["kind"] == "PodDisruptionBudget"
        and o["metadata"]["namespace"] == "monitoring"
        and o["metadata"]["name"] == tracing.RELEASE
    ]
    assert len(budgets) == int(resilience.disruption_budgets and settings.replicas > 1)
    cleaner_labels = _cleaner_pod(example_tree.tree, env)["metadata"]["labels"]
    for budget in budgets:
        assert budget["spec"]["selector"]["matchLabels"].items() <= CHART_POD_LABELS.items()
        assert not budget["spec"]["selector"]["matchLabels"].items() <= cleaner_labels.items()


# -- Elasticsearch: URL, credentials, CA, indices ---------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_elasticsearch_wiring(example_tree: Rendered, env: str) -> None:
    """Every name Jaeger and its cleaner use is a Secret, key or file that exists."""
    ctx = _context(example_tree, env)
    values = _values(example_tree.tree, env)
    objects = _objects(example_tree.tree, env)
    credentials = harness.one(objects, "ExternalSecret", tracing.CREDENTIALS_SECRET)
    assert credentials["metadata"]["namespace"] == "monitoring"
    template = credentials["spec"]["target"]["template"]["data"]
    ca = harness.one(objects, "ExternalSecret", tracing.CA_SECRET)
    assert ca["metadata"]["namespace"] == "monitoring"
    ca_keys = {d["secretKey"] for d in ca["spec"]["data"]}

    es = _backend(values["userconfig"], tracing.STORE)["elasticsearch"]
    assert es["server_urls"] == [template["url"]] == [elastic.url(ctx)]
    assert template["username"] == "jaeger"
    assert es["auth"]["basic"] == {
        "username": "${env:ES_USERNAME}",
        "password": "${env:ES_PASSWORD}",
    }
    # The variables the configuration names come from the credentials Secret.
    jaeger = values["jaeger"]
    env_vars = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in jaeger["extraEnv"]}
    for variable in ("ES_USERNAME", "ES_PASSWORD"):
        ref = env_vars[variable]
        assert ref["name"] == tracing.CREDENTIALS_SECRET
        assert ref["key"] in template
    # The CA file lies in a mounted volume of the CA Secret, under a key it has.
    volumes = {v["name"]: v for v in jaeger["extraVolumes"]}
    ca_file = Path(es["tls"]["ca_file"])
    mounts = [m for m in jaeger["extraVolumeMounts"] if ca_file.parent == Path(m["mountPath"])]
    assert len(mounts) == 1 and mounts[0]["readOnly"] is True
    assert volumes[mounts[0]["name"]]["secret"]["secretName"] == tracing.CA_SECRET
    assert ca_file.name in ca_keys
    assert not es["tls"].get("insecure") and not es["tls"].get("insecure_skip_verify")

    cleaner = _cleaner(example_tree.tree, env)
    _days, url, *flags = cleaner["args"]
    assert url == elastic.url(ctx)
    options = dict(flag.removeprefix("--").split("=", 1) for flag in flags)
    assert options["es.tls.enabled"] == "true"
    pod = _cleaner_pod(example_tree.tree, env)
    ca_mounts = [
        m
        for m in cleaner["volumeMounts"]
        if Path(options["es.tls.ca"]).parent == Path(m["mountPath"])
    ]
    assert len(ca_mounts) == 1 and ca_mounts[0]["readOnly"] is True
    cleaner_volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert cleaner_volumes[ca_mounts[0]["name"]]["secret"]["secretName"] == tracing.CA_SECRET
    assert Path(options["es.tls.ca"]).name in ca_keys
    cleaner_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in cleaner["env"]}
    # The cleaner reads --es.username/--es.password from these (viper: '.' -> '_'),
    # each once.
    assert [e["name"] for e in cleaner["env"]] == ["ES_USERNAME", "ES_PASSWORD"]
    for ref in cleaner_env.values():
        assert ref["name"] == tracing.CREDENTIALS_SECRET and ref["key"] in template
    # Elasticsearch admits Jaeger's pods; the cleaner's are among them.
    assert telemetry.JAEGER_PODS.items() <= pod["metadata"]["labels"].items()
    assert pod["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"


def _password_values(node: Any, path: str = "") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}"
            if "password" in str(key).lower() and not isinstance(value, dict | list):
                found.append((here, value))
            found.extend(_password_values(value, here))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found.extend(_password_values(item, f"{path}[{i}]"))
    return found


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_no_password_in_the_values(example_tree: Rendered, env: str) -> None:
    values = _values(example_tree.tree, env)
    literals = [
        (path, value)
        for path, value in _password_values(values)
        if not (isinstance(value, str) and re.fullmatch(r"\$\{env:[A-Z_]+\}", value))
    ]
    assert literals == []
    # Credentials reach the pods as Secret references only.
    for env_var in values["jaeger"]["extraEnv"] + _cleaner(example_tree.tree, env)["env"]:
        assert set(env_var) == {"name", "valueFrom"}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_index_names_are_what_the_role_permits(example_tree: Rendered, env: str) -> None:
    """Jaeger names indices <prefix>-jaeger-<kind>-<date> (IndexPrefix.Apply joins
    with '-'); the role must permit them, and the cleaner must find them."""
    values = _values(example_tree.tree, env)
    es = _backend(values["userconfig"], tracing.STORE)["elasticsearch"]
    prefix = es["indices"]["index_prefix"]
    names = [
        f"{prefix}-jaeger-{kind}-2026-01-31"
        for kind in ("span", "service", "dependencies", "sampling")
    ]
    roles_secret = harness.one(_objects(example_tree.tree, env), "Secret", elastic.ROLES_SECRET)
    roles = yaml.safe_load(roles_secret["stringData"]["roles.yml"])
    patterns = [p for entry in roles["platform-jaeger"]["indices"] for p in entry["names"]]
    for name in names:
        assert any(fnmatch.fnmatchcase(name, p) for p in patterns), name
    # The cleaner's filter (es-index-cleaner IndexFilter, daily indices) with
    # its --index-prefix, which it joins with '-'.
    (flag,) = [a for a in _cleaner(example_tree.tree, env)["args"] if "index-prefix" in a]
    cleaner_prefix = flag.removeprefix("--index-prefix=") + "-"
    daily = re.compile(
        rf"^{re.escape(cleaner_prefix)}jaeger-(span|service|dependencies|sampling)-\d{{4}}-\d{{2}}-\d{{2}}"
    )
    assert all(daily.match(name) for name in names)
    # Shards and replicas fit the cluster: no replica a one-node cluster cannot place.
    nodes = _context(example_tree, env).settings.data.elasticsearch.nodes
    for kind in ("spans", "services", "dependencies", "sampling"):
        index = es["indices"][kind]
        assert index["replicas"] < nodes
        assert 1 <= index["shards"] <= max(nodes, 1)


# -- the configuration -------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_configuration_is_consistent(example_tree: Rendered, env: str) -> None:
    config = _config(example_tree.tree, env)
    service = config["service"]
    for kind in ("receivers", "processors", "exporters"):
        for pipeline in service["pipelines"].values():
            for name in pipeline[kind]:
                assert name in config[kind], f"{kind}: {name} is used but not defined"
        used = {n for p in service["pipelines"].values() for n in p[kind]}
        assert set(config[kind]) == used, f"{kind}: defined but unused"
    assert set(service["extensions"]) == set(config["extensions"])
    backends = config["extensions"]["jaeger_storage"]["backends"]
    references = [
        config["extensions"]["jaeger_query"]["storage"]["traces"],
        *(e["trace_storage"] for e in config["exporters"].values()),
    ]
    adaptive = config["extensions"]["remote_sampling"].get("adaptive")
    if adaptive:
        references.append(adaptive["sampling_store"])
    for name in references:
        assert name in backends, f"storage {name} is not a jaeger_storage backend"
    for backend in backends.values():
        assert len(backend) == 1  # exactly one kind per backend
    # The chart's probes ask healthcheckv2 on 13133.
    health = config["extensions"]["healthcheckv2"]
    assert health["use_v2"] is True
    assert _port(health["http"]["endpoint"]) == CHART_PROBE_PORT


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_listeners_are_the_services_ports(example_tree: Rendered, env: str) -> None:
    values = _values(example_tree.tree, env)
    config = values["userconfig"]
    extra = {p["name"]: p["port"] for p in values["jaeger"]["service"]["extraPorts"]}
    for p in values["jaeger"]["service"]["extraPorts"]:
        assert p["targetPort"] == p["port"]
    service_ports = {**CHART_SERVICE_PORTS, **extra}
    otlp = config["receivers"]["otlp"]["protocols"]
    assert _port(otlp["grpc"]["endpoint"]) == service_ports["otlp-grpc"] == telemetry.OTLP_GRPC_PORT
    assert _port(otlp["http"]["endpoint"]) == service_ports["otlp-http"] == telemetry.OTLP_HTTP_PORT
    query = config["extensions"]["jaeger_query"]
    assert _port(query["http"]["endpoint"]) == service_ports["http-query"]
    assert _port(query["grpc"]["endpoint"]) == service_ports["grpc-query"]
    sampling = config["extensions"]["remote_sampling"]
    assert _port(sampling["http"]["endpoint"]) == service_ports["config-rest"]
    assert _port(sampling["grpc"]["endpoint"]) == service_ports["grpc-sampling"]
    (reader,) = config["service"]["telemetry"]["metrics"]["readers"]
    prometheus = reader["pull"]["exporter"]["prometheus"]
    assert prometheus["host"] == "0.0.0.0"
    assert prometheus["port"] == service_ports["internal-metrics"]


# -- who sends spans -----------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_istio_and_kong_send_to_jaeger(example_tree: Rendered, env: str) -> None:
    tree = example_tree.tree
    ctx = _context(example_tree, env)
    config = _config(tree, env)
    otlp = config["receivers"]["otlp"]["protocols"]
    host = f"{tracing.RELEASE}.{ctx.settings.observability.namespace}.svc"  # the chart's Service
    rate = ctx.settings.mesh.tracing.sampling_percent / 100

    istiod = yaml.safe_load((tree / f"overlays/{env}/values/istiod.yaml").read_text())
    (provider,) = istiod["meshConfig"]["extensionProviders"]
    assert provider["opentelemetry"] == {"service": host, "port": _port(otlp["grpc"]["endpoint"])}

    objects = _objects(tree, env)
    plugin = harness.one(objects, "KongClusterPlugin", "global-opentelemetry")
    assert plugin["plugin"] == "opentelemetry"
    assert plugin["metadata"]["labels"]["global"] == "true"
    settings = plugin["config"]
    assert (
        settings["traces_endpoint"] == f"http://{host}:{_port(otlp['http']['endpoint'])}/v1/traces"
    )
    assert "endpoint" not in settings  # deprecated alias in Kong 3.9
    assert settings["sampling_rate"] == pytest.approx(rate)
    assert settings["resource_attributes"] == {"service.name": "kong"}
    propagation = settings["propagation"]
    # Istio's sidecars read W3C traceparent only.
    assert {"w3c", "b3"} <= set(propagation["extract"])
    assert propagation["inject"] == ["w3c"] and propagation["default_format"] == "w3c"

    kong_values = yaml.safe_load((tree / f"overlays/{env}/values/kong.yaml").read_text())
    assert kong_values["env"]["tracing_instrumentations"] == "all"
    assert float(kong_values["env"]["tracing_sampling_rate"]) == pytest.approx(rate)
    assert isinstance(kong_values["env"]["tracing_sampling_rate"], str)


def test_kong_sends_nothing_without_a_collector(example_tree: Rendered) -> None:
    ctx = _context(example_tree, "prod")
    tracing_off = ctx.settings.observability.tracing.model_copy(update={"enabled": False})
    observability = ctx.settings.observability.model_copy(update={"tracing": tracing_off})
    mesh_tracing = ctx.settings.mesh.tracing.model_copy(update={"collector": None})
    mesh = ctx.settings.mesh.model_copy(update={"tracing": mesh_tracing})
    settings = ctx.settings.model_copy(update={"observability": observability, "mesh": mesh})
    off = BuildContext(ctx.platform, msgspec.structs.replace(ctx.plan, settings=settings))
    assert telemetry.collector(off) is None
    output = kong.build(off)
    plugins = [m.body for m in output.manifests if m.body["kind"] == "KongClusterPlugin"]
    assert plugins and all(p["plugin"] != "opentelemetry" for p in plugins)
    (release,) = output.releases
    assert "tracing_instrumentations" not in release.values["env"]
    assert tracing.build(off).releases == [] and tracing.monitors(off) == []


# -- the monitor -----------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_monitor_selects_jaegers_pods(example_tree: Rendered, env: str) -> None:
    config = _config(example_tree.tree, env)
    objects = _objects(example_tree.tree, env)
    monitor = harness.one(objects, "PodMonitor", tracing.RELEASE)
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == ["monitoring"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= CHART_POD_LABELS.items()
    # Not the cleaner's pods, which share the chart's selector labels.
    cleaner_labels = _cleaner_pod(example_tree.tree, env)["metadata"]["labels"]
    assert not selector.items() <= cleaner_labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    (reader,) = config["service"]["telemetry"]["metrics"]["readers"]
    port = reader["pull"]["exporter"]["prometheus"]["port"]
    assert endpoint["portNumber"] == port and port in CHART_CONTAINER_PORTS
