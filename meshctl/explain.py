"""`meshctl explain`: a setting's effective value and every layer that set it."""

from __future__ import annotations

from typing import Any

from msgspec import Struct

from meshctl import models
from meshctl.errors import UsageError
from meshctl.expand import REMOVED, Contribution, Expansion, Layer, expand
from meshctl.paths import format_path, parse_path
from meshctl.profiles import ProfileSet
from meshctl.spec import Platform
from meshctl.validate import suggestion
from meshctl.yamlio import Path

MISSING: Any = object()


class Leaf(Struct, frozen=True):
    path: Path
    value: Any  # MISSING when removed or never set
    history: list[Contribution]  # lowest layer first; the last one decided


class Explanation(Struct, frozen=True):
    environment: str
    path: Path
    value: Any
    leaves: list[Leaf]


def settings_path(text: str) -> Path:
    """Parse PATH as given on the command line; `spec.` in front is allowed."""
    path = parse_path(text.strip())
    if not path:
        raise UsageError(f"'{text}' is not a settings path; expected e.g. gateway.replicas")
    if path[0] == "spec":
        path = path[1:]
    if not path or path[0] not in models.LAYERED_SECTIONS:
        raise UsageError(
            f"'{text}' is not a layered setting; explain works on "
            + ", ".join(models.LAYERED_SECTIONS)
            + suggestion(str(path[0]) if path else text, models.LAYERED_SECTIONS)
        )
    return path


def _lookup(data: Any, path: Path) -> Any:
    for part in path:
        if isinstance(data, list) and isinstance(part, int):
            if not 0 <= part < len(data):
                return MISSING
            data = data[part]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            return MISSING
    return data


def explain_expansion(expansion: Expansion, path: Path) -> Explanation:
    value = _lookup(expansion.settings, path)
    known = expansion.contributions(path)
    if value is MISSING and not known:
        parent = _lookup(expansion.settings, path[:-1])
        choices = list(parent) if isinstance(parent, dict) else []
        raise UsageError(
            f"no setting '{format_path(path)}'"
            + (
                suggestion(str(path[-1]), choices)
                or (f"; settings there: {', '.join(sorted(choices))}" if choices else "")
            )
        )
    if isinstance(value, dict):
        leaf_paths = [
            p
            for p in expansion.leaves_under(path)
            if not isinstance(_lookup(expansion.settings, p), dict)
        ]
    else:
        leaf_paths = [path]
    leaves = [
        Leaf(p, _lookup(expansion.settings, p), _leaf_history(expansion, p)) for p in leaf_paths
    ]
    return Explanation(expansion.environment, path, value, leaves)


def _leaf_history(expansion: Expansion, path: Path) -> list[Contribution]:
    return [
        c
        for c in expansion.contributions(path)
        if c.value is REMOVED or not isinstance(c.value, dict)
    ]


def explain(platform: Platform, text: str, environments: list[str]) -> list[Explanation]:
    path = settings_path(text)
    return [explain_expansion(platform.environments[env].expansion, path) for env in environments]


def profile_expansion(profiles: ProfileSet, name: str) -> Expansion:
    """What a profile amounts to on its own: its chain of layers, merged."""
    layers = [
        Layer(f"profile {p.name} ({p.origin})", p.source, ("settings",), p.settings)
        for p in profiles.chain(name)
    ]
    return expand(name, layers)


def diff_settings(
    a: dict[str, Any], b: dict[str, Any], path: Path = ()
) -> list[tuple[Path, Any, Any]]:
    """Leaf paths whose values differ between two settings trees (MISSING if absent)."""
    out: list[tuple[Path, Any, Any]] = []
    for key in sorted(set(a) | set(b)):
        left, right = a.get(key, MISSING), b.get(key, MISSING)
        if isinstance(left, dict) and isinstance(right, dict):
            out.extend(diff_settings(left, right, (*path, key)))
        elif left != right:
            out.append(((*path, key), left, right))
    return out
