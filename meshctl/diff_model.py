"""The data of a diff: what changed, where, with which risks (no I/O here).

``meshctl.diff`` computes it, ``meshctl.diff_risks`` flags it and
``meshctl.diff_report`` writes it out.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from enum import Enum
from typing import Any, Literal

from msgspec import Struct, field

from meshctl.paths import format_path

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


class Target(Struct, frozen=True, order=True):
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


class Risk(Struct, frozen=True):
    id: str
    message: str
    path: str | None = None  # the changed key it is about, when there is one


class FieldChange(Struct, frozen=True):
    """One key that changed: its dotted path, old and new value (ABSENT: not there)."""

    path: str
    old: Any
    new: Any


class Change(Struct):
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


class EnvironmentDiff(Struct):
    name: str
    production: bool
    changes: list[Change] = field(default_factory=list)

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action == action)

    @property
    def risky(self) -> int:
        return sum(1 for c in self.changes if c.risky)


class Against(Struct, frozen=True):
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


class DiffReport(Struct):
    spec: str
    against: Against
    environments: list[EnvironmentDiff]

    @property
    def differences(self) -> bool:
        return any(env.changes for env in self.environments)

    def changes(self) -> Iterator[Change]:
        for env in self.environments:
            yield from env.changes


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


def format_field_path(path: FieldPath) -> str:
    """A dotted path: `spec.template.spec.containers[name=kong].image`."""
    return format_path(path)
