"""Stage 2, validate: the JSON Schema, then what a schema cannot say.

Every check yields ``Problem``s located in the source; nothing stops at the
first one. Schema errors are rewritten into messages a platform engineer can
act on (no regular expressions, "did you mean" for unknown keys and values).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator
from functools import cache
from typing import TYPE_CHECKING, Any

from meshctl import models
from meshctl.errors import Location, Problem
from meshctl.paths import format_path

if TYPE_CHECKING:
    import jsonschema

    from meshctl.load import Source
    from meshctl.yamlio import Path

PATTERN_HINTS = {
    models.DNS_LABEL_PATTERN: "must be a DNS-1123 label (lowercase letters, digits and '-', "
    "starting and ending with a letter or digit)",
    models.HOSTNAME_PATTERN: "must be a lowercase DNS name such as api.example.com",
    models.CPU_PATTERN: "must be a CPU quantity such as 500m, 1 or 2.5",
    models.MEMORY_PATTERN: "must be a memory quantity such as 512Mi or 4Gi",
    models.DURATION_PATTERN: "must be a duration such as 250ms, 10s or 5m",
    models.TEXT_PATTERN: "must be a single line without control characters",
    models.PATH_PATTERN: "must be a URL path starting with '/': no '.' or '..' segments, no "
    "spaces, double quotes, '?' or '#', and no encoded slash ('%2F')",
    models.ANNOTATION_KEY_PATTERN: "must be a Kubernetes annotation key such as example.com/name",
    models.HTTPS_URL_PATTERN: "must be an https:// URL such as https://vault.example.com",
    models.CIDR_PATTERN: "must be an IPv4 range such as 10.244.0.0/16",
    models.BUCKET_PATTERN: "must be an S3 bucket name: 3 to 63 lowercase letters, digits, "
    "'.' and '-'",
    models.REMOTE_KEY_PATTERN: "must be a key in the secret store such as team/app/db "
    "(letters, digits and / _ . + = @ -)",
    models.EMAIL_PATTERN: "must be an e-mail address",
}

_YAML_TYPES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


@cache
def _validator(schema_name: str) -> jsonschema.protocols.Validator:
    import jsonschema

    from meshctl.schema import published

    schema = published(schema_name)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def schema_problems(source: Source, schema_name: str, base: Path = ()) -> list[Problem]:
    """All problems of source.data (or of the value at base) against a published schema."""
    data: Any = source.data
    for part in base:
        data = data[part]
    validator = _validator(schema_name)
    problems: list[Problem] = []
    for error in validator.iter_errors(data):
        problems.extend(_explain(source, error, base))
    return unique_problems(problems)


def unique_problems(problems: Iterable[Problem]) -> list[Problem]:
    seen: set[tuple[Location, str, str]] = set()
    unique = []
    for problem in problems:
        key = (problem.location, problem.path, problem.message)
        if key not in seen:
            seen.add(key)
            unique.append(problem)
    return unique


def describe(value: Any) -> str:
    """A short rendering of a value for messages (never the whole of a big one)."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = json.dumps(value, ensure_ascii=False)
    if isinstance(value, str):
        text = "'" + text[1:-1].replace('\\"', '"').replace("'", "\\'") + "'"
    return text if len(text) <= 60 else text[:57] + "..."


def _yaml_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "a mapping"


def suggestion(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _explain(source: Source, error: jsonschema.ValidationError, base: Path) -> Iterator[Problem]:
    path: Path = (*base, *error.absolute_path)
    # jsonschema types these as "maybe unset"; for an error they always are set.
    validator: Any = error.validator
    instance: Any = error.instance
    rule: Any = error.validator_value
    key_error = "propertyNames" in error.absolute_schema_path and isinstance(instance, str)
    if key_error:
        path = (*path, instance)  # the problem is the key itself
    display = format_path(path)
    schema: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}

    if validator in ("anyOf", "oneOf"):
        yield from _explain_alternatives(source, error, base)
        return
    if validator == "additionalProperties" and isinstance(instance, dict):
        allowed = list(schema.get("properties", {}))
        extra = [key for key in instance if key not in allowed]
        for key in extra:
            yield Problem(
                source.location((*path, key), key=True),
                format_path((*path, key)),
                f"unknown key '{key}'{suggestion(key, allowed)}"
                + ("" if suggestion(key, allowed) else _allowed_list(allowed)),
            )
        return
    location = source.location(path, key=key_error)
    if validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        yield Problem(location, display, f"missing required key '{missing}'")
        return
    if validator == "type":
        names = [rule] if isinstance(rule, str) else list(rule)
        wanted = " or ".join(_YAML_TYPES.get(n, n) for n in names if n != "null")
        if "null" in names and not wanted:
            wanted = "null"
        got = _yaml_type(instance)
        if not isinstance(instance, dict | list) and instance is not None:
            got += f" {describe(instance)}"
        yield Problem(location, display, f"expected {wanted}, got {got}")
        return
    if validator == "const" or (validator == "enum" and len(rule) == 1):
        expected = rule if validator == "const" else rule[0]
        yield Problem(location, display, f"expected {describe(expected)}, got {describe(instance)}")
        return
    if validator == "enum":
        options = rule
        shown = ", ".join(describe(o) for o in options)
        hint = (
            suggestion(str(instance), [str(o) for o in options])
            if isinstance(instance, str)
            else ""
        )
        yield Problem(location, display, f"{describe(instance)} is not one of {shown}{hint}")
        return
    if validator == "pattern":
        pattern_hint = PATTERN_HINTS.get(rule)
        message = (
            f"{describe(instance)} {pattern_hint}"
            if pattern_hint
            else f"{describe(instance)} does not match {rule}"
        )
        yield Problem(location, display, message)
        return
    if validator in ("minLength", "maxLength", "minItems", "maxItems", "minProperties"):
        yield Problem(location, display, _size_message(validator, rule, instance))
        return
    yield Problem(
        location,
        display,
        error.message if len(error.message) < 200 else error.message[:197] + "...",
    )


def _allowed_list(allowed: list[str]) -> str:
    if not allowed:
        return "; no keys are allowed here"
    if len(allowed) > 12:
        return ""
    return "; expected one of " + ", ".join(sorted(allowed))


def _size_message(validator: str, limit: int, instance: Any) -> str:
    if validator == "minLength":
        return "must not be empty" if limit == 1 else f"must be at least {limit} characters long"
    if validator == "maxLength":
        return f"is {len(instance)} characters long; the limit is {limit}"
    if validator == "minItems":
        return "must not be empty" if limit == 1 else f"needs at least {limit} items"
    if validator == "maxItems":
        return f"has {len(instance)} items; the limit is {limit}"
    return "must not be empty" if limit == 1 else f"needs at least {limit} entries"


def _explain_alternatives(
    source: Source, error: jsonschema.ValidationError, base: Path
) -> Iterator[Problem]:
    """anyOf/oneOf: report the branch that fits the value's type, not the union."""
    branches: Any = error.validator_value
    instance = error.instance
    non_null = [i for i, b in enumerate(branches) if b != {"type": "null"}]
    if instance is not None and len(non_null) == 1:
        index = non_null[0]
        relevant = [e for e in error.context or [] if e.relative_schema_path[0] == index]
        if relevant:
            for sub in relevant:
                yield from _explain(source, sub, base)
            return
    path: Path = (*base, *error.absolute_path)
    yield Problem(
        source.location(path),
        format_path(path),
        f"{describe(instance)} is not valid here: {error.message[:150]}",
    )


def validate_document(
    source: Source, model: type[models.Model], schema_name: str
) -> tuple[Any, list[Problem]]:
    """Validate source.data as `model`; return (the typed document or None, problems).

    pydantic validates (fast, and in Rust); only a document it refuses pays for
    jsonschema, whose errors make the better messages ("did you mean", every
    problem located). Both check the same schema, generated from the models; the
    cross-field rules that JSON Schema cannot express come from pydantic.
    """
    from pydantic import ValidationError

    try:
        return model.model_validate(source.data), []
    except ValidationError as exc:
        errors = exc.errors()

    def locate(path: Path, _kind: str) -> tuple[Location, str]:
        return source.location(path), format_path(path)

    rules = [e for e in errors if e["type"] == "value_error"]
    problems = schema_problems(source, schema_name) + pydantic_problems(rules, locate)
    if not problems:  # not expected (one schema), but never accept what pydantic refused
        problems = pydantic_problems(errors, locate)
    return None, unique_problems(problems)


def pydantic_problems(
    errors: list[Any], locate: Any, prefix: Path = (), context: str = ""
) -> list[Problem]:
    """Translate pydantic ValidationError.errors() into problems.

    locate(path) returns (Location, display path) for a path inside the
    validated data; prefix is where that data sits in its source.
    """
    problems = []
    for err in errors:
        loc: Path = tuple(err["loc"])
        message = str(err["msg"])
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        location, display = locate((*prefix, *loc), err["type"])
        problems.append(Problem(location, display, message + context, rule="model"))
    return problems


# --------------------------------------------------------------------------
# What the schema cannot say: references between services, reserved names.

GATEWAY_PEER = "gateway"
# Data-tier components a service may name in `uses` (the spec's `data` section).
DATA_PEERS = ("postgres", "redis", "elasticsearch")
_DNS_LABEL = re.compile(models.DNS_LABEL_PATTERN)
RESERVED_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease", "default", "istio-system")


def _items(value: Any) -> list[tuple[int, dict[str, Any]]]:
    return (
        [(i, item) for i, item in enumerate(value) if isinstance(item, dict)]
        if isinstance(value, list)
        else []
    )


def _names(value: Any) -> list[tuple[int, str]]:
    return (
        [(i, v) for i, v in enumerate(value) if isinstance(v, str)]
        if isinstance(value, list)
        else []
    )


def reference_problems(source: Source) -> list[Problem]:
    """Service names unique and not reserved; allowFrom/uses references resolve and agree.

    Works on the raw data, so these problems are reported together with the
    schema's even when parts of the spec are malformed.
    """
    data = source.data
    spec = data.get("spec") if isinstance(data, dict) else None
    services = _items(spec.get("services") if isinstance(spec, dict) else None)
    problems: list[Problem] = []

    def add(index: int, path: Path, message: str) -> None:
        full = ("spec", "services", index, *path)
        problems.append(
            Problem(source.location(full), format_path(full), message, rule="reference")
        )

    by_name = _service_names(services, add, source)
    known = sorted(by_name)
    for index, service in services:
        name = service.get("name")
        # Consent between services only makes sense for a well-formed caller.
        caller = name if isinstance(name, str) and _DNS_LABEL.match(name) else None
        for j, peer in _names(service.get("allowFrom")):
            if peer != GATEWAY_PEER and peer not in by_name:
                add(
                    index,
                    ("allowFrom", j),
                    f"unknown service '{peer}'{suggestion(peer, [*known, GATEWAY_PEER])}",
                )
        for j, target in _names(service.get("uses")):
            if target in DATA_PEERS:
                continue  # enabled or not is per environment: checked on the settings
            if target not in by_name:
                add(
                    index,
                    ("uses", j),
                    f"unknown service or data component '{target}'"
                    f"{suggestion(target, [*known, *DATA_PEERS])}",
                )
            elif caller and caller not in _names_set(by_name[target].get("allowFrom")):
                add(
                    index,
                    ("uses", j),
                    f"'{target}' does not allow calls from '{name}'; add '{name}' to its allowFrom",
                )
        if service.get("routes") and GATEWAY_PEER not in _names_set(service.get("allowFrom")):
            add(
                index,
                ("routes",),
                f"the service has routes but does not allow "
                f"'{GATEWAY_PEER}' in; add it to allowFrom or Kong's requests are denied",
            )
    return problems


def _service_names(
    services: list[tuple[int, dict[str, Any]]], add: Any, source: Source
) -> dict[str, dict[str, Any]]:
    """Services by name; reports duplicates and reserved names and namespaces."""
    by_name: dict[str, dict[str, Any]] = {}
    first_index: dict[str, int] = {}
    for index, service in services:
        name = service.get("name")
        if not isinstance(name, str):
            continue
        if name in first_index:
            line = source.location(("spec", "services", first_index[name], "name")).line
            add(index, ("name",), f"duplicate service name '{name}' (first at line {line})")
        else:
            first_index[name] = index
            by_name[name] = service
        if name == GATEWAY_PEER:
            add(index, ("name",), f"'{GATEWAY_PEER}' is reserved: in allowFrom it means Kong")
        elif name in DATA_PEERS:
            add(index, ("name",), f"'{name}' is reserved: in uses it means the data tier's {name}")
        if service.get("namespace") in RESERVED_NAMESPACES:
            add(
                index,
                ("namespace",),
                f"'{service['namespace']}' is a system namespace; "
                "services get a default-deny policy there, which would break the cluster",
            )
    return by_name


def _names_set(value: Any) -> set[str]:
    return {name for _, name in _names(value)}


def profile_reference_problems(source: Source, profile_names: list[str]) -> list[Problem]:
    """Every environment names a profile that exists."""
    data = source.data
    spec = data.get("spec") if isinstance(data, dict) else None
    environments = spec.get("environments") if isinstance(spec, dict) else None
    problems = []
    for env, body in environments.items() if isinstance(environments, dict) else []:
        profile = body.get("profile") if isinstance(body, dict) else None
        if isinstance(profile, str) and profile not in profile_names:
            path: Path = ("spec", "environments", env, "profile")
            problems.append(
                Problem(
                    source.location(path),
                    format_path(path),
                    f"unknown profile '{profile}'{suggestion(profile, profile_names)} "
                    f"(available: {', '.join(profile_names)})",
                    rule="reference",
                )
            )
    return problems
