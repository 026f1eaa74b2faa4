"""One source of truth: the committed schemas and reference are the models' output."""

from __future__ import annotations

import ast
import json
import typing
from pathlib import Path

import jsonschema
import pytest

from meshctl import models, policy
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
