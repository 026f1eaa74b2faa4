"""Stage 6 (the other branch), diff: what a render would change, per environment
and per resource, with the changes a reviewer must not miss flagged.

Two trees are compared: the render of the spec (in memory) against the tree on
disk, or against the render of the spec as it was at a Git revision (rendered
by this meshctl, so only spec changes show). Nothing is written.

The comparison is semantic. Each environment is what ``kubectl kustomize
overlays/<env>`` would build: the files its kustomizations reach (``base/``
included) and its Helm values files. Resources are matched by identity
(apiVersion, kind, namespace, name) wherever they live, so a resource that
moved between files or between ``base/`` and an overlay is not a change, and
comments, key order and whitespace never are. Files whose bytes are the same on
both sides are not parsed at all.

A Secret's ``data``/``stringData`` values never leave this module: every report
carries the redaction marker in their place.
"""

from __future__ import annotations

import difflib
import json
import os
import posixpath
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import yaml

from meshctl import layout, yamlio
from meshctl.errors import OutputError, UsageError

__all__ = [
    "ABSENT",
    "REDACTED",
    "RISKS",
    "Against",
    "Change",
    "DiffReport",
    "DirectoryTree",
    "EnvironmentDiff",
    "FieldChange",
    "MemoryTree",
    "Risk",
    "Target",
    "compare",
    "diff_directory",
    "diff_revision",
]

REDACTED = "<redacted>"
REDACTED_CHANGED = "<redacted> (changed)"

# Every risk flag: its stable id and what it means (docs/diff.md lists them).
RISKS: dict[str, str] = {
    "data-deleted": "deletes stored data: a database, search cluster, volume or stateful "
    "workload, an Application that cascades to one, or persistence turned off",
    "replicas-reduced": "fewer replicas or instances in a production environment",
    "mtls-weakened": "mutual TLS weakened: a PeerAuthentication below STRICT or removed, "
    "a DestinationRule's TLS mode lowered",
    "authz-loosened": "an Istio AuthorizationPolicy allows more (rules or sources added, "
    "selector widened, DENY rules removed) or is removed",
    "network-policy-loosened": "a Calico or Kubernetes network policy allows more (rules, "
    "peers or ports added, selector widened, a direction no longer enforced) or is removed",
    "tls-min-lowered": "the minimum TLS version is lowered (or its setting removed)",
    "chart-major-changed": "a Helm chart's major version changed (0.x: its minor version)",
    "retention-shortened": "a retention period or size is shortened (or its setting removed)",
}


class _Absent(Enum):
    ABSENT = "absent"

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent.ABSENT
"""A key that is not there on one side of a change."""

Action = Literal["added", "removed", "changed"]
PathPart = str | int | tuple[str, str]  # a key, a list index, or [name=<value>] in a keyed list
FieldPath = tuple[PathPart, ...]


# --------------------------------------------------------------------------
# The result, as data.


@dataclass(frozen=True, order=True)
class Target:
    """What changed: a Kubernetes resource, or the Helm values of a release."""

    type: Literal["resource", "values"]
    kind: str = ""
    namespace: str = ""
    name: str = ""
    api_version: str = ""

    @property
    def label(self) -> str:
        if self.type == "values":
            return f"values {self.name}"
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.api_version} {self.kind} {where}"

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0] if "/" in self.api_version else ""


@dataclass(frozen=True)
class Risk:
    id: str
    message: str
    path: str | None = None  # the changed key it is about, when there is one


@dataclass(frozen=True)
class FieldChange:
    """One key that changed: its dotted path, old and new value (ABSENT: not there)."""

    path: str
    old: Any
    new: Any


@dataclass
class Change:
    environment: str
    action: Action
    target: Target
    old_file: str | None
    new_file: str | None
    fields: list[FieldChange] = field(default_factory=list)
    risks: list[Risk] = field(default_factory=list)
    unified: str = ""  # a unified diff of the (redacted) YAML, sorted keys

    @property
    def risky(self) -> bool:
        return bool(self.risks)


@dataclass
class EnvironmentDiff:
    name: str
    production: bool
    changes: list[Change] = field(default_factory=list)

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action == action)

    @property
    def risky(self) -> int:
        return sum(1 for c in self.changes if c.risky)


@dataclass(frozen=True)
class Against:
    """What the spec's render was compared with."""

    type: Literal["directory", "git"]
    path: str  # the directory, or the spec's path inside the repository
    ref: str | None = None
    commit: str | None = None

    @property
    def label(self) -> str:
        if self.type == "git":
            return f"{self.ref}:{self.path}"
        return f"{self.path.rstrip('/')}/"


@dataclass
class DiffReport:
    spec: str
    against: Against
    environments: list[EnvironmentDiff]

    @property
    def differences(self) -> bool:
        return any(env.changes for env in self.environments)

    def changes(self) -> Iterator[Change]:
        for env in self.environments:
            yield from env.changes


# --------------------------------------------------------------------------
# Trees: the files of a render, in memory or on disk.


class MemoryTree:
    """A rendered tree held in memory (path -> bytes)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self._parsed: dict[str, list[Any]] = {}

    def __contains__(self, path: str) -> bool:
        return path in self.files

    def paths(self) -> Iterator[str]:
        return iter(self.files)

    def read(self, path: str) -> bytes | None:
        return self.files.get(path)

    def documents(self, path: str) -> list[Any]:
        """The YAML documents of a file (parsed once)."""
        parsed = self._parsed.get(path)
        if parsed is None:
            data = self.read(path)
            parsed = self._parsed[path] = [] if data is None else self._parse(path, data)
        return parsed

    def _parse(self, path: str, data: bytes) -> list[Any]:
        try:
            return [d for d in yamlio.load_output_all(data.decode("utf-8")) if d is not None]
        except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
            raise OutputError(f"{self.describe(path)}: not a readable YAML file: {exc}") from exc

    def describe(self, path: str) -> str:
        return path


class DirectoryTree(MemoryTree):
    """A rendered tree on disk: regular files only (symlinks are never followed),
    each read at most once and only when a comparison needs it."""

    def __init__(self, root: Path) -> None:
        if not root.exists():
            raise UsageError(
                f"{root}: no such directory; render it first (`meshctl render -o {root}`), "
                "or compare with a Git revision (--base REF)"
            )
        if not root.is_dir():
            raise UsageError(f"{root} exists and is not a directory")
        super().__init__({})
        self.root = root
        self._known: set[str] = set()
        for directory, dirs, names in os.walk(root):
            relative = Path(directory).relative_to(root).as_posix()
            prefix = "" if relative == "." else f"{relative}/"
            dirs[:] = [d for d in dirs if not (Path(directory) / d).is_symlink()]
            for name in names:
                entry = Path(directory) / name
                if entry.is_file() and not entry.is_symlink():
                    self._known.add(prefix + name)

    def __contains__(self, path: str) -> bool:
        return path in self._known

    def paths(self) -> Iterator[str]:
        return iter(self._known)

    def read(self, path: str) -> bytes | None:
        if path not in self._known:
            return None
        data = self.files.get(path)
        if data is None:
            try:
                data = self.files[path] = (self.root / path).read_bytes()
            except OSError as exc:
                raise OutputError(
                    f"{self.describe(path)}: cannot read: {exc.strerror or exc}"
                ) from exc
        return data

    def describe(self, path: str) -> str:
        return str(self.root / path)


def tree_environments(tree: MemoryTree) -> list[str]:
    """Environments that have an overlay in the tree."""
    found = set()
    for path in tree.paths():
        parts = path.split("/")
        if len(parts) == 3 and parts[0] == layout.OVERLAYS and parts[2] == layout.KUSTOMIZATION:
            found.add(parts[1])
    return sorted(found)


@dataclass
class _View:
    """What one environment is made of in a tree."""

    resources: list[str]  # files its kustomizations reach, in order
    values: dict[str, str]  # release -> values file


def _view(tree: MemoryTree, env: str) -> _View:
    files: dict[str, None] = {}  # ordered, unique
    seen: set[str] = set()

    def visit(directory: str) -> None:
        if directory in seen:
            return
        seen.add(directory)
        documents = tree.documents(f"{directory}/{layout.KUSTOMIZATION}")
        body = documents[0] if documents and isinstance(documents[0], dict) else {}
        entries = body.get("resources")
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, str) or "://" in entry:
                continue
            target = posixpath.normpath(posixpath.join(directory, entry))
            if target == ".." or target.startswith("../"):
                continue
            if f"{target}/{layout.KUSTOMIZATION}" in tree:
                visit(target)
            elif target in tree:
                files[target] = None

    overlay = layout.overlay_dir(env)
    if f"{overlay}/{layout.KUSTOMIZATION}" in tree:
        visit(overlay)
    prefix = f"{overlay}/values/"
    values = {
        path[len(prefix) : -len(".yaml")]: path
        for path in tree.paths()
        if path.startswith(prefix) and path.endswith(".yaml") and "/" not in path[len(prefix) :]
    }
    return _View(list(files), values)


def _identity(document: Any, path: str, index: int) -> Target:
    if not isinstance(document, dict):
        return Target("resource", "", "", f"{path}#{index}")
    metadata = document.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    return Target(
        "resource",
        str(document.get("kind") or ""),
        str(metadata.get("namespace") or ""),
        str(metadata.get("name") or f"{path}#{index}"),
        str(document.get("apiVersion") or ""),
    )


def _resources(tree: MemoryTree, paths: list[str], skip: set[str]) -> dict[Target, tuple[Any, str]]:
    found: dict[Target, tuple[Any, str]] = {}
    for path in paths:
        if path in skip:
            continue
        for index, document in enumerate(tree.documents(path)):
            found[_identity(document, path, index)] = (document, path)
    return found


# --------------------------------------------------------------------------
# Comparing.


def compare(
    old: MemoryTree,
    new: MemoryTree,
    environments: list[str],
    production: Callable[[str], bool],
) -> list[EnvironmentDiff]:
    """Per environment, every resource and values file that differs, with risks."""
    return [_compare_environment(old, new, env, production(env)) for env in environments]


def _compare_environment(
    old: MemoryTree, new: MemoryTree, env: str, production: bool
) -> EnvironmentDiff:
    result = EnvironmentDiff(env, production)
    before, after = _view(old, env), _view(new, env)
    same = {p for p in set(before.resources) & set(after.resources) if old.read(p) == new.read(p)}
    old_resources = _resources(old, before.resources, same)
    new_resources = _resources(new, after.resources, same)
    context = _Context(env, production, old, before)
    for target in sorted(old_resources.keys() | new_resources.keys()):
        old_body, old_file = old_resources.get(target, (ABSENT, None))
        new_body, new_file = new_resources.get(target, (ABSENT, None))
        if old_body != new_body:
            result.changes.append(
                _change(context, target, (old_body, old_file), (new_body, new_file))
            )
    for release in sorted(before.values.keys() | after.values.keys()):
        old_file, new_file = before.values.get(release), after.values.get(release)
        if old_file and new_file and old.read(old_file) == new.read(new_file):
            continue
        old_values = _values(old, old_file)
        new_values = _values(new, new_file)
        if old_values != new_values:
            target = Target("values", "", "", release)
            result.changes.append(
                _change(context, target, (old_values, old_file), (new_values, new_file))
            )
    result.changes.sort(key=lambda c: (not c.risky, c.target.type, c.target))
    return result


def _values(tree: MemoryTree, path: str | None) -> Any:
    if path is None:
        return ABSENT
    documents = tree.documents(path)
    return documents[0] if documents else {}


def _change(
    context: _Context, target: Target, before: tuple[Any, str | None], after: tuple[Any, str | None]
) -> Change:
    (old, old_file), (new, new_file) = before, after
    action: Action = "added" if old is ABSENT else "removed" if new is ABSENT else "changed"
    raw = field_changes(old, new) if action == "changed" else []
    secret = target.type == "resource" and _is_secret(old if new is ABSENT else new)
    change = Change(
        context.environment,
        action,
        target,
        old_file,
        new_file,
        fields=[
            FieldChange(
                format_field_path(p),
                _redact_field(p, o) if secret else o,
                _redact_field(p, n) if secret else n,
            )
            for p, o, n in raw
        ],
    )
    change.risks = _assess(context, change, old, new, raw)
    shown_old, shown_new = _redact_bodies(old, new) if secret else (old, new)
    change.unified = _unified(shown_old, shown_new, old_file, new_file)
    return change


def field_changes(old: Any, new: Any, path: FieldPath = ()) -> list[tuple[FieldPath, Any, Any]]:
    """The leaves that differ between two documents, as (path, old, new).

    Maps are compared key by key. Lists whose items all have a unique ``name``
    are matched by name (``containers[name=kong]``); other lists item by item
    when their lengths agree, else by a sequence diff, so inserting one item
    shows one item added rather than every later item changed.
    """
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        changes = []
        for key in sorted(old.keys() | new.keys(), key=str):
            part = key if isinstance(key, str) else str(key)
            changes += field_changes(old.get(key, ABSENT), new.get(key, ABSENT), (*path, part))
        return changes
    if isinstance(old, list) and isinstance(new, list):
        return _list_changes(old, new, path)
    return [(path, old, new)]


def _names(items: list[Any]) -> list[str] | None:
    """The items' names, when every item is a map with a unique string `name`."""
    names: list[str] = []
    for item in items:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            return None
        names.append(name)
    return names if len(set(names)) == len(names) else None


def _list_changes(
    old: list[Any], new: list[Any], path: FieldPath
) -> list[tuple[FieldPath, Any, Any]]:
    old_names, new_names = _names(old), _names(new)
    if old_names is not None and new_names is not None and old and new:
        by_old = dict(zip(old_names, old, strict=True))
        by_new = dict(zip(new_names, new, strict=True))
        order = old_names + [n for n in new_names if n not in by_old]
        changes = []
        for name in order:
            changes += field_changes(
                by_old.get(name, ABSENT), by_new.get(name, ABSENT), (*path, ("name", name))
            )
        return changes
    if len(old) == len(new):
        changes = []
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            changes += field_changes(a, b, (*path, index))
        return changes
    keys_old = [json.dumps(i, sort_keys=True, default=str) for i in old]
    keys_new = [json.dumps(i, sort_keys=True, default=str) for i in new]
    matcher = difflib.SequenceMatcher(None, keys_old, keys_new, autojunk=False)
    changes = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        paired = min(i2 - i1, j2 - j1) if tag == "replace" else 0
        for k in range(paired):
            changes += field_changes(old[i1 + k], new[j1 + k], (*path, j1 + k))
        for k in range(i1 + paired, i2):
            changes.append(((*path, k), old[k], ABSENT))
        for k in range(j1 + paired, j2):
            changes.append(((*path, k), ABSENT, new[k]))
    return changes


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def format_field_path(path: FieldPath) -> str:
    """A dotted path: `spec.template.spec.containers[name=kong].image`,
    `metadata.labels["app.kubernetes.io/name"]`, `spec.rules[2]`."""
    out = ""
    for part in path:
        if isinstance(part, tuple):
            out += f"[{part[0]}={part[1]}]"
        elif isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


def _unified(old: Any, new: Any, old_file: str | None, new_file: str | None) -> str:
    before = [] if old is ABSENT else yamlio.dump(old).splitlines(keepends=True)
    after = [] if new is ABSENT else yamlio.dump(new).splitlines(keepends=True)
    lines = difflib.unified_diff(
        before,
        after,
        f"a/{old_file}" if old_file else "/dev/null",
        f"b/{new_file}" if new_file else "/dev/null",
        n=3,
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


# --------------------------------------------------------------------------
# Secrets: values never shown.

_SECRET_KEYS = ("data", "stringData")


def _is_secret(body: Any) -> bool:
    return (
        isinstance(body, dict)
        and body.get("kind") == "Secret"
        and str(body.get("apiVersion", "v1")) == "v1"
    )


def _redact_field(path: FieldPath, value: Any) -> Any:
    if value is ABSENT or not path or path[0] not in _SECRET_KEYS:
        return value
    if len(path) == 1 and isinstance(value, dict):
        return dict.fromkeys(value, REDACTED)
    return REDACTED


def _redact_bodies(old: Any, new: Any) -> tuple[Any, Any]:
    """Both sides with every Secret value replaced; a value that differs shows
    as changed on the new side (so the unified diff still shows which key)."""

    def values(body: Any, key: str) -> dict[Any, Any]:
        section = body.get(key) if isinstance(body, dict) else None
        return section if isinstance(section, dict) else {}

    shown_old = dict(old) if isinstance(old, dict) else old
    shown_new = dict(new) if isinstance(new, dict) else new
    for key in _SECRET_KEYS:
        before, after = values(old, key), values(new, key)
        if isinstance(shown_old, dict) and key in shown_old:
            shown_old[key] = dict.fromkeys(before, REDACTED) if before else REDACTED
        if isinstance(shown_new, dict) and key in shown_new:
            shown_new[key] = (
                {
                    k: REDACTED if k in before and before[k] == v else REDACTED_CHANGED
                    for k, v in after.items()
                }
                if after
                else REDACTED
            )
    return shown_old, shown_new


# --------------------------------------------------------------------------
# Risk flags.

PRODUCTION_NAMES = ("prod", "production")
DATA_KINDS = {
    ("postgresql.cnpg.io", "Cluster"),
    ("postgresql.cnpg.io", "Pooler"),
    ("postgresql.cnpg.io", "ScheduledBackup"),
    ("postgresql.cnpg.io", "Backup"),
    ("elasticsearch.k8s.elastic.co", "Elasticsearch"),
    ("kibana.k8s.elastic.co", "Kibana"),
    ("", "PersistentVolumeClaim"),
    ("", "PersistentVolume"),
    ("apps", "StatefulSet"),
}
# Charts that hold data themselves, or install the CRDs of resources that do
# (an Application that cascades deletes those CRDs, and with them every object).
DATA_CHARTS = {
    "redis",
    "postgresql",
    "postgresql-ha",
    "mysql",
    "mariadb",
    "mongodb",
    "elasticsearch",
    "opensearch",
    "kafka",
    "minio",
    "cloudnative-pg",
    "eck-operator",
}
ARGO_FINALIZER = "resources-finalizer.argocd.argoproj.io"
REPLICA_KEYS = {"replicas", "replicaCount", "instances", "count", "minReplicas", "maxReplicas"}
CALICO_GROUPS = {"crd.projectcalico.org", "projectcalico.org"}


@dataclass
class _Context:
    """What the risk rules may ask about an environment beyond one change."""

    environment: str
    production: bool
    old: MemoryTree
    old_view: _View
    _data_namespaces: set[str] | None = None

    def data_namespaces(self) -> set[str]:
        """Namespaces that held data in the old tree (parsed only when asked)."""
        if self._data_namespaces is None:
            found = set()
            for target, (body, _) in _resources(self.old, self.old_view.resources, set()).items():
                if (target.group, target.kind) in DATA_KINDS and target.namespace:
                    found.add(target.namespace)
                elif _is_application(target) and _data_application(body):
                    destination = (body.get("spec") or {}).get("destination") or {}
                    if isinstance(destination.get("namespace"), str):
                        found.add(destination["namespace"])
            self._data_namespaces = found
        return self._data_namespaces


def _assess(
    context: _Context,
    change: Change,
    old: Any,
    new: Any,
    raw: list[tuple[FieldPath, Any, Any]],
) -> list[Risk]:
    risks: list[Risk] = []
    target = change.target
    if change.action == "removed":
        risks += _removal_risks(context, target, old)
    elif change.action == "added":
        risks += _addition_risks(target, new)
    else:
        risks += _policy_risks(target, old, new)
        if _is_application(target) or _is_helm_release(target):
            risks += _chart_risks(old, new)
    if raw:
        for path, before, after in _leaf_pairs(raw):
            risks += _leaf_risks(context, target, path, before, after)
    unique: dict[tuple[str, str | None, str], Risk] = {}
    for risk in risks:
        unique.setdefault((risk.id, risk.path, risk.message), risk)
    return list(unique.values())


def _is_application(target: Target) -> bool:
    return target.group == "argoproj.io" and target.kind == "Application"


def _is_helm_release(target: Target) -> bool:
    return target.group == "helm.toolkit.fluxcd.io" and target.kind == "HelmRelease"


def _sources(body: Any) -> list[dict[str, Any]]:
    spec = body.get("spec") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        return []
    found = [spec["source"]] if isinstance(spec.get("source"), dict) else []
    found += [s for s in spec.get("sources") or [] if isinstance(s, dict)]
    return found


def _chart_name(source: dict[str, Any]) -> str | None:
    """The chart a source installs: `chart`, or the last part of an OCI repo URL."""
    if isinstance(source.get("chart"), str):
        return str(source["chart"])
    url = source.get("repoURL")
    if isinstance(url, str) and url.startswith("oci://"):
        return url.rstrip("/").rsplit("/", 1)[-1]
    return None


def _data_application(body: Any) -> str | None:
    """Why deleting this Application deletes data (None when it does not)."""
    metadata = body.get("metadata") if isinstance(body, dict) else None
    finalizers = (metadata or {}).get("finalizers") or []
    if ARGO_FINALIZER not in finalizers:
        return None
    for source in _sources(body):
        chart = _chart_name(source)
        if chart in DATA_CHARTS:
            return f"it cascades to the {chart} chart's resources"
        path = source.get("path")
        if isinstance(path, str) and posixpath.basename(path.rstrip("/")) == layout.DATA:
            return "it cascades to the data stage (database and search clusters)"
    return None


def _removal_risks(context: _Context, target: Target, old: Any) -> list[Risk]:
    risks = []
    if (target.group, target.kind) in DATA_KINDS:
        risks.append(Risk("data-deleted", f"deleting a {target.kind} deletes the data it holds"))
    elif target.type == "values" and target.name in DATA_CHARTS - {
        "cloudnative-pg",
        "eck-operator",
    }:
        risks.append(
            Risk("data-deleted", f"the {target.name} release's values are gone with its data")
        )
    elif _is_application(target):
        reason = _data_application(old)
        if reason:
            risks.append(Risk("data-deleted", f"deleting this Application deletes data: {reason}"))
    elif (
        target.group == ""
        and target.kind == "Namespace"
        and target.name in (context.data_namespaces())
    ):
        risks.append(
            Risk("data-deleted", f"deleting namespace {target.name} deletes the data tier in it")
        )
    if target.group == "security.istio.io":
        if target.kind == "PeerAuthentication" and _strict_anywhere(old):
            risks.append(Risk("mtls-weakened", "a STRICT PeerAuthentication is removed"))
        elif target.kind == "AuthorizationPolicy":
            risks.append(Risk("authz-loosened", "an AuthorizationPolicy is removed"))
    if _is_network_policy(target):
        risks.append(Risk("network-policy-loosened", f"a {target.kind} is removed"))
    return risks


def _addition_risks(target: Target, new: Any) -> list[Risk]:
    """New policies are expected with new services; one that allows everything is not."""
    spec = new.get("spec") if isinstance(new, dict) else None
    spec = spec if isinstance(spec, dict) else {}
    authz = target.group == "security.istio.io" and target.kind == "AuthorizationPolicy"
    if authz and spec.get("action", "ALLOW") == "ALLOW" and {} in (spec.get("rules") or []):
        return [Risk("authz-loosened", "a new AuthorizationPolicy allows every request")]
    if _is_network_policy(target):
        for direction, rules in _policy_rules(target, spec).items():
            if {} in rules["allow"]:
                return [
                    Risk(
                        "network-policy-loosened",
                        f"a new {target.kind} allows all {direction} traffic",
                    )
                ]
    return []


def _strict_anywhere(body: Any) -> bool:
    spec = body.get("spec") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        return False
    modes = [(spec.get("mtls") or {}).get("mode")]
    modes += [(p or {}).get("mode") for p in (spec.get("portLevelMtls") or {}).values()]
    return "STRICT" in modes


def _is_network_policy(target: Target) -> bool:
    if target.group == "networking.k8s.io":
        return target.kind == "NetworkPolicy"
    return target.group in CALICO_GROUPS and target.kind in (
        "NetworkPolicy",
        "GlobalNetworkPolicy",
    )


# -- policies: does the new one admit more than the old? --------------------


def _negative(key: str) -> bool:
    """Keys that exclude rather than admit (Istio's notPrincipals, Calico's
    notSelector, Kubernetes' ipBlock.except)."""
    return key == "except" or (key.startswith("not") and key[3:4].isupper())


def _compact(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _narrower_selector(old: str, new: str) -> bool:
    """A Calico selector that only adds terms (`old && more`) selects no more."""
    return new.startswith(f"{old} && ") or new.startswith(f"({old}) && ")


def wider(old: Any, new: Any, path: str = "", *, exclusion: bool = False) -> list[str]:
    """How `new` admits more than `old`, read as a policy condition ([] if it does not).

    Maps are conditions that all must hold: a key dropped admits more, a key
    added admits less. Lists of scalars are sets of admitted values; lists of
    maps are alternatives, each new one must be no wider than some old one
    (the reasons name the closest old one's differences). Negative keys
    (``notX``, ``except``) read the other way round.
    """
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        reasons = []
        for key, before in old.items():
            sub = f"{path}.{key}" if path else str(key)
            after = new.get(key, ABSENT)
            negative = _negative(str(key))
            if after is ABSENT:
                if before not in ({}, [], None, ""):
                    reasons.append(f"{sub} {'exclusion' if negative else 'condition'} removed")
            elif negative:
                reasons += wider(after, before, sub, exclusion=True)
            else:
                reasons += wider(before, after, sub)
        return reasons
    if isinstance(old, list) and isinstance(new, list):
        return _wider_list(old, new, path, exclusion=exclusion)
    if isinstance(old, str) and isinstance(new, str) and _narrower_selector(old, new):
        return []
    what = f"{path}: " if path else ""
    before, after = (new, old) if exclusion else (old, new)
    return [f"{what}{_compact(before)} -> {_compact(after)}"]


def _wider_list(old: list[Any], new: list[Any], path: str, *, exclusion: bool) -> list[str]:
    if not any(isinstance(v, dict | list) for v in (*old, *new)):
        extra = [v for v in (old if exclusion else new) if v not in (new if exclusion else old)]
        verb = "no longer excludes" if exclusion else "admits"
        return [f"{path} {verb} {_compact(extra)}"] if extra else []
    reasons = []
    for index, item in enumerate(new):
        if item in old:
            continue
        candidates = [wider(before, item) for before in old]
        if any(not c for c in candidates):
            continue
        label = f"{path}[{index}]"
        if candidates:
            closest: list[str] = min(candidates, key=len)
            reasons.append(f"{label}: {', '.join(closest)}")
        else:
            reasons.append(f"{label}: {_compact(item)}")
    return reasons


def _policy_rules(target: Target, spec: dict[str, Any]) -> dict[str, dict[str, list[Any]]]:
    """A network policy's rules per direction, split into allow and deny."""
    rules: dict[str, dict[str, list[Any]]] = {}
    for direction in ("ingress", "egress"):
        listed = [r for r in spec.get(direction) or [] if isinstance(r, dict)]
        if target.group == "networking.k8s.io":
            rules[direction] = {"allow": listed, "deny": []}
            continue
        split: dict[str, list[Any]] = {"allow": [], "deny": []}
        for rule in listed:
            action = str(rule.get("action", "")).lower()
            if action in split:
                split[action].append({k: v for k, v in rule.items() if k != "action"})
        rules[direction] = split
    return rules


def _policy_types(target: Target, spec: dict[str, Any]) -> set[str]:
    key = "policyTypes" if target.group == "networking.k8s.io" else "types"
    listed = spec.get(key)
    if isinstance(listed, list):
        return {str(t).lower() for t in listed}
    return {"ingress"} | ({"egress"} if spec.get("egress") else set())


def _policy_risks(target: Target, old: Any, new: Any) -> list[Risk]:
    old_spec = old.get("spec") if isinstance(old, dict) else None
    new_spec = new.get("spec") if isinstance(new, dict) else None
    old_spec = old_spec if isinstance(old_spec, dict) else {}
    new_spec = new_spec if isinstance(new_spec, dict) else {}
    if target.group == "security.istio.io" and target.kind == "AuthorizationPolicy":
        reasons = _authz_wider(old_spec, new_spec)
        return [Risk("authz-loosened", _reasons(reasons))] if reasons else []
    if target.group == "security.istio.io" and target.kind == "PeerAuthentication":
        return _mtls_risks(old_spec, new_spec)
    if target.group == "networking.istio.io" and target.kind == "DestinationRule":
        return _destination_tls_risks(old_spec, new_spec)
    if _is_network_policy(target):
        reasons = _network_wider(target, old_spec, new_spec)
        return [Risk("network-policy-loosened", _reasons(reasons))] if reasons else []
    return []


def _reasons(reasons: list[str]) -> str:
    shown = "; ".join(reasons[:3])
    return shown + (f"; and {len(reasons) - 3} more" if len(reasons) > 3 else "")


def _authz_wider(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    before, after = old.get("action", "ALLOW"), new.get("action", "ALLOW")
    if before != after:
        return [] if after == "DENY" else [f"action {before} -> {after}"]
    selector_old, selector_new = old.get("selector") or {}, new.get("selector") or {}
    rules_old, rules_new = old.get("rules") or [], new.get("rules") or []
    if after == "ALLOW":
        reasons = [f"selector widened: {r}" for r in wider(selector_old, selector_new, "selector")]
        return reasons + [f"allows more: {r}" for r in wider(rules_old, rules_new, "rules")]
    if after == "DENY":
        reasons = [f"selector narrowed: {r}" for r in wider(selector_new, selector_old, "selector")]
        return reasons + [f"denies less: {r}" for r in wider(rules_new, rules_old, "rules")]
    return []


def _network_wider(target: Target, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    keys = (
        ("podSelector",)
        if target.group == "networking.k8s.io"
        else ("selector", "namespaceSelector", "serviceAccountSelector")
    )
    reasons = [
        f"selector widened: {r}"
        for r in wider({k: old[k] for k in keys if k in old}, {k: new[k] for k in keys if k in new})
    ]
    lost = _policy_types(target, old) - _policy_types(target, new)
    reasons += [f"{t} no longer enforced" for t in sorted(lost)]
    rules_old, rules_new = _policy_rules(target, old), _policy_rules(target, new)
    for direction in ("ingress", "egress"):
        before, after = rules_old[direction], rules_new[direction]
        kind = "" if target.group == "networking.k8s.io" else " Allow"
        allowed = wider(before["allow"], after["allow"], f"{direction}{kind} rules")
        denied = wider(after["deny"], before["deny"], f"{direction} Deny rules")
        reasons += [f"allows more: {r}" for r in allowed]
        reasons += [f"denies less: {r}" for r in denied]
    return reasons


_MTLS_RANK = {"STRICT": 3, "PERMISSIVE": 2, "UNSET": 1, "DISABLE": 0}
_DR_TLS_RANK = {"ISTIO_MUTUAL": 3, "MUTUAL": 3, "SIMPLE": 1, "DISABLE": 0}


def _mtls_risks(old: dict[str, Any], new: dict[str, Any]) -> list[Risk]:
    def modes(spec: dict[str, Any]) -> dict[str, str]:
        found = {"mtls.mode": str((spec.get("mtls") or {}).get("mode") or "UNSET")}
        for port, setting in (spec.get("portLevelMtls") or {}).items():
            found[f"portLevelMtls.{port}.mode"] = str((setting or {}).get("mode") or "UNSET")
        return found

    before, after = modes(old), modes(new)
    risks = []
    for key, mode in before.items():
        now = after.get(key, after["mtls.mode"])
        if _MTLS_RANK.get(now, 1) < _MTLS_RANK.get(mode, 1):
            risks.append(Risk("mtls-weakened", f"mTLS {mode} -> {now}", f"spec.{key}"))
    return risks


def _destination_tls_risks(old: dict[str, Any], new: dict[str, Any]) -> list[Risk]:
    risks = []
    for path, before, after in field_changes(old, new, ("spec",)):
        if len(path) >= 2 and path[-2:] == ("tls", "mode"):
            rank_old = _DR_TLS_RANK.get(str(before), 2)
            rank_new = _DR_TLS_RANK.get(str(after), 2)
            if rank_new < rank_old:
                shown = "(not set)" if after is ABSENT else after
                risks.append(
                    Risk(
                        "mtls-weakened",
                        f"TLS mode {before} -> {shown}",
                        format_field_path(path),
                    )
                )
    return risks


# -- charts -----------------------------------------------------------------

_SEMVER = re.compile(r"^v?(\d+)(?:\.(\d+))?")


def _chart_versions(body: Any) -> dict[str, str]:
    versions = {}
    for source in _sources(body):
        chart = _chart_name(source)
        if chart and isinstance(source.get("targetRevision"), str):
            versions[chart] = source["targetRevision"]
    spec = body.get("spec") if isinstance(body, dict) else None
    chart_spec = (
        (((spec or {}).get("chart") or {}).get("spec") or {}) if isinstance(spec, dict) else {}
    )
    if isinstance(chart_spec, dict) and isinstance(chart_spec.get("chart"), str):
        versions[chart_spec["chart"]] = str(chart_spec.get("version", ""))
    return versions


def _chart_risks(old: Any, new: Any) -> list[Risk]:
    risks = []
    before, after = _chart_versions(old), _chart_versions(new)
    for chart, version in sorted(after.items()):
        previous = before.get(chart)
        if previous is None or previous == version:
            continue
        a, b = _SEMVER.match(previous), _SEMVER.match(version)
        if not a or not b:
            continue
        major_a, major_b = int(a[1]), int(b[1])
        minor_a, minor_b = int(a[2] or 0), int(b[2] or 0)
        if major_a != major_b or (major_a == 0 and minor_a != minor_b):
            risks.append(Risk("chart-major-changed", f"chart {chart} {previous} -> {version}"))
    return risks


# -- leaves: replicas, persistence, TLS minimums, retention ---------------------


def _leaves(value: Any, path: FieldPath) -> Iterator[tuple[FieldPath, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    elif value is not ABSENT:
        yield path, value


def _leaf_pairs(raw: list[tuple[FieldPath, Any, Any]]) -> Iterator[tuple[FieldPath, Any, Any]]:
    """Every scalar that changed, also inside maps and lists added or removed whole."""
    for path, old, new in raw:
        if not isinstance(old, dict | list) and not isinstance(new, dict | list):
            yield path, old, new
            continue
        before, after = dict(_leaves(old, path)), dict(_leaves(new, path))
        for leaf in [*before, *(p for p in after if p not in before)]:
            a, b = before.get(leaf, ABSENT), after.get(leaf, ABSENT)
            if a != b:
                yield leaf, a, b


def _key(path: FieldPath) -> str:
    for part in reversed(path):
        if isinstance(part, str):
            return part
    return ""


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _leaf_risks(
    context: _Context, target: Target, path: FieldPath, old: Any, new: Any
) -> list[Risk]:
    key = _key(path)
    shown = format_field_path(path)
    old_text = "(not set)" if old is ABSENT else _compact(old)
    new_text = "(not set)" if new is ABSENT else _compact(new)
    risks = []
    if context.production and key in REPLICA_KEYS:
        before, after = _number(old), _number(new)
        if before is not None and (new is ABSENT or (after is not None and after < before)):
            risks.append(Risk("replicas-reduced", f"{key} {old_text} -> {new_text}", shown))
    if (
        len(path) >= 2
        and path[-2:] == ("persistence", "enabled")
        and old is True
        and new is not True
    ):
        risks.append(
            Risk("data-deleted", f"persistence turned off ({old_text} -> {new_text})", shown)
        )
    if _tls_key(path):
        before_tls, after_tls = _tls_minimum(old), _tls_minimum(new)
        if before_tls is not None and (
            new is ABSENT or (after_tls is not None and after_tls < before_tls)
        ):
            risks.append(Risk("tls-min-lowered", f"{key} {old_text} -> {new_text}", shown))
    if "retention" in key.lower():
        before_r, after_r = _amount(key, old), _amount(key, new)
        shorter = (
            after_r is not None
            and before_r is not None
            and after_r[0] == before_r[0]
            and after_r[1] < before_r[1]
        )
        if before_r is not None and (new is ABSENT or shorter):
            risks.append(Risk("retention-shortened", f"{key} {old_text} -> {new_text}", shown))
    return risks


_TLS_KEY = re.compile(
    r"(?i)^(?:.*ssl_?protocols|min_?(?:tls|ssl|protocol)_?version|tls_?min_?version|min_?tls)$"
)
_TLS_TOKEN = re.compile(r"(?i)(TLS|SSL)[ _-]?V?(?:ERSION)?[ _]?(\d)(?:[._]?(\d))?")
_BARE_VERSION = re.compile(r"^v?(\d)\.(\d)$")


def _tls_key(path: FieldPath) -> bool:
    key = _key(path)
    if _TLS_KEY.match(key):
        return True
    return key == "minVersion" and any(isinstance(p, str) and "tls" in p.lower() for p in path)


def _tls_minimum(value: Any) -> tuple[int, int, int] | None:
    """The lowest protocol a value admits: TLSV1_2, TLSv1.3, VersionTLS12,
    `TLSv1.2 TLSv1.3` (Kong's ssl_protocols), 1.2; None when it names none."""
    if not isinstance(value, str):
        return None
    found = []
    for family, major, minor in _TLS_TOKEN.findall(value):
        found.append((1 if family.upper() == "TLS" else 0, int(major), int(minor or 0)))
    bare = _BARE_VERSION.match(value.strip())
    if bare:
        found.append((1, int(bare[1]), int(bare[2])))
    return min(found) if found else None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|mo|[smhdwy])", re.IGNORECASE)
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGTPE]?)(i?)B?$", re.IGNORECASE)
_SECONDS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "mo": 30 * 86400,
    "y": 365 * 86400,
}


def _amount(key: str, value: Any) -> tuple[str, float] | None:
    """A retention as a comparable amount: ("time", seconds), ("size", bytes) or
    ("number", n); None when the value is none of these. Durations as Prometheus,
    Thanos and Go write them (`720h`, `30d`, `1h30m`); CloudNativePG's
    `retentionPolicy` counts `m` in months. Sizes as `50GB` or `50Gi`."""
    number = _number(value)
    if number is not None:
        return ("number", number)
    if not isinstance(value, str):
        return None
    text = value.strip()
    size = _SIZE.match(text)
    if size and ("size" in key.lower() or size[3] or text.upper().endswith("B")):
        power = " KMGTPE".index(size[2].upper() or " ")
        return ("size", float(size[1]) * (1024 if size[3] else 1000) ** power)
    parts = _DURATION.findall(text)
    if parts and "".join(f"{n}{u}" for n, u in parts) == text:
        seconds = 0.0
        for amount, unit in parts:
            name = unit.lower()
            if name == "m" and key == "retentionPolicy":
                name = "mo"
            seconds += float(amount) * _SECONDS[name]
        return ("time", seconds)
    return None


# --------------------------------------------------------------------------
# The commands' core.


def _production(platforms: list[Any]) -> Callable[[str], bool]:
    def production(env: str) -> bool:
        for platform in platforms:
            if env in platform.environments:
                return bool(platform.environments[env].production)
        return env in PRODUCTION_NAMES

    return production


def diff_directory(
    spec_path: Path,
    out_dir: Path,
    environments: list[str] | None = None,
    *,
    display_name: str | None = None,
) -> DiffReport:
    """Compare the spec's render with the tree in out_dir (which must exist)."""
    from meshctl.pipeline import load_platform, render_files
    from meshctl.spec import select_environments

    platform = load_platform(spec_path, display_name)
    selected = select_environments(platform, environments)
    disk = DirectoryTree(out_dir)
    rendered = MemoryTree(render_files(platform, selected))
    envs = list(selected)
    if not environments:  # environments only on disk: a render removes them
        envs += [e for e in tree_environments(disk) if e not in envs]
    result = compare(disk, rendered, envs, _production([platform]))
    return DiffReport(platform.source.name, Against("directory", str(out_dir)), result)


def diff_revision(
    spec_path: Path,
    ref: str,
    environments: list[str] | None = None,
    *,
    display_name: str | None = None,
) -> DiffReport:
    """Compare the spec's render with the render of the spec at Git revision ref."""
    from meshctl.pipeline import load_platform, render_files
    from meshctl.spec import select_environments

    platform = load_platform(spec_path, display_name)
    selected = select_environments(platform, environments)
    repo = _GitSpec.locate(spec_path, ref)
    with tempfile.TemporaryDirectory(prefix="meshctl-diff-") as temp:
        old_spec = repo.export(Path(temp))
        old_platform = load_platform(old_spec, f"{ref}:{repo.path}")
        # The same header as the new render, so unchanged files are byte-identical.
        old_platform = replace(
            old_platform, source=replace(old_platform.source, name=platform.source.name)
        )
        envs = list(selected)
        if not environments:
            envs += [e for e in old_platform.environments if e not in envs]
        old_envs = [e for e in envs if e in old_platform.environments]
        old_tree = MemoryTree(render_files(old_platform, old_envs))
    new_tree = MemoryTree(render_files(platform, selected))
    result = compare(old_tree, new_tree, envs, _production([platform, old_platform]))
    against = Against("git", repo.path, ref, repo.commit)
    return DiffReport(platform.source.name, against, result)


@dataclass
class _GitSpec:
    """A spec file (and its project's profiles/) as committed at a revision."""

    top: Path
    path: str  # the spec, relative to the repository's top
    ref: str
    commit: str

    @classmethod
    def locate(cls, spec_path: Path, ref: str) -> _GitSpec:
        if not ref or ref.startswith("-"):
            raise UsageError(f"--base: '{ref}' is not a Git revision")
        folder = spec_path.resolve().parent
        top = _git(
            ["rev-parse", "--show-toplevel"],
            folder,
            f"{folder} is not in a Git repository (--base needs one)",
        )
        commit = _git(
            ["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
            folder,
            f"--base: unknown Git revision '{ref}'",
        )
        try:
            relative = spec_path.resolve().relative_to(Path(top).resolve()).as_posix()
        except ValueError:
            raise UsageError(f"{spec_path} is not inside the Git repository at {top}") from None
        return cls(Path(top), relative, ref, commit)

    def export(self, into: Path) -> Path:
        """Write the spec and its profiles/ as they were into `into`; return the spec."""
        spec = into / posixpath.basename(self.path)
        spec.write_bytes(
            self._blob(self.path, f"--base: {self.path} is not in the repository at {self.ref}")
        )
        folder = posixpath.dirname(self.path)
        profiles = posixpath.join(folder, "profiles") if folder else "profiles"
        listing = _git(
            ["ls-tree", "-z", self.commit, "--", f"{profiles}/"], self.top, None, text=False
        )
        for entry in listing.split("\0"):
            meta, _, name = entry.partition("\t")
            if meta.split(" ")[1:2] == ["blob"] and name.endswith(".yaml"):
                target = into / "profiles" / posixpath.basename(name)
                target.parent.mkdir(exist_ok=True)
                target.write_bytes(self._blob(name, f"--base: cannot read {name} at {self.ref}"))
        return spec

    def _blob(self, path: str, failure: str) -> bytes:
        return _git_bytes(["cat-file", "blob", f"{self.commit}:{path}"], self.top, failure)


def _git_bytes(args: list[str], cwd: Path, failure: str | None) -> bytes:
    git = shutil.which("git")
    if git is None:
        raise UsageError("--base needs git, and git is not on PATH")
    try:
        result = subprocess.run(
            [git, "-c", "core.quotepath=off", *args],
            cwd=cwd,
            capture_output=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except OSError as exc:
        raise UsageError(f"cannot run git: {exc.strerror or exc}") from exc
    if result.returncode != 0:
        if failure is None:
            return b""
        # Say why when git's reason is not the one we name (say, a repository
        # owned by another user, which git refuses to read).
        detail = result.stderr.decode("utf-8", errors="replace").strip().splitlines()
        if detail and "not a git repository" not in detail[0].lower() and args[0] == "rev-parse":
            failure += f" (git: {detail[0].removeprefix('fatal: ')})"
        raise UsageError(failure)
    return result.stdout


def _git(args: list[str], cwd: Path, failure: str | None, *, text: bool = True) -> str:
    output = _git_bytes(args, cwd, failure).decode("utf-8", errors="replace")
    return output.strip() if text else output
