"""The one Jinja environment: strict, and YAML-safe by construction.

Every ``{{ expression }}`` is emitted as exactly one YAML flow node (a
JSON-quoted string, a number, a boolean, null, or a JSON flow collection), so
no value from a spec can add keys or documents, or change a string's type. A
template that needs a composed string composes it inside the expression:
``{{ service.name ~ "-tls" }}``. A missing variable is an error, never "".
"""

from __future__ import annotations

import contextlib
import io
import json
import marshal
import math
import os
import pickle
import traceback
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import jinja2.bccache

from meshctl import __version__, yamlio
from meshctl.errors import RenderError
from meshctl.resources import shipped_templates, templates_dir
from meshctl.template_syntax import SYNTAX

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


class _QuietBytecodeCache(jinja2.FileSystemBytecodeCache):
    """Jinja's compiled-template cache; a cache that cannot be written is skipped.

    A template missing from it is taken, when the wheel ships it compiled, from
    that Python source (a fresh CI container's first render would otherwise
    spend a quarter of its time in Jinja's compiler), then cached as usual.
    """

    def __init__(self, directory: str, shipped: Path | None = None) -> None:
        super().__init__(directory)
        self.shipped = shipped
        self._shipped_templates: dict[str, Any] | None = None

    def get_bucket(
        self, environment: jinja2.Environment, name: str, filename: str | None, source: str
    ) -> jinja2.bccache.Bucket:
        bucket = super().get_bucket(environment, name, filename, source)
        if bucket.code is None and filename is not None:
            shipped = self._shipped().get(name)
            if isinstance(shipped, dict) and shipped.get("sha1") == bucket.checksum:
                # As Jinja compiles it: the template's file as the code's, for tracebacks.
                bucket.code = compile(shipped["code"], filename, "exec")
                self.set_bucket(bucket)
        return bucket

    def _shipped(self) -> dict[str, Any]:
        """The wheel's compiled templates, if this jinja2 version wrote them."""
        if self._shipped_templates is None:
            self._shipped_templates = {}
            try:
                content = json.loads(self.shipped.read_bytes()) if self.shipped else {}
            except (OSError, ValueError):
                content = {}
            if isinstance(content, dict) and content.get("jinja2") == jinja2.__version__:
                self._shipped_templates = content.get("templates") or {}
        return self._shipped_templates

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        # Jinja's own reader, with the code read by marshal.loads from the
        # file's bytes: Jinja's marshal.load(file) pulls it through the file
        # object piece by piece, eight times the instructions. Same file format
        # and checks; anything unexpected leaves the bucket empty (recompile).
        try:
            data = (Path(self.directory) / (self.pattern % (bucket.key,))).read_bytes()
        except OSError:
            return
        magic = jinja2.bccache.bc_magic
        if not data.startswith(magic):
            return
        stream = io.BytesIO(data)
        stream.seek(len(magic))
        try:
            if pickle.load(stream) != bucket.checksum:
                return
            bucket.code = marshal.loads(data[stream.tell() :])
        except (EOFError, ValueError, TypeError, pickle.UnpicklingError):
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    # Compiling the templates is a tenth of a small render; Jinja keys cached
    # code by each template's source checksum, so an edited template recompiles.
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    folder = Path(root) / "meshctl" / f"templates-{__version__}"
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
        finalize=yaml_scalar,
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
