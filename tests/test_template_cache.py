"""The compiled-template cache: code comes back from it, and a file it cannot
trust (another template's source, another format, cut short) is recompiled."""

from __future__ import annotations

import marshal
from pathlib import Path
from typing import Any

import jinja2
import pytest

from meshctl.templating import _QuietBytecodeCache

TEMPLATE = "kind: {{ kind }}\nitems: {{ items }}\n"


class Counting(jinja2.Environment):
    compiled = 0

    def compile(self, *args: Any, **kwargs: Any) -> Any:
        type(self).compiled += 1
        return super().compile(*args, **kwargs)


def _environment(templates: Path, cache: Path) -> Counting:
    Counting.compiled = 0
    return Counting(
        loader=jinja2.FileSystemLoader(str(templates)),
        bytecode_cache=_QuietBytecodeCache(str(cache)),
    )


def _render(templates: Path, cache: Path) -> str:
    return _environment(templates, cache).get_template("t.j2").render(kind="A", items=[1, 2])


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    templates, cache = tmp_path / "templates", tmp_path / "cache"
    templates.mkdir()
    cache.mkdir()
    (templates / "t.j2").write_text(TEMPLATE)
    return templates, cache


def test_a_cached_template_is_not_compiled_again(folders: tuple[Path, Path]) -> None:
    templates, cache = folders
    first = _render(templates, cache)
    assert Counting.compiled == 1 and len(list(cache.iterdir())) == 1
    assert _render(templates, cache) == first == "kind: A\nitems: [1, 2]"
    assert Counting.compiled == 0


def test_an_edited_template_is_compiled_again(folders: tuple[Path, Path]) -> None:
    templates, cache = folders
    _render(templates, cache)
    (templates / "t.j2").write_text("edited: {{ kind }}\n")
    assert _render(templates, cache) == "edited: A"
    assert Counting.compiled == 1


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="cut-short"),
        pytest.param(lambda data: b"xx" + data[2:], id="other-magic"),
        pytest.param(lambda data: b"", id="empty"),
        pytest.param(lambda data: data[:-1] + b"\xff", id="corrupt-code"),
    ],
)
def test_a_damaged_cache_file_is_recompiled_not_an_error(
    folders: tuple[Path, Path], damage: Any
) -> None:
    templates, cache = folders
    first = _render(templates, cache)
    (entry,) = cache.iterdir()
    entry.write_bytes(damage(entry.read_bytes()))
    assert _render(templates, cache) == first
    assert Counting.compiled == 1


def test_the_code_is_read_from_the_bytes_not_through_the_file_object(
    folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jinja's own reader calls marshal.load(file); meshctl's reads the file's
    bytes with marshal.loads, which is eight times cheaper."""
    templates, cache = folders
    first = _render(templates, cache)

    def refuse(_: Any) -> Any:
        raise ValueError("marshal.load called")

    monkeypatch.setattr(marshal, "load", refuse)  # the module jinja2.bccache calls
    assert _render(templates, cache) == first
    assert Counting.compiled == 0
