"""One source of truth: the committed schemas and reference are the models' output."""

from __future__ import annotations

import ast
import json
import typing
from pathlib import Path

import jsonschema
import pytest

from meshctl import models, policy, schema
from meshctl.reference import markdown
from meshctl.schema import SCHEMAS, schema_text

ROOT = Path(__file__).resolve().parents[1]
REGENERATE = (
    "meshctl schema > schemas/platform.schema.json; "
    "meshctl schema --profile > schemas/profile.schema.json; "
    "meshctl schema --format markdown > docs/spec.md"
)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_committed_schema_matches_the_models(name: str) -> None:
    committed = (ROOT / "schemas" / name).read_text()
    assert committed == schema_text(name), f"schemas/{name} is stale; run: {REGENERATE}"


def test_committed_reference_matches_the_schema() -> None:
    assert (ROOT / "docs/spec.md").read_text() == markdown(), (
        f"docs/spec.md is stale; run: {REGENERATE}"
    )


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_schemas_are_valid_draft_2020_12(name: str) -> None:
    schema = json.loads(schema_text(name))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_the_example_validates_against_the_published_schema() -> None:
    from ruamel.yaml import YAML

    schema = json.loads(schema_text("platform.schema.json"))
    data = YAML(typ="safe", pure=True).load((ROOT / "templates/init/platform.yaml").read_text())
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(data)) == []


def test_built_in_profiles_validate_against_the_profile_schema() -> None:
    """meshctl skips this check at run time for its own profiles; here it is."""
    from ruamel.yaml import YAML

    from meshctl.resources import profiles_dir

    schema = json.loads(schema_text("profile.schema.json"))
    validator = jsonschema.Draft202012Validator(schema)
    paths = sorted(profiles_dir().glob("*.yaml"))
    assert [p.stem for p in paths] == ["default", "dev", "prod", "staging"]
    for path in paths:
        data = YAML(typ="safe", pure=True).load(path.read_text())
        assert list(validator.iter_errors(data)) == [], path.name
        assert data["name"] == path.stem


def test_layers_accept_null_and_partial_settings() -> None:
    schema = json.loads(schema_text("platform.schema.json"))
    layer = {"$defs": schema["$defs"], "$ref": "#/$defs/SettingsLayer"}
    validator = jsonschema.Draft202012Validator(layer)
    assert validator.is_valid({"gateway": {"resources": {"limits": {"cpu": None}}}})
    assert validator.is_valid({"mesh": None})
    assert not validator.is_valid({"gateway": {"replicas": 0}})
    assert not validator.is_valid({"gateway": {"replicaz": 3}})


def test_every_policy_has_a_check_and_a_name_in_the_schema() -> None:
    names = typing.get_args(models.Policy)
    assert set(names) == set(policy.POLICIES)


def test_core_never_imports_the_cli_frameworks() -> None:
    """Only cli.py and reporters.py may import typer or rich; the core never prints."""
    allowed = {"cli.py", "reporters.py", "__main__.py"}
    offenders = []
    for path in sorted((ROOT / "meshctl").rglob("*.py")):
        if path.name in allowed:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.name}: {n}" for n in names if n.split(".")[0] in ("typer", "rich", "click")
            ]
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "print":
                offenders.append(f"{path.name}: print()")
    assert offenders == []


def _layer_validator() -> typing.Any:
    from pydantic import TypeAdapter

    return TypeAdapter(models.SettingsLayer)


def _settings_models() -> dict[str, type[models.Model]]:
    """Every model reachable from Settings, by name."""
    found: dict[str, type[models.Model]] = {}
    pending: list[typing.Any] = [models.Settings]
    while pending:
        hint = pending.pop()
        if isinstance(hint, type) and issubclass(hint, models.Model):
            if hint.__name__ not in found:
                found[hint.__name__] = hint
                pending += [info.annotation for info in hint.model_fields.values()]
        else:
            pending += typing.get_args(hint)
    return found


def test_every_settings_model_has_a_layer_with_its_fields_all_optional() -> None:
    schema = json.loads(schema_text("platform.schema.json"))
    for name, model in _settings_models().items():
        layer = schema["$defs"][name + models.LAYER_SUFFIX]
        aliases = [info.alias or key for key, info in model.model_fields.items()]
        assert sorted(layer["properties"]) == sorted(aliases), name
        assert "required" not in layer, name
        assert layer["additionalProperties"] is False, name
        validator = jsonschema.Draft202012Validator({"$defs": schema["$defs"], **layer})
        assert validator.is_valid(dict.fromkeys(aliases)), f"{name}: null must remove"


def test_pydantic_layers_take_null_everywhere_and_refuse_unknown_keys() -> None:
    validator = _layer_validator()
    sections = {
        (info.alias or key): info.annotation for key, info in models.Settings.model_fields.items()
    }
    for alias, hint in sections.items():
        model = next(a for a in (hint, *typing.get_args(hint)) if isinstance(a, type))
        if not issubclass(model, models.Model):
            continue  # domain
        fields = [info.alias or key for key, info in model.model_fields.items()]
        # A layer validates to a plain dict (by field name), merged as written.
        validated = validator.validate_python({alias: dict.fromkeys(fields)})
        assert validated == {alias: dict.fromkeys(model.model_fields)}
        with pytest.raises(ValueError, match="Extra inputs are not permitted"):
            validator.validate_python({alias: {"noSuchKey": 1}})
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        validator.validate_python({"gateway": {"replicas": 0}})
    with pytest.raises(ValueError, match="valid integer"):
        validator.validate_python({"gateway": {"replicas": "2"}})  # strict, as the schema


def test_a_layer_has_no_cross_field_rules() -> None:
    """A layer may set one half of a pair; the merged settings must have both."""
    half = {"mode": "postgres", "database": "kong"}
    assert _layer_validator().validate_python({"gateway": {"database": half}})
    with pytest.raises(ValueError, match="host"):
        models.KongDatabase.model_validate(half)


def test_the_layer_derivation_refuses_a_schema_it_cannot_follow() -> None:
    from pydantic_core import core_schema

    hidden = core_schema.chain_schema(
        [core_schema.str_schema(), core_schema.definition_reference_schema("meshctl.models.X")]
    )
    with pytest.raises(TypeError, match="'chain' schema"):
        models._LayerSchemas()._layer(hidden)


def test_each_document_gets_layers_of_its_own() -> None:
    """pydantic inlines a definition used once by rewriting its reference in
    place, so two documents must never share the dicts the derivation builds."""

    def containers(node: typing.Any, found: set[int]) -> set[int]:
        if isinstance(node, dict):
            if node.get("type") in ("typed-dict", "typed-dict-field", "definition-ref"):
                found.add(id(node))
            for value in node.values():
                containers(value, found)
        elif isinstance(node, list | tuple):
            for value in node:
                containers(value, found)
        return found

    first = models.SettingsLayer.__get_pydantic_core_schema__(dict, None)
    second = models.SettingsLayer.__get_pydantic_core_schema__(dict, None)
    assert first == second
    assert len(containers(first, set())) > 300  # 64 layers, their fields, references
    assert containers(first, set()).isdisjoint(containers(second, set()))


def test_whole_number_bounds_are_written_as_integers_whatever_pydantic_writes() -> None:
    """pydantic 2.10 writes a float field's `le=100` as 100.0, 2.11+ as 100; the
    published bytes must not depend on which is installed."""
    tidy = schema._tidy(
        {
            "type": "number",
            "exclusiveMaximum": 100.0,
            "minimum": 90.0,
            "multipleOf": 0.5,
            "default": 95.0,
            "properties": {"x": {"maximum": 1000.0, "exclusiveMinimum": 0.0}},
        }
    )
    assert tidy == {
        "type": "number",
        "exclusiveMaximum": 100,
        "minimum": 90,
        "multipleOf": 0.5,
        "default": 95.0,
        "properties": {"x": {"maximum": 1000, "exclusiveMinimum": 0}},
    }
    assert isinstance(tidy["exclusiveMaximum"], int) and isinstance(tidy["default"], float)
    assert json.dumps(tidy["properties"]) == '{"x": {"maximum": 1000, "exclusiveMinimum": 0}}'
