"""The Jinja options that decide what a template compiles to.

Shared by the runtime environment (``meshctl.templating``) and the wheel build
hook (``hatch_build.py``), which ships every template compiled to Python
source: code compiled under other options would render differently. The hook
loads this file on its own, so it imports nothing but jinja2.
"""

from __future__ import annotations

from typing import Any

import jinja2

SYNTAX: dict[str, Any] = {
    "undefined": jinja2.StrictUndefined,
    "autoescape": False,  # YAML, not HTML; the finalize hook does the escaping
    "trim_blocks": True,
    "lstrip_blocks": True,
    "keep_trailing_newline": True,
}
# Where the wheel carries the compiled templates, under meshctl/_data/: JSON,
# {"jinja2": version, "templates": {name: {"sha1": source's, "code": Python}}}.
SHIPPED_FILE = "compiled-templates.json"
