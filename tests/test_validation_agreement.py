"""pydantic validates specs; jsonschema explains refusals. They must agree.

Both check the schema generated from the models (meshctl.schema), but they are
two engines. Every spec the tests know, and thousands of mutations of the
example (each value replaced by one of wrong type, out of range, or removed),
get the same verdict from both, except where pydantic alone enforces a rule the
schema cannot express (a model validator: "set exactly one of server and name").
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from meshctl import models, yamlio
from meshctl.resources import example_spec
from meshctl.schema import schema_text

from conftest import CASES

REPLACEMENTS: list[Any] = [None, True, 0, -1, 2.5, 70_000, "x", "", "../etc", [], {}, {"bogus": 1}]


def _validator() -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(json.loads(schema_text("platform.schema.json")))


def _verdicts(data: Any, validator: jsonschema.protocols.Validator) -> tuple[bool, bool, bool]:
    """(pydantic accepts, jsonschema accepts, pydantic's refusals are all model rules)."""
    try:
        models.PlatformDocument.model_validate(data)
        pydantic_ok, only_rules = True, False
    except ValidationError as exc:
        pydantic_ok = False
        only_rules = all(e["type"] == "value_error" for e in exc.errors())
    return pydantic_ok, validator.is_valid(data), only_rules


def _set(data: Any, path: tuple[str | int, ...], value: Any) -> Any:
    mutated = copy.deepcopy(data)
    target = mutated
    for part in path[:-1]:
        target = target[part]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return mutated


_DELETE = object()


def _mutations() -> list[tuple[str, Any]]:
    document = yamlio.parse_document(example_spec().read_text())
    paths = [p for p in sorted(document.positions, key=str) if p]
    found = []
    for path in paths:
        choices = list(REPLACEMENTS)
        if isinstance(path[-1], str):
            choices.append(_DELETE)
        for value in choices:
            label = f"{path} <- {'(deleted)' if value is _DELETE else repr(value)}"
            found.append((label, _set(document.data, path, value)))
    return found


def test_mutations_of_the_example_get_the_same_verdict_from_both() -> None:
    validator = _validator()
    mutations = _mutations()
    assert len(mutations) > 1000
    disagreements = []
    for label, data in mutations:
        pydantic_ok, schema_ok, only_rules = _verdicts(data, validator)
        if pydantic_ok != schema_ok and not (schema_ok and only_rules):
            disagreements.append(f"{label}: pydantic {pydantic_ok}, jsonschema {schema_ok}")
    assert disagreements == []


def _documents() -> dict[str, Any]:
    """Every spec the tests know that is a YAML document (the rest never reach validation)."""
    found = {}
    for spec in [example_spec(), *sorted(CASES.glob("*/*/platform.yaml"))]:
        try:
            found[spec.parent.name] = yamlio.parse_document(spec.read_bytes().decode()).data
        except (yamlio.YamlSyntaxError, UnicodeDecodeError):
            continue
    return found


DOCUMENTS = _documents()


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_every_known_spec_gets_the_same_verdict_from_both(name: str) -> None:
    pydantic_ok, schema_ok, only_rules = _verdicts(DOCUMENTS[name], _validator())
    assert pydantic_ok == schema_ok or (schema_ok and only_rules)
