"""The spec reference (docs/spec.md), generated from the schema's descriptions.

`meshctl schema --format markdown` prints it; a test fails when the committed
copy is stale, so the reference can never disagree with the schema.
"""

from __future__ import annotations

from typing import Any

from meshctl.models import LAYER_SUFFIX
from meshctl.schema import platform_schema

INTRO = """\
# platform.yaml reference

Generated from `schemas/platform.schema.json` by `meshctl schema --format markdown`;
do not edit. Settings marked *layered* come from the built-in defaults and the
environment's profile unless the spec sets them (`meshctl profiles show <name>`
prints a profile's values); in a layer, `null` removes what a lower layer set.
"""


def _type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        return f"[{_title(name)}](#{_anchor(name)})"
    if "anyOf" in prop:
        return " or ".join(_type(p) for p in prop["anyOf"] if p != {"type": "null"})
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{prop['const']}`"
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"map of {_type(prop['additionalProperties'])}"
    if isinstance(kind, list):
        return " or ".join(k for k in kind if k != "null")
    return str(kind)


def _title(name: str) -> str:
    return name.removesuffix(LAYER_SUFFIX)


def _anchor(name: str) -> str:
    return _title(name).lower()


def _constraints(prop: dict[str, Any]) -> str:
    parts = []
    for key, label in (
        ("minimum", ">="),
        ("maximum", "<="),
        ("minLength", "length >="),
        ("maxLength", "length <="),
        ("minItems", "items >="),
    ):
        if key in prop:
            parts.append(f"{label} {prop[key]}")
    if "default" in prop and prop["default"] not in (None, [], {}):
        parts.append(f"default `{prop['default']}`")
    return "; ".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown() -> str:
    schema = platform_schema()
    defs: dict[str, Any] = schema["$defs"]
    order: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                name = ref.rsplit("/", 1)[-1]
                if name not in order:
                    order.append(name)
                    visit(defs[name])
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    root = {key: value for key, value in schema.items() if key != "$defs"}
    lines = [INTRO, "## Platform", "", schema.get("description", ""), ""]
    lines += _table(root)
    visit(root)
    for name in order:
        definition = defs[name]
        layered = " *(layered)*" if name.endswith(LAYER_SUFFIX) else ""
        lines += [f"## {_title(name)}{layered}", ""]
        if definition.get("description"):
            lines += [definition["description"], ""]
        lines += _table(definition)
    return "\n".join(lines).rstrip() + "\n"


def _table(definition: dict[str, Any]) -> list[str]:
    properties = definition.get("properties", {})
    if not properties:
        return [f"Type: {_type(definition)}", ""]
    required = set(definition.get("required", []))
    lines = ["| key | type | required | description |", "|---|---|---|---|"]
    for key, prop in properties.items():
        description = prop.get("description", "")
        extra = _constraints(prop)
        text = f"{description} ({extra})" if description and extra else description or extra
        lines.append(
            f"| `{key}` | {_cell(_type(prop))} | {'yes' if key in required else ''} "
            f"| {_cell(text)} |"
        )
    return [*lines, ""]
