"""The compiled-template cache: code comes back from it, and a file it cannot
trust (another template's source, another format, cut short) is recompiled."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import marshal
import traceback
from pathlib import Path
from typing import Any

import jinja2
import pytest

from meshctl import templating
from meshctl.resources import templates_dir
from meshctl.template_syntax import SYNTAX
from meshctl.templating import _QuietBytecodeCache

ROOT = Path(__file__).resolve().parents[1]

TEMPLATE = "kind: {{ kind }}\nitems: {{ items }}\n"


class Counting(jinja2.Environment):
    compiled = 0

    def compile(self, *args: Any, **kwargs: Any) -> Any:
        type(self).compiled += 1
        return super().compile(*args, **kwargs)


def _environment(templates: Path, cache: Path, shipped: Path | None = None) -> Counting:
    """meshctl's options (the shipped code is compiled under them), counting compiles."""
    Counting.compiled = 0
    return Counting(
        loader=jinja2.FileSystemLoader(str(templates)),
        bytecode_cache=_QuietBytecodeCache(str(cache), shipped),
        **SYNTAX,
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
    assert _render(templates, cache) == first == 'kind: "A"\nitems: [1, 2]\n'
    assert Counting.compiled == 0


def test_an_edited_template_is_compiled_again(folders: tuple[Path, Path]) -> None:
    templates, cache = folders
    _render(templates, cache)
    (templates / "t.j2").write_text("edited: {{ kind }}\n")
    assert _render(templates, cache) == 'edited: "A"\n'
    assert Counting.compiled == 1


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="cut-short"),
        pytest.param(lambda data: b"xx" + data[2:], id="other-magic"),
        pytest.param(lambda data: b"", id="empty"),
        pytest.param(lambda data: data[:-1] + b"\xff", id="corrupt-code"),
        # Not the checksum Jinja pickles but a pickle that names a missing
        # global: never unpickled, so never an AttributeError (or worse).
        pytest.param(
            lambda data: jinja2.bccache.bc_magic + b"\x80\x02cbuiltins\nnosuch\n.",
            id="hostile-pickle",
        ),
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


# -- the templates the wheel ships compiled (hatch_build.py) ----------------------


def _hook() -> Any:
    spec = importlib.util.spec_from_file_location("meshctl_hatch_build", ROOT / "hatch_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shipped_code_is_what_meshctl_itself_compiles() -> None:
    """The hook compiles under template_syntax's options with a stand-in
    finalize; any difference from the runtime environment shows here."""
    shipped = _hook().compile_templates(templates_dir())
    assert shipped["jinja2"] == jinja2.__version__
    environment = templating.environment()
    names = environment.list_templates(filter_func=lambda name: name.endswith(".j2"))
    assert sorted(shipped["templates"]) == sorted(names) and len(names) > 40
    for name in names:
        source, _, _ = environment.loader.get_source(environment, name)  # type: ignore[union-attr]
        entry = shipped["templates"][name]
        assert entry["code"] == environment.compile(source, name, raw=True), name
        assert entry["sha1"] == hashlib.sha1(source.encode()).hexdigest()


def _ship(templates: Path, path: Path, **changes: Any) -> Path:
    content = _hook().compile_templates(templates)
    content.update(changes)
    path.write_text(json.dumps(content))
    return path


def test_a_template_missing_from_the_cache_comes_from_the_shipped_code(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    templates, cache = folders
    expected = _render(templates, tmp_path)  # compiled by Jinja, elsewhere
    shipped = _ship(templates, tmp_path / "shipped.json")
    environment = _environment(templates, cache, shipped)
    assert environment.get_template("t.j2").render(kind="A", items=[1, 2]) == expected
    assert Counting.compiled == 0
    # ... and is cached for the next run, as a compiled one would be.
    assert len(list(cache.iterdir())) == 1
    assert _render(templates, cache) == expected and Counting.compiled == 0


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda t, p: (t / "t.j2").write_text("edited: {{ kind }}\n"), id="edited"),
        pytest.param(lambda t, p: _ship(t, p, jinja2="2.11.3"), id="other-jinja2"),
        pytest.param(lambda t, p: p.write_text("{not json"), id="not-json"),
        pytest.param(lambda t, p: p.write_text('{"jinja2": 1, "templates": []}'), id="bad-shape"),
        pytest.param(lambda t, p: p.unlink(), id="missing"),
    ],
)
def test_shipped_code_that_does_not_fit_is_not_used(
    folders: tuple[Path, Path], tmp_path: Path, damage: Any
) -> None:
    templates, cache = folders
    shipped = _ship(templates, tmp_path / "shipped.json")
    damage(templates, shipped)
    expected = _render(templates, tmp_path)  # what Jinja makes of the template now
    environment = _environment(templates, cache, shipped)
    assert environment.get_template("t.j2").render(kind="A", items=[1, 2]) == expected
    assert Counting.compiled == 1


def test_constant_output_is_finalized_in_shipped_code_as_at_run_time(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    """Jinja runs finalize at compile time on constant output: the hook must
    compile with meshctl's own (YAML-safe) finalize."""
    templates, cache = folders
    (templates / "t.j2").write_text('a: {{ "x" }}\nb: {{ none }}\nc: {{ [1, "y"] }}\n')
    shipped = _ship(templates, tmp_path / "shipped.json")
    environment = _environment(templates, cache, shipped)
    assert environment.get_template("t.j2").render() == 'a: "x"\nb: null\nc: [1, "y"]\n'
    assert Counting.compiled == 0


def test_an_error_in_shipped_code_points_at_the_template_line(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    templates, cache = folders
    (templates / "t.j2").write_text("a: 1\nb: {{ 1 // zero }}\n")
    shipped = _ship(templates, tmp_path / "shipped.json")
    environment = _environment(templates, cache, shipped)
    with pytest.raises(ZeroDivisionError) as caught:
        environment.get_template("t.j2").render(zero=0)
    assert Counting.compiled == 0
    last = traceback.extract_tb(caught.value.__traceback__)[-1]
    assert (Path(last.filename).name, last.lineno) == ("t.j2", 2)
