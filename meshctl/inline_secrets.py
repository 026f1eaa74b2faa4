"""Inline secret values: the spec may only refer to secrets, never hold one.

A spec is committed to Git and its text ends up in rendered files, so a
password, token or private key written into it is leaked. This check walks the
raw data once and reports, with rule ``inline-secret``:

- a key that names a secret (``password``, ``apiToken``, ``clientSecret``, ...)
  whose value is a literal string or number;
- any string, value or key, that contains a private key block or a well-known
  credential format (cloud and SaaS tokens, JWTs, a URL with a password).

Messages never repeat the value. See docs/secrets.md.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from meshctl.errors import Problem
from meshctl.paths import format_path

if TYPE_CHECKING:
    from meshctl.load import Source
    from meshctl.yamlio import Path

__all__ = ["inline_secret_problems"]

RULE = "inline-secret"
_ADVICE = "the spec may only refer to secrets (see docs/secrets.md)"
_NAMED_BY_KEY = "its key names a secret"
_UNSEEN = "<unseen>"

# Keys are compared lower-cased, after the last '/' (annotation keys carry a
# prefix), without '-', '_', '.' and spaces: `api-token`, `API_TOKEN` and
# `example.com/apiToken` are all `apitoken`.
_KEY_SEPARATORS = str.maketrans("", "", "-_. ")
# A key ending in one of these names a secret value: `dbPassword`, `apiToken`.
# Bare `secret` is one, but `<x>Secret` is usually a reference to a Kubernetes
# Secret (`caSecret`, `tlsSecret`), so only the compounds that are values.
# Plurals (`maxTokens`) and `credentials` (meshctl's own `cors.credentials` and
# `objectStorage.credentials` are switches) are not secrets.
_SECRET_SUFFIXES = (
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "token",
    "apikey",
    "accesskey",
    "secretkey",
    "privatekey",
    "signingkey",
    "encryptionkey",
    "clientsecret",
    "sharedsecret",
    "webhooksecret",
    "appsecret",
    "apisecret",
    "consumersecret",
    "hmacsecret",
    "jwtsecret",
    "signingsecret",
    "sessionsecret",
    "cookiesecret",
)
_SECRET_KEYS = frozenset({"secret", "bearer", "authorization"})
# Fields that refer to a secret: never a value, whatever they hold.
_REFERENCE_KEYS = frozenset(
    {"passwordsecret", "casecret", "secretref", "existingsecret", "remotekey", "property"}
)
# Switch-like strings under a secret-named key are not secrets
# (`vault.hashicorp.com/agent-inject-token: "true"`).
_SWITCHES = frozenset({"true", "false", "yes", "no", "on", "off"})

# Each value pattern: a substring every match contains (a cheap test that rules
# out almost every string), the expression, and what the match is called. The
# expressions are bounded by token boundaries, so a hostname, a path or a word
# that merely contains a prefix does not match.
_VALUE_PATTERNS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    (
        "PRIVATE KEY",
        re.compile(r"-{4,5} ?BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)? ?-{4,5}"),
        "a private key block",
    ),
    (
        "AKIA",
        re.compile(r"(?<![A-Za-z0-9])AKIA[A-Z0-9]{16}(?![A-Za-z0-9])"),
        "an AWS access key id",
    ),
    (
        "ASIA",
        re.compile(r"(?<![A-Za-z0-9])ASIA[A-Z0-9]{16}(?![A-Za-z0-9])"),
        "an AWS access key id",
    ),
    (
        "_",
        re.compile(
            r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})"
            r"(?![A-Za-z0-9_])"
        ),
        "a GitHub token",
    ),
    (
        "_live_",
        re.compile(r"(?<![A-Za-z0-9_])[sr]k_live_[A-Za-z0-9]{16,}(?![A-Za-z0-9])"),
        "a Stripe live key",
    ),
    (
        "xox",
        re.compile(r"(?<![A-Za-z0-9])xox[abposr]-[A-Za-z0-9-]{10,}"),
        "a Slack token",
    ),
    (
        "eyJ",
        re.compile(
            r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{7,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*"
            r"(?![A-Za-z0-9_-])"
        ),
        "a JSON Web Token",
    ),
    (
        "AIza",
        re.compile(r"(?<![A-Za-z0-9_-])AIza[A-Za-z0-9_-]{35}(?![A-Za-z0-9_-])"),
        "a Google API key",
    ),
    (
        "@",
        # scheme://user:password@host (the user may be empty, the password not)
        re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:]*:[^\s/?#@]+@[^\s/?#@]"),
        "a URL with a password",
    ),
)
# The shortest string any pattern matches (`a://:p@h`).
_MIN_LENGTH = 8


def inline_secret_problems(source: Source) -> list[Problem]:
    """Every value (or key) in source.data that looks like an inline secret.

    One pass over the data; each distinct string and key is examined once.
    """
    problems: list[Problem] = []
    kinds: dict[str, str | None] = {}  # string -> what it looks like, None: nothing
    secret_keys: dict[str, bool] = {}  # key -> whether it names a secret

    def kind_of(text: str) -> str | None:
        found = kinds.get(text, _UNSEEN)
        if found is _UNSEEN:
            found = kinds[text] = _secret_kind(text)
        return found

    def names_a_secret(key: str) -> bool:
        known = secret_keys.get(key)
        if known is None:
            known = secret_keys[key] = _names_a_secret(key)
        return known

    def report(path: Path, message: str, *, key: bool = False) -> None:
        # A key that looks like a secret is not repeated in the path either:
        # a problem about the key is reported at its mapping, and one below it
        # shows it redacted.
        shown = path[:-1] if key else path
        display = tuple(
            "<redacted>" if isinstance(part, str) and kinds.get(part) else part for part in shown
        )
        problems.append(
            Problem(source.location(path, key=key), format_path(display), message, rule=RULE)
        )

    def walk(value: Any, path: Path) -> None:
        # Paths are built only for what is reported or walked into: most
        # values are clean scalars.
        if isinstance(value, dict):
            walk_mapping(value, path)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, str):
                    found = kind_of(item)
                    if found is not None:
                        report((*path, index), _value_message(found))
                elif isinstance(item, dict | list):
                    walk(item, (*path, index))
        elif isinstance(value, str):
            found = kind_of(value)
            if found is not None:
                report(path, _value_message(found))

    def walk_mapping(mapping: dict[str, Any], path: Path) -> None:
        for key, item in mapping.items():
            found = kind_of(key)
            if found is not None:
                report((*path, key), _key_message(found), key=True)
            if isinstance(item, str):
                found = kind_of(item)
                if found is None and (
                    names_a_secret(key) and item and item.lower() not in _SWITCHES
                ):
                    found = _NAMED_BY_KEY
                if found is not None:
                    report((*path, key), _value_message(found))
            elif isinstance(item, dict | list):
                walk(item, (*path, key))
            elif (
                isinstance(item, int | float) and not isinstance(item, bool) and names_a_secret(key)
            ):
                report((*path, key), _value_message(_NAMED_BY_KEY))

    walk(source.data, ())
    return problems


def _secret_kind(text: str) -> str | None:
    """What the string looks like (a JSON Web Token, ...), or None."""
    if len(text) < _MIN_LENGTH:
        return None
    for needle, pattern, kind in _VALUE_PATTERNS:
        if needle in text and pattern.search(text):
            return kind
    return None


def _names_a_secret(key: str) -> bool:
    name = key.rpartition("/")[2].lower().translate(_KEY_SEPARATORS)
    if name in _REFERENCE_KEYS:
        return False
    return name in _SECRET_KEYS or name.endswith(_SECRET_SUFFIXES)


def _value_message(kind: str) -> str:
    return f"looks like an inline secret value ({kind}); {_ADVICE}"


def _key_message(kind: str) -> str:
    return f"a key here looks like an inline secret value ({kind}); {_ADVICE}"
