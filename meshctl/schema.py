"""JSON Schemas (draft 2020-12) generated from the pydantic models.

The published schema describes what a user writes: the document with *layers*
of the settings sections, in which every field is optional and ``null`` means
"remove what a lower layer set". It is derived mechanically from the effective
``Settings`` models, so the two can never disagree. ``schemas/*.schema.json``
are these functions' output, committed; a test fails when they drift.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

from meshctl import models

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_BASE = "https://meshctl.io/schemas/v1alpha1/"
LAYER_SUFFIX = "Layer"


def _nullable(prop: dict[str, Any]) -> dict[str, Any]:
    prop = dict(prop)
    description = prop.pop("description", None)
    prop.pop("default", None)
    if "anyOf" in prop and {"type": "null"} in prop["anyOf"]:
        result = prop
    elif isinstance(prop.get("type"), str) and not ({"$ref", "enum", "const"} & prop.keys()):
        result = {**prop, "type": [prop["type"], "null"]}
    elif isinstance(prop.get("type"), list):
        result = {**prop, "type": sorted({*prop["type"], "null"})}
    else:
        result = {"anyOf": [prop, {"type": "null"}]}
    if description:
        result["description"] = description
    return result


def _retarget_refs(node: Any, names: set[str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                target = value.rsplit("/", 1)[-1]
                out[key] = f"#/$defs/{target}{LAYER_SUFFIX}" if target in names else value
            else:
                out[key] = _retarget_refs(value, names)
        return out
    if isinstance(node, list):
        return [_retarget_refs(item, names) for item in node]
    return node


def _layer_defs() -> dict[str, Any]:
    """Layer forms of every settings model: no required fields, every field nullable."""
    effective = _tidy(models.Settings.model_json_schema(by_alias=True))
    defs: dict[str, Any] = effective.pop("$defs", {})
    defs["Settings"] = effective
    names = set(defs)
    layers: dict[str, Any] = {}
    for name, original in defs.items():
        definition = _retarget_refs(copy.deepcopy(original), names)
        definition.pop("required", None)
        if "properties" in definition:
            definition["properties"] = {
                key: _nullable(prop) for key, prop in definition["properties"].items()
            }
        definition["title"] = f"{definition.get('title', name)} (layer)"
        layers[f"{name}{LAYER_SUFFIX}"] = definition
    return layers


def _tidy(node: Any) -> Any:
    """Resolve layer markers, key patterns into propertyNames, drop generated titles."""
    if isinstance(node, list):
        return [_tidy(item) for item in node]
    if not isinstance(node, dict):
        return node
    if models.LAYER_MARKER in node:
        rest = {k: v for k, v in node.items() if k != models.LAYER_MARKER}
        return {"$ref": f"#/$defs/{node[models.LAYER_MARKER]}", **rest}
    node = {key: _tidy(value) for key, value in node.items()}
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
    defs.update(_layer_defs())
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
