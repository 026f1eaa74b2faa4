"""The one Jinja environment: strict, and YAML-safe by construction.

Every ``{{ expression }}`` is emitted as exactly one YAML flow node (a
JSON-quoted string, a number, a boolean, null, or a JSON flow collection), so
no value from a spec can add keys or documents, or change a string's type. A
template that needs a composed string composes it inside the expression:
``{{ service.name ~ "-tls" }}``. A missing variable is an error, never "".
"""

from __future__ import annotations

import contextlib
import json
import marshal
import os
import pickle
import traceback
from functools import cache
from pathlib import Path
from types import CodeType
from typing import Any

import jinja2
import jinja2.bccache

from meshctl import __version__, yamlio
from meshctl.errors import RenderError
from meshctl.resources import shipped_templates, templates_dir
from meshctl.template_syntax import SYNTAX, yaml_scalar

__all__ = ["environment", "render", "yaml_scalar"]


class _QuietBytecodeCache(jinja2.FileSystemBytecodeCache):
    """Jinja's compiled-template cache; a cache that cannot be written is skipped.

    A template missing from it is taken, when the wheel ships it compiled, from
    that Python source (a fresh CI container's first render would otherwise
    spend a quarter of its time in Jinja's compiler), then cached as usual.
    """

    def __init__(self, directory: str, shipped: Path | None = None) -> None:
        super().__init__(directory)
        self.shipped = shipped
        self._shipped_templates: dict[str, Any] | None = None  # read on first use

    def get_bucket(
        self, environment: jinja2.Environment, name: str, filename: str | None, source: str
    ) -> jinja2.bccache.Bucket:
        bucket = super().get_bucket(environment, name, filename, source)
        if bucket.code is None and filename is not None:
            code = self._shipped_code(name, bucket.checksum, filename)
            if code is not None:
                bucket.code = code
                self.set_bucket(bucket)
        return bucket

    def _shipped_code(self, name: str, checksum: str, filename: str) -> CodeType | None:
        """The wheel's code for this template, if compiled from this very source
        (Jinja's sha1 of it) by this jinja2 version; else None (Jinja compiles)."""
        if self._shipped_templates is None:
            self._shipped_templates = {}
            try:
                content = json.loads(self.shipped.read_bytes()) if self.shipped else None
            except (OSError, ValueError):
                content = None
            if isinstance(content, dict) and content.get("jinja2") == jinja2.__version__:
                templates = content.get("templates")
                self._shipped_templates = templates if isinstance(templates, dict) else {}
        entry = self._shipped_templates.get(name)
        if not isinstance(entry, dict) or entry.get("sha1") != checksum:
            return None
        try:
            # As Jinja compiles it: the template's file as the code's, for tracebacks.
            return compile(entry["code"], filename, "exec")
        except (KeyError, TypeError, ValueError, SyntaxError):
            return None

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        # Jinja's own reader, with the code read by marshal.loads from the
        # file's bytes: Jinja's marshal.load(file) pulls it through the file
        # object piece by piece, eight times the instructions. The file is
        # Jinja's magic, the source's checksum pickled (protocol 2, as Jinja
        # writes it), then the code; it is compared, not unpickled. Anything
        # unexpected leaves the bucket empty, and Jinja compiles.
        try:
            data = (Path(self.directory) / (self.pattern % (bucket.key,))).read_bytes()
        except OSError:
            return
        head = jinja2.bccache.bc_magic + pickle.dumps(bucket.checksum, 2)
        if not data.startswith(head):
            return
        try:
            code = marshal.loads(data[len(head) :])
        except (EOFError, ValueError, TypeError):
            return
        if isinstance(code, CodeType):
            bucket.code = code

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    # Compiling the templates is a tenth of a small render; Jinja keys cached
    # code by each template's source checksum, so an edited template recompiles.
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    # Per meshctl and jinja2 version: code another jinja2 compiled may call
    # runtime helpers this one lacks (Jinja's own check is its cache format).
    folder = Path(root) / "meshctl" / f"templates-{__version__}-jinja2-{jinja2.__version__}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return _QuietBytecodeCache(str(folder), shipped_templates())


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        bytecode_cache=_bytecode_cache(),
        **SYNTAX,
    )


def render(template: str, **context: Any) -> list[Any]:
    """Render a template and parse its output: a list of YAML documents (no empty ones)."""
    try:
        text = environment().get_template(template).render(**context)
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"templates/{exc.name or template}:{exc.lineno}: {exc.message}") from exc
    except (jinja2.TemplateError, TypeError) as exc:
        raise RenderError(f"{_template_frame(exc, template)}: {exc}") from exc
    fast = yamlio.fast_load_all(text)
    if fast is not None:
        return fast
    try:
        return [doc for doc in yamlio.load_output_all(text) if doc is not None]
    except yamlio.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at output line {mark.line + 1}" if mark else ""
        raise RenderError(f"templates/{template} produced invalid YAML{where}: {exc}") from exc


def _template_frame(exc: BaseException, template: str) -> str:
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(".j2"):
            name = frame.filename.rsplit("templates/", 1)[-1]
            return f"templates/{name}:{frame.lineno}"
    return f"templates/{template}"
