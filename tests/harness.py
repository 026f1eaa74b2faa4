"""The conformance harness: checks any rendered tree against the real contracts.

It knows nothing about components. It builds every overlay with the stock
`kubectl kustomize`, validates every built object against the Kubernetes
schemas (kubernetes-validate, strict) or the CRD schemas in the upstream
reference data, and checks the Helm values of every chart deployment against
the pinned chart's defaults and values.schema.json, whatever the GitOps engine:
the values files an Argo CD Application points at, or the generated ConfigMap a
Flux HelmRelease reads. A new component is covered as soon as it renders.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshctl import yamlio
from meshctl.catalog import CHARTS

KUBERNETES_VERSION = os.environ.get("MESHCTL_KUBERNETES_VERSION", "1.30")

# Maps that a chart passes through to its component's own configuration, though
# its values.yaml gives them non-empty defaults. Each is reviewed: the reason
# names where the chart says so.
# Parent chart -> its subcharts' value keys (alias -> folder under charts/).
SUBCHARTS: dict[str, dict[str, str]] = {"kube-prometheus-stack": {"grafana": "grafana"}}
PASS_THROUGH_MAPS: dict[str, dict[tuple[str, ...], str]] = {
    "kong": {
        ("env",): "every entry becomes a KONG_* setting of kong.conf (values.yaml, 'env:')",
        ("ingressController", "env"): "every entry becomes a CONTROLLER_* flag of the "
        "ingress controller",
    },
    "istiod": {
        ("meshConfig",): "Istio's MeshConfig, 'See https://istio.io/docs/reference/config/"
        "istio.mesh.v1alpha1/ for all available options'",
    },
}


# Helm charts pass these through into pod specs by convention. Where a chart has
# one, its content is checked against the Kubernetes type instead of the chart's
# example defaults (which never list every field of, say, ResourceRequirements).
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
KUBERNETES_TYPED: dict[str, dict[str, Any]] = {
    "resources": {"$ref": "#/$defs/io.k8s.api.core.v1.ResourceRequirements"},
    "affinity": {"$ref": "#/$defs/io.k8s.api.core.v1.Affinity"},
    "tolerations": {"type": "array", "items": {"$ref": "#/$defs/io.k8s.api.core.v1.Toleration"}},
    "topologySpreadConstraints": {
        "type": "array",
        "items": {"$ref": "#/$defs/io.k8s.api.core.v1.TopologySpreadConstraint"},
    },
    "nodeSelector": STRING_MAP,
    "podAnnotations": STRING_MAP,
    "podLabels": STRING_MAP,
    "labels": STRING_MAP,
    "annotations": STRING_MAP,
}


@functools.cache
def _kubernetes_definitions() -> dict[str, Any]:
    import kubernetes_validate

    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    folder = root / f"v{KUBERNETES_VERSION}.0-local-strict"
    return json.loads((folder / "_definitions.json").read_text())["$defs"]  # type: ignore[no-any-return]


def without_nulls(value: Any) -> Any:
    """What Helm keeps of a values tree: a null deletes the key (and the chart's default)."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def coalesce(defaults: Any, values: Any) -> Any:
    """Helm's merge of user values over a chart's defaults (nulls delete)."""
    if not (isinstance(defaults, dict) and isinstance(values, dict)):
        return without_nulls(values)
    merged = dict(defaults)
    for key, value in values.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = coalesce(defaults.get(key), value)
    return merged


def kubernetes_type_problems(key: str, value: Any) -> list[str]:
    import jsonschema

    schema = {**KUBERNETES_TYPED[key], "$defs": _kubernetes_definitions()}
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '(value)'}: {e.message}"
        for e in validator.iter_errors(without_nulls(value))
    ]


def _require(variable: str) -> bool:
    return os.environ.get(variable, "") not in ("", "0")


def upstream_dir() -> Path:
    """The upstream reference data; skip (or fail in CI) when it is missing."""
    default = Path(__file__).resolve().parents[2] / "shared" / "upstream"
    path = Path(os.environ.get("MESHCTL_UPSTREAM_DIR", default))
    if not (path / "charts").is_dir() or not (path / "crds").is_dir():
        message = (
            f"upstream reference data not found at {path} "
            "(set MESHCTL_UPSTREAM_DIR to shared/upstream)"
        )
        if _require("MESHCTL_REQUIRE_UPSTREAM"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def tool(name: str, purpose: str) -> str:
    """An external program the tests run for real; skip without it, or fail where
    CI requires the real tools (MESHCTL_REQUIRE_KUBECTL: kubectl, promtool, amtool)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not on PATH; {purpose}"
        if _require("MESHCTL_REQUIRE_KUBECTL"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def promtool() -> str:
    return tool("promtool", "the rules cannot be checked (Debian package `prometheus`)")


def promtool_check(groups: list[dict[str, Any]], folder: Path) -> None:
    """`promtool check rules` on the rule groups."""
    rule_file = folder / "rules.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": groups}))
    result = subprocess.run(
        [promtool(), "check", "rules", str(rule_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def promtool_test(
    groups: list[dict[str, Any]],
    tests: list[dict[str, Any]],
    folder: Path,
    evaluation_interval: str = "1m",
) -> None:
    """`promtool test rules`: the rule groups (annotations dropped: the
    expressions are under test, not the texts) against the unit tests."""
    bare = [
        {
            **group,
            "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in group["rules"]],
        }
        for group in groups
    ]
    (folder / "rules.yaml").write_text(yaml.safe_dump({"groups": bare}))
    test_file = folder / "test.yaml"
    test_file.write_text(
        yaml.safe_dump(
            {
                "rule_files": ["rules.yaml"],
                "evaluation_interval": evaluation_interval,
                "tests": tests,
            }
        )
    )
    result = subprocess.run(
        [promtool(), "test", "rules", str(test_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def kubectl() -> str:
    return tool("kubectl", "overlays cannot be built")


def kustomize_build(overlay: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize` of a folder, parsed (a rendered tree never changes
    during a session, so each folder is built once)."""
    return [dict(obj) for obj in _built(str(overlay))]


@functools.cache
def _built(overlay: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        [kubectl(), "kustomize", overlay], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {overlay} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc is not None)


# -- manifests ------------------------------------------------------------------


@functools.cache
def _crd_validator(upstream: Path, group: str, kind: str, version: str) -> Any:
    import jsonschema

    path = upstream / "crds" / group / f"{kind.lower()}_{version}.json"
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    return jsonschema.Draft7Validator(schema)


def manifest_problems(upstream: Path, obj: dict[str, Any]) -> list[str]:
    """Problems of one built object against its schema; an unknown kind is one."""
    import kubernetes_validate

    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    name = (
        f"{kind} {obj.get('metadata', {}).get('namespace', '')}/"
        f"{obj.get('metadata', {}).get('name', '')}"
    )
    duplicates = [f"{name}: {problem}" for problem in list_map_problems(obj)]
    group, _, version = api_version.rpartition("/")
    validator = _crd_validator(upstream, group, kind, version) if group else None
    if validator is not None:
        return duplicates + [
            f"{name}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(obj)
        ]
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [
            f"{name}: no schema for {api_version} {kind} (neither a Kubernetes kind nor a "
            "CRD in the upstream data)"
        ]
    except kubernetes_validate.ValidationError as exc:
        return [f"{name}: {exc.message if hasattr(exc, 'message') else str(exc).splitlines()[0]}"]
    return duplicates


# Pod-spec lists that Kubernetes keys by one field (x-kubernetes-list-map-keys):
# the JSON Schemas cannot say "unique", server-side apply refuses a duplicate,
# and for `env` the later entry silently wins.
LIST_MAP_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
}


def list_map_problems(node: Any, path: str = "") -> list[str]:
    problems: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}" if path else str(key)
            field = LIST_MAP_KEYS.get(key)
            if field and isinstance(value, list):
                seen = [item.get(field) for item in value if isinstance(item, dict)]
                for duplicate in sorted({k for k in seen if seen.count(k) > 1}, key=str):
                    problems.append(f"{here}: {field} {duplicate!r} appears more than once")
            problems.extend(list_map_problems(value, here))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            problems.extend(list_map_problems(item, f"{path}[{i}]"))
    return problems


# -- Helm values ------------------------------------------------------------------


@dataclass(frozen=True)
class ChartContract:
    name: str
    defaults: dict[str, Any]
    document: yamlio.Document  # positions, for documented-but-commented keys
    lines: list[str]
    schema: dict[str, Any] | None
    internal_defaults: bool  # Istio: defaults live under _internal_defaults_do_not_set


@functools.cache
def chart_contract(upstream: Path, chart: str) -> ChartContract:
    folder = upstream / "charts" / chart
    text = (folder / "values.yaml").read_text()
    document = yamlio.parse_document(text)
    data = document.data or {}
    internal = "_internal_defaults_do_not_set" in data
    defaults = data["_internal_defaults_do_not_set"] if internal else data
    schema_path = folder / "values.schema.json"
    schema = json.loads(schema_path.read_text()) if schema_path.is_file() else None
    return ChartContract(chart, defaults, document, text.splitlines(), schema, internal)


def _documented(contract: ChartContract, parent: tuple[str, ...], key: str) -> bool:
    """The chart's values.yaml shows the key commented out inside its parent's block."""
    doc_path: tuple[str | int, ...] = (
        ("_internal_defaults_do_not_set", *parent) if contract.internal_defaults else parent
    )
    pattern = re.compile(rf"^\s*#+\s*{re.escape(key)}:")
    if not doc_path:
        return any(re.match(rf"^#+\s*{re.escape(key)}:", line) for line in contract.lines)
    if doc_path not in contract.document.key_positions:
        return False
    start = contract.document.key_positions[doc_path][0]
    later = [
        line
        for p, (line, _) in contract.document.key_positions.items()
        if line > start and p[: len(doc_path)] != doc_path
    ]
    end = min(later, default=len(contract.lines) + 1)
    return any(pattern.match(line) for line in contract.lines[start : end - 1])


def _merged(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merged(base.get(k), v) for k, v in over.items()}}
    return over if over is not None else base


def values_problems(
    contract: ChartContract, values: dict[str, Any], upstream: Path | None = None
) -> list[str]:
    """Every key path must exist in the chart's defaults, lie under a free-form map,
    or be documented in values.yaml; the values must satisfy values.schema.json.
    A subchart's values (SUBCHARTS) are checked against the subchart's own
    values.yaml as well as the parent's overrides of it."""
    problems: list[str] = []
    pass_through = PASS_THROUGH_MAPS.get(contract.name, {})
    subcharts = SUBCHARTS.get(contract.name, {}) if upstream is not None else {}
    defaults = dict(contract.defaults)
    for alias, chart in subcharts.items():
        defaults[alias] = _merged(chart_contract(upstream, chart).defaults, defaults.get(alias))

    def documented(path: tuple[str, ...], key: str) -> bool:
        if _documented(contract, path, key):
            return True
        if path and path[0] in subcharts:
            assert upstream is not None
            return _documented(chart_contract(upstream, subcharts[path[0]]), path[1:], key)
        return False

    def walk(ours: dict[str, Any], theirs: dict[str, Any], path: tuple[str, ...]) -> None:
        for key, value in ours.items():
            here = (*path, key)
            dotted = ".".join(here)
            if key not in theirs:
                if not documented(path, key):
                    problems.append(
                        f"{contract.name}: {dotted}: not a key of the chart "
                        "(neither in its defaults nor documented in values.yaml)"
                    )
                elif key in KUBERNETES_TYPED:
                    problems.extend(
                        f"{contract.name}: {dotted}: {p}"
                        for p in kubernetes_type_problems(key, value)
                    )
                continue
            default = theirs[key]
            if key in KUBERNETES_TYPED:
                problems.extend(
                    f"{contract.name}: {dotted}: {p}" for p in kubernetes_type_problems(key, value)
                )
                continue
            if isinstance(value, dict):
                if default is None or default == {} or here in pass_through:
                    continue  # free-form map, or one the chart passes through
                if not isinstance(default, dict):
                    problems.append(
                        f"{contract.name}: {dotted}: the chart expects "
                        f"{type(default).__name__}, not a map"
                    )
                    continue
                walk(value, default, here)
            elif isinstance(default, dict) and default:
                problems.append(f"{contract.name}: {dotted}: the chart expects a map here")

    walk(values, defaults, ())
    if contract.schema is not None:
        import jsonschema

        validator_class = jsonschema.validators.validator_for(
            contract.schema, default=jsonschema.Draft7Validator
        )
        for error in validator_class(contract.schema).iter_errors(
            coalesce(contract.defaults, values)
        ):
            where = ".".join(map(str, error.absolute_path))
            problems.append(f"{contract.name}: values.schema.json: {where}: {error.message}")
    return problems


def helm_sources(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], list[str]]]:
    """(application name, chart source, value files) of every Helm-based Application."""
    found = []
    for obj in objects:
        if obj.get("kind") != "Application":
            continue
        for source in obj["spec"].get("sources", []):
            # A Helm repository names the chart; an OCI artifact is the chart itself.
            if "chart" in source or source.get("repoURL", "").startswith("oci://"):
                found.append(
                    (obj["metadata"]["name"], source, source.get("helm", {}).get("valueFiles", []))
                )
    return found


def catalog_chart(source: dict[str, Any]) -> str:
    """The upstream folder of the chart an Application pins; it must be in the catalog."""
    for chart in CHARTS.values():
        pinned = (
            (f"{chart.repo}/{chart.chart}", ".", chart.version)
            if chart.oci
            else (chart.repo, chart.chart, chart.version)
        )
        if pinned == (
            source["repoURL"],
            source.get("chart", source.get("path")),
            source["targetRevision"],
        ):
            return chart.upstream
    raise AssertionError(f"chart {source} is not one of the pinned catalog charts")


def values_file(tree: Path, gitops_path: str, reference: str) -> Path:
    """Resolve `$values/<gitops path>/...` to the file in the rendered tree."""
    prefix = f"$values/{gitops_path.rstrip('/')}/"
    assert reference.startswith(prefix), f"{reference} does not point into {prefix}"
    path = tree / reference[len(prefix) :]
    assert path.is_file(), f"{reference} names a file the render did not write ({path})"
    return path


def identity(doc: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = doc.get("metadata", {})
    return (doc["apiVersion"], doc["kind"], meta.get("namespace", ""), meta["name"])


def emitted_documents(*folders: Path) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """Every object meshctl wrote under the folders (values files aside), by identity."""
    found = {}
    paths = sorted(p for folder in folders for p in folder.rglob("*.yaml"))
    for path in paths:
        if path.name == "kustomization.yaml" or path.parent.name == "values":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and "kind" in doc:
                found[identity(doc)] = doc
    return found


# -- chart deployments, whatever the engine ---------------------------------------


@dataclass(frozen=True)
class HelmDeployment:
    """One chart release as a GitOps engine will deploy it."""

    owner: str  # the Application or HelmRelease
    chart: str  # upstream folder of the pinned catalog chart
    values: list[dict[str, Any]]  # the values it gets, in order
    files: list[Path] = field(default_factory=list)  # values files of the tree they come from


def _pinned(repo: str, chart_name: str, version: str, oci: bool) -> str:
    for chart in CHARTS.values():
        if (chart.repo, chart.chart, chart.version, chart.oci) == (repo, chart_name, version, oci):
            return chart.upstream
    raise AssertionError(
        f"chart {chart_name} {version} from {repo} is not one of the pinned catalog charts"
    )


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The one object of this kind and name (any namespace) among `objects`."""
    found = [o for o in objects if o.get("kind") == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _find(objects: list[dict[str, Any]], kind: str, namespace: str, name: str) -> dict[str, Any]:
    found = [
        o
        for o in objects
        if o.get("kind") == kind
        and o["metadata"]["name"] == name
        and o["metadata"].get("namespace", "") == namespace
    ]
    assert len(found) == 1, f"{kind} {namespace}/{name}: {len(found)} in the build"
    return found[0]


def flux_values(objects: list[dict[str, Any]], release: dict[str, Any]) -> list[tuple[str, str]]:
    """(ConfigMap name, text) of every values reference of a HelmRelease; each must
    name a ConfigMap of the build (with kustomize's hash suffix) and a key it has."""
    namespace = release["metadata"]["namespace"]
    found = []
    for reference in release["spec"].get("valuesFrom", []):
        assert reference.get("kind") == "ConfigMap", f"{reference} is not a ConfigMap"
        config_map = _find(objects, "ConfigMap", namespace, reference["name"])
        key = reference.get("valuesKey", "values.yaml")
        assert key in config_map.get("data", {}), f"{reference['name']} has no key {key}"
        found.append((reference["name"], config_map["data"][key]))
    return found


def helm_deployments(
    objects: list[dict[str, Any]], tree: Path, gitops_path: str, env: str
) -> list[HelmDeployment]:
    """Every chart release of an environment's build: Argo CD Applications with
    their `$values` files, Flux HelmReleases with their generated ConfigMaps."""
    found = []
    for app, source, value_files in helm_sources(objects):
        paths = [values_file(tree, gitops_path, reference) for reference in value_files]
        found.append(
            HelmDeployment(
                app,
                catalog_chart(source),
                [yaml.safe_load(p.read_text()) or {} for p in paths],
                paths,
            )
        )
    for release in (o for o in objects if o.get("kind") == "HelmRelease"):
        name = release["metadata"]["name"]
        spec = release["spec"]["chart"]["spec"]
        ref = spec["sourceRef"]
        assert ref["kind"] == "HelmRepository", f"{name}: chart from a {ref['kind']}"
        repository = _find(
            objects,
            "HelmRepository",
            ref.get("namespace", release["metadata"]["namespace"]),
            ref["name"],
        )
        chart = _pinned(
            repository["spec"]["url"],
            spec["chart"],
            spec["version"],
            repository["spec"].get("type") == "oci",
        )
        texts = flux_values(objects, release)
        assert texts, f"{name} takes no values"
        # The ConfigMap is the values file, byte for byte.
        path = tree / "overlays" / env / "values" / f"{release['spec']['releaseName']}.yaml"
        assert [t for _, t in texts] == [path.read_text()], f"{name}: values are not {path}"
        found.append(
            HelmDeployment(name, chart, [yaml.safe_load(t) or {} for _, t in texts], [path])
        )
    return found


HASH_SUFFIX = re.compile(r"-[a-z0-9]{10}$")


def generated_config_maps(overlay: Path) -> set[str]:
    """Names of the ConfigMaps the overlay's values/ kustomization generates (Flux)."""
    path = overlay / "values" / "kustomization.yaml"
    if not path.is_file():
        return set()
    body = yaml.safe_load(path.read_text())
    return {g["name"] for g in body.get("configMapGenerator", [])}


def without_generated(objects: list[dict[str, Any]], generated: set[str]) -> list[dict[str, Any]]:
    """The build as meshctl emitted it: generated ConfigMaps dropped, their
    hash-suffixed names in HelmReleases' valuesFrom put back to the generator's."""
    out = []
    for obj in objects:
        name = obj["metadata"]["name"]
        if obj["kind"] == "ConfigMap" and HASH_SUFFIX.sub("", name) in generated:
            continue
        if obj["kind"] != "HelmRelease":
            out.append(obj)
            continue
        release = json.loads(json.dumps(obj))
        for reference in release["spec"].get("valuesFrom", []):
            unhashed = HASH_SUFFIX.sub("", reference["name"])
            if unhashed in generated:
                reference["name"] = unhashed
        out.append(release)
    return out


# -- the example under Flux -----------------------------------------------------------

FLUX_EXAMPLE = "example-flux"
_flux_example: dict[str, Any] = {}


def flux_spec_text() -> str:
    """The bundled example with `engine: flux` (and the engine's default namespace)."""
    from meshctl.resources import example_spec

    text = example_spec().read_text()
    assert "    engine: argocd\n" in text and "    namespace: argocd\n" in text
    return text.replace("    engine: argocd\n", "    engine: flux\n").replace(
        "    namespace: argocd\n", ""
    )


def flux_example(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The example rendered for Flux, once per session (a conftest.Rendered)."""
    if "tree" not in _flux_example:
        from meshctl import pipeline

        from conftest import Rendered

        folder = tmp_path_factory.mktemp(FLUX_EXAMPLE)
        spec = folder / "platform.yaml"
        spec.write_text(flux_spec_text())
        tree = folder / "rendered"
        result = pipeline.render(spec, tree, display_name="platform.yaml")
        _flux_example["tree"] = Rendered(FLUX_EXAMPLE, spec, tree, result)
    return _flux_example["tree"]
