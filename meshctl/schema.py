"""JSON Schemas (draft 2020-12) generated from the pydantic models.

The published schema describes what a user writes: the document, with *layers*
of the settings sections (``models.SettingsLayer`` and the others: every field
optional, ``null`` removes what a lower layer set). It is pydantic's own schema
of the models that validate a spec, tidied for editors, so validation and
schema cannot disagree.
``schemas/*.schema.json`` are these functions' output, committed; a test fails
when they drift.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from meshctl import models

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_BASE = "https://meshctl.io/schemas/v1alpha1/"
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


def _tidy(node: Any) -> Any:
    """Key patterns into propertyNames; drop generated titles and null defaults;
    whole-number bounds as integers."""
    if isinstance(node, list):
        return [_tidy(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _tidy(value) for key, value in node.items()}
    for key in _BOUNDS:
        # pydantic before 2.11 writes a float field's bound 100 as 100.0: the
        # same number, but not the same bytes as the committed schema.
        bound = node.get(key)
        if isinstance(bound, float) and bound.is_integer():
            node[key] = int(bound)
    if "default" in node and node["default"] is None:
        del node["default"]
    patterns = node.get("patternProperties")
    if isinstance(patterns, dict) and len(patterns) == 1:
        # pydantic expresses constrained keys as patternProperties, which lets a
        # key that does not match through silently; propertyNames rejects it.
        ((pattern, value_schema),) = patterns.items()
        del node["patternProperties"]
        node["propertyNames"] = {**node.get("propertyNames", {}), "pattern": pattern}
        node["additionalProperties"] = value_schema
    properties = node.get("properties")
    if isinstance(properties, dict):
        for prop in properties.values():
            if isinstance(prop, dict):
                prop.pop("title", None)
    return node


def _document_schema(model: type[models.Model], schema_id: str) -> dict[str, Any]:
    schema = _tidy(model.model_json_schema(by_alias=True))
    defs = schema.pop("$defs", {})
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_BASE + schema_id,
        **schema,
        "$defs": dict(sorted(defs.items())),
    }


@cache
def platform_schema() -> dict[str, Any]:
    """The schema of platform.yaml."""
    return _document_schema(models.PlatformDocument, "platform.schema.json")


@cache
def profile_schema() -> dict[str, Any]:
    """The schema of a profile file (profiles/<name>.yaml)."""
    return _document_schema(models.ProfileDocument, "profile.schema.json")


@cache
def published(name: str) -> dict[str, Any]:
    """A committed schema, as validation uses it at run time (a test keeps the
    committed files equal to what the models generate)."""
    from meshctl.resources import schemas_dir

    return json.loads((schemas_dir() / name).read_text())  # type: ignore[no-any-return]


SCHEMAS = {
    "platform.schema.json": platform_schema,
    "profile.schema.json": profile_schema,
}


def schema_text(name: str) -> str:
    """The committed form: stable key order, two-space indent, trailing newline."""
    return json.dumps(SCHEMAS[name](), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
