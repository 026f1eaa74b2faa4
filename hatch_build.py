"""Wheel build hook: ship every template compiled to Python source.

Jinja compiles a template the first time it is used and meshctl caches the
code under ~/.cache; in a fresh CI container every render is a first one, and
Jinja's compiler is then a quarter of it. The wheel carries each template's
Python source in ``meshctl/_data/compiled-templates.json``, with the jinja2
version that wrote it and each template source's sha1; meshctl uses a template's
code only when both match (``meshctl.templating``), and otherwise compiles as
before.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

ROOT = Path(__file__).resolve().parent


@cache
def _template_syntax() -> Any:
    # By path: importing the meshctl package would need its runtime dependencies.
    spec = importlib.util.spec_from_file_location(
        "_meshctl_template_syntax", ROOT / "meshctl" / "template_syntax.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compile_templates(templates: Path) -> dict[str, Any]:
    """Every `*.j2` under templates compiled, as the shipped file's content."""
    import jinja2
    import jinja2.bccache

    loader = jinja2.FileSystemLoader(str(templates))
    environment = jinja2.Environment(loader=loader, **_template_syntax().SYNTAX)
    checksum = jinja2.bccache.BytecodeCache().get_source_checksum  # the key meshctl compares
    compiled = {}
    for name in environment.list_templates(filter_func=lambda name: name.endswith(".j2")):
        source, _, _ = loader.get_source(environment, name)  # as meshctl reads it
        compiled[name] = {
            "sha1": checksum(source),
            "code": environment.compile(source, name, raw=True),
        }
    return {"jinja2": jinja2.__version__, "templates": compiled}


class CompiledTemplatesHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        # An editable install reads the checkout's templates, which change.
        if self.target_name != "wheel" or version == "editable":
            return
        content = compile_templates(ROOT / "templates")
        self._work = Path(tempfile.mkdtemp(prefix="meshctl-compiled-templates-"))
        shipped = self._work / "compiled-templates.json"
        shipped.write_text(json.dumps(content, sort_keys=True), encoding="utf-8")
        target = f"meshctl/_data/{_template_syntax().SHIPPED_FILE}"
        build_data["force_include"][str(shipped)] = target

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        work = getattr(self, "_work", None)
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
