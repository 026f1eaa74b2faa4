"""Stage 1, load: read a YAML source file into plain data with positions.

Everything that can go wrong before the data exists (unreadable file, bytes that
are not UTF-8, YAML syntax, duplicate keys, alias bombs, absurd nesting, a file
far larger than any spec) becomes a located ``SpecError`` here.
"""

from __future__ import annotations

from pathlib import Path

from msgspec import Struct

from meshctl import yamlio
from meshctl.errors import Location, Problem, SpecError, UsageError
from meshctl.paths import format_path

# A spec with 2,000 services is about 0.5 MB; anything past this is not a spec,
# and parsing it would take minutes instead of failing within a second.
MAX_SOURCE_BYTES = 2 * 1024 * 1024


class Source(Struct):
    """A loaded YAML file: its display name, the data and where each value is."""

    name: str
    document: yamlio.Document

    @property
    def data(self) -> object:
        return self.document.data

    def location(self, path: yamlio.Path, *, key: bool = False) -> Location:
        line, column = self.document.key_mark(path) if key else self.document.mark(path)
        return Location(self.name, line, column)


def read_source(path: Path, display_name: str | None = None) -> Source:
    """Load a YAML file; a missing or unreadable file is a usage error (exit 2)."""
    name = display_name or str(path)
    try:
        # Read one byte past the limit rather than trusting stat(): devices and
        # pipes (/dev/zero, <(...)) have no size.
        with path.open("rb") as handle:
            raw = handle.read(MAX_SOURCE_BYTES + 1)
        if len(raw) > MAX_SOURCE_BYTES:
            size = path.stat().st_size
            shown = f"{size / 1024 / 1024:.1f} MiB" if size > MAX_SOURCE_BYTES else "larger"
            raise _fail(
                name,
                1,
                1,
                f"the file is {shown}; meshctl reads specs of at most "
                f"{MAX_SOURCE_BYTES // 1024 // 1024} MiB",
            )
    except FileNotFoundError as exc:
        raise UsageError(f"{name}: no such file") from exc
    except IsADirectoryError as exc:
        raise UsageError(f"{name}: is a directory, expected a YAML file") from exc
    except PermissionError as exc:
        raise UsageError(f"{name}: permission denied") from exc
    except OSError as exc:
        raise UsageError(f"{name}: cannot read: {exc.strerror or exc}") from exc
    return parse_source(raw, name)


def parse_source(raw: bytes, name: str) -> Source:
    text = _decode(raw, name)
    try:
        document = yamlio.parse_document(text)
    except yamlio.YamlSyntaxError as exc:
        raise _fail(name, exc.line, exc.column, exc.message, format_path(exc.path)) from exc
    return Source(name, document)


def _decode(raw: bytes, name: str) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        column = len(raw[line_start : exc.start].decode("utf-8", errors="replace")) + 1
        raise _fail(
            name, line, column, f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x})"
        ) from exc
    if "\x00" in text:
        offset = text.index("\x00")
        line = text.count("\n", 0, offset) + 1
        column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        raise _fail(name, line, column, "the file contains NUL bytes; it is not a YAML text file")
    return text


def _fail(name: str, line: int, column: int, message: str, path: str = "") -> SpecError:
    return SpecError([Problem(Location(name, line, column), path, message, rule="syntax")])
