"""The Jinja options that decide what a template compiles to, finalize included.

Shared by the runtime environment (``meshctl.templating``) and the wheel build
hook (``hatch_build.py``), which ships every template compiled to Python
source: code compiled under other options would render differently (Jinja
even runs ``finalize`` at compile time, on constant output). The hook loads
this file on its own, so it imports nothing but the standard library and jinja2.
"""

from __future__ import annotations

import json
import math
from typing import Any

import jinja2

# Code points YAML treats as line breaks or refuses raw, which JSON leaves as is.
_YAML_UNSAFE = {0x85: "\\x85", 0x2028: "\\u2028", 0x2029: "\\u2029", 0xFEFF: "\\ufeff"}
_YAML_UNSAFE.update({c: f"\\x{c:02x}" for c in range(0x7F, 0xA0) if c != 0x85})


def yaml_scalar(value: Any) -> str:
    """The finalize hook: a value as one safe YAML flow node."""
    if (
        type(value) is str
        and value.isascii()
        and value.isprintable()
        and not ('"' in value or "\\" in value)
    ):
        return f'"{value}"'  # what json.dumps gives for such a string, without the call
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"cannot emit the float {value!r}")
        return repr(value)
    if isinstance(value, str | list | tuple | dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True).translate(_YAML_UNSAFE)
    raise TypeError(f"cannot emit a {type(value).__name__} in a template")


SYNTAX: dict[str, Any] = {
    "finalize": yaml_scalar,
    "undefined": jinja2.StrictUndefined,
    "autoescape": False,  # YAML, not HTML; yaml_scalar does the escaping
    "trim_blocks": True,
    "lstrip_blocks": True,
    "keep_trailing_newline": True,
}
# Where the wheel carries the compiled templates, under meshctl/_data/: JSON,
# {"jinja2": version, "templates": {name: {"sha1": source's, "code": Python}}}.
SHIPPED_FILE = "compiled-templates.json"
