"""Stage 3, expand: layer settings for one environment and remember origins.

Layers, lowest first: the built-in ``default`` profile, the profiles the
environment's profile extends, that profile, the spec's common settings, and the
environment's ``overrides``. Maps merge key by key; lists and scalars replace;
an explicit ``null`` removes what lower layers set. Every value keeps the
history of the layers that set it, which ``meshctl explain`` shows.
"""

from __future__ import annotations

import copy
from typing import Any

from msgspec import Struct, field

from meshctl.errors import Location
from meshctl.load import Source
from meshctl.yamlio import Path

REMOVED: Any = object()


class Layer(Struct, frozen=True):
    """One source of settings: where it is, and its settings mapping."""

    label: str  # e.g. "profile prod (built-in)", "spec", "environment prod overrides"
    source: Source
    base: Path  # path of the settings mapping inside source.data
    settings: dict[str, Any]

    def location(self, path: Path) -> Location:
        return self.source.location((*self.base, *path))

    def source_path(self, path: Path) -> Path:
        return (*self.base, *path)


class Contribution(Struct, frozen=True):
    """A layer setting (or removing, value REMOVED) the value at a path."""

    layer: Layer
    path: Path
    value: Any

    @property
    def location(self) -> Location:
        return self.layer.location(self.path)

    @property
    def removed(self) -> bool:
        return self.value is REMOVED


class Expansion(Struct):
    """The merged settings of one environment, with the history of every path."""

    environment: str
    settings: dict[str, Any]
    history: dict[Path, list[Contribution]] = field(default_factory=dict)

    def contributions(self, path: Path) -> list[Contribution]:
        return self.history.get(path, [])

    def origin(self, path: Path) -> Contribution | None:
        """The contribution that decided the value at path (or its nearest ancestor)."""
        for end in range(len(path), -1, -1):
            found = self.history.get(path[:end])
            if found:
                return found[-1]
        return None

    def leaves_under(self, path: Path) -> list[Path]:
        size = len(path)
        return sorted(
            (p for p in self.history if len(p) > size and p[:size] == path),
            key=lambda p: tuple(str(x) for x in p),
        )


def expand(environment: str, layers: list[Layer]) -> Expansion:
    expansion = Expansion(environment, {})
    for layer in layers:
        _apply(expansion, expansion.settings, layer.settings, (), layer)
    return expansion


def _record(expansion: Expansion, layer: Layer, path: Path, value: Any) -> None:
    expansion.history.setdefault(path, []).append(Contribution(layer, path, value))
    if isinstance(value, dict):
        for key, child in value.items():
            _record(expansion, layer, (*path, key), child)


def _record_removal(expansion: Expansion, layer: Layer, path: Path, old: Any) -> None:
    expansion.history.setdefault(path, []).append(Contribution(layer, path, REMOVED))
    if isinstance(old, dict):
        for key, child in old.items():
            _record_removal(expansion, layer, (*path, key), child)


def _apply(
    expansion: Expansion, target: dict[str, Any], incoming: dict[str, Any], path: Path, layer: Layer
) -> None:
    for key, value in incoming.items():
        child_path = (*path, key)
        if value is None:
            _record_removal(expansion, layer, child_path, target.pop(key, None))
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            expansion.history.setdefault(child_path, []).append(Contribution(layer, child_path, {}))
            _apply(expansion, target[key], value, child_path, layer)
        else:
            target[key] = copy.deepcopy(value)
            _record(expansion, layer, child_path, value)
