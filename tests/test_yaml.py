"""The one YAML module: reading specs with positions, writing output every reader agrees on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ruamel.yaml import YAML

from meshctl import yamlio
from meshctl.resources import example_spec
from meshctl.templating import yaml_scalar

# Strings that some YAML reader takes for something else when left unquoted.
AMBIGUOUS = [
    "off",
    "on",
    "yes",
    "no",
    "y",
    "n",
    "Y",
    "N",
    "true",
    "False",
    "NULL",
    "~",
    "null",
    "12:30",
    "0o12",
    "0x1F",
    "0b101",
    "1e3",
    "1E-3",
    "-.5",
    ".5",
    "+1",
    "1_000",
    "08",
    "0777",
    ".inf",
    "-.Inf",
    ".nan",
    "2024-01-01",
    "=",
    "<<",
    "1.",
    "3.14",
    "-0",
]


def _both(text: str) -> tuple[object, object]:
    return yaml.safe_load(text), YAML(typ="safe", pure=True).load(text)


@pytest.mark.parametrize("value", AMBIGUOUS)
def test_ambiguous_strings_are_quoted_for_yaml_11_and_12_readers(value: str) -> None:
    text = yamlio.dump({"key": value, value: "as a key"})
    as_11, as_12 = _both(text)
    assert as_11 == {"key": value, value: "as a key"}
    assert as_12 == as_11


def test_kong_database_off_stays_a_string() -> None:
    text = yamlio.dump({"env": {"database": "off"}})
    assert "database: 'off'" in text
    assert yaml.safe_load(text)["env"]["database"] == "off"


def test_output_is_canonical() -> None:
    first = yamlio.dump({"b": 1, "a": {"d": [3, 2], "c": None}}, header="generated")
    second = yamlio.dump({"a": {"c": None, "d": [3, 2]}, "b": 1}, header="generated")
    assert first == second == "# generated\na:\n  c: null\n  d:\n  - 3\n  - 2\nb: 1\n"


def test_multiline_strings_use_literal_blocks_and_survive() -> None:
    value = "line one\nline: two\n  indented\n"
    text = yamlio.dump({"script": value})
    assert "script: |" in text
    assert _both(text) == ({"script": value}, {"script": value})


def test_long_strings_are_not_folded() -> None:
    value = "x" * 500 + " " + "y" * 500
    text = yamlio.dump({"k": value})
    assert text.count("\n") == 1


def test_documents_are_separated() -> None:
    text = yamlio.dump_documents([{"a": 1}, {"b": 2}], header="h")
    assert text.startswith("# h\n---\n")
    assert list(yaml.safe_load_all(text)) == [{"a": 1}, {"b": 2}]


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "with \"quotes\" and 'single'",
        "key: value",
        "--- doc",
        "# not a comment",
        "{flow: map}",
        "[a, b]",
        "&anchor *alias !tag",
        "Z\u00fcrich \u2013 \u6771\u4eac \U0001f680",
        "tab\there",
        "nel\x85line",
        "ls\u2028ps\u2029",
        "off",
        "1e3",
        42,
        1.5,
        True,
        None,
        ["a", {"b": "c"}],
        {"k": "v: w"},
    ],
)
def test_template_interpolation_is_one_safe_yaml_node(value: object) -> None:
    """finalize emits any value as exactly one node that reads back as itself."""
    text = f"a: {yaml_scalar(value)}\nb: after\n"
    as_11, as_12 = _both(text)
    assert as_11 == {"a": value, "b": "after"}
    assert as_12 == as_11


def test_template_interpolation_refuses_what_it_cannot_emit() -> None:
    with pytest.raises(TypeError):
        yaml_scalar(float("nan"))
    with pytest.raises(TypeError):
        yaml_scalar(object())


# -- reading -------------------------------------------------------------------


def test_positions_of_values_and_keys() -> None:
    doc = yamlio.parse_document("a:\n  b: [1, {c: x}]\n  d: 'y'\n")
    assert doc.data == {"a": {"b": [1, {"c": "x"}], "d": "y"}}
    assert doc.mark(("a", "b", 1, "c")) == (2, 14)
    assert doc.key_mark(("a", "d")) == (3, 3)
    assert doc.mark(("a", "d")) == (3, 6)
    assert doc.mark(("a", "missing", "deeper")) == (2, 3)  # nearest known ancestor


def test_yaml_12_scalars() -> None:
    doc = yamlio.parse_document(
        "a: off\nb: yes\nc: 0o17\nd: 1e3\ne: 2024-01-01\nf: ~\ng: 0x10\nh: true\ni: '5'\n"
    )
    assert doc.data == {
        "a": "off",
        "b": "yes",
        "c": 15,
        "d": 1000.0,
        "e": "2024-01-01",
        "f": None,
        "g": 16,
        "h": True,
        "i": "5",
    }


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("a: 1\na: 2\n", 2, 1, "duplicate key 'a' (first defined at line 1, column 1)"),
        ("a:\n\tb: 1\n", 2, 1, "a tab character indents this line"),
        ("a: [1, 2\n", 2, 1, "invalid YAML"),
        ("a: !!python/object:os.system x\n", 1, 4, "unsupported YAML tag"),
        ("base: &b {x: 1}\nc:\n  <<: *b\n", 3, 3, "merge keys"),
        ("a: " + "[" * 100 + "]" * 100 + "\n", 1, 67, "nesting is deeper than 64 levels"),
        ("- " * 20000 + "x\n", 1, 129, "nesting is deeper than 64 levels"),
    ],
)
def test_reading_errors_are_located(text: str, line: int, column: int, fragment: str) -> None:
    with pytest.raises(yamlio.YamlSyntaxError) as info:
        yamlio.parse_document(text)
    assert (info.value.line, info.value.column) == (line, column)
    assert fragment in info.value.message


def test_alias_bomb_is_refused_before_it_expands() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    with pytest.raises(yamlio.YamlSyntaxError) as info:
        yamlio.parse_document("\n".join(lines) + "\n")
    assert "expands to more than" in info.value.message
    assert info.value.line > 1


def test_a_few_aliases_are_fine() -> None:
    doc = yamlio.parse_document("a: &r {cpu: 1}\nb: *r\n")
    assert doc.data == {"a": {"cpu": 1}, "b": {"cpu": 1}}


def _ruamel_document(text: str) -> yamlio.Document:
    """The same document read by ruamel.yaml's round-trip composer (YAML 1.2)."""
    import warnings

    from ruamel.yaml import YAML

    reader = YAML(typ="rt")
    reader.allow_duplicate_keys = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        node = reader.compose(text)
    if node is None:
        return yamlio.Document(data=None)
    builder = yamlio._Builder()
    builder.doc.data = builder.build(node, (), 0)
    return builder.doc


def _every_yaml_input() -> list[Path]:
    from meshctl.resources import profiles_dir

    cases = Path(__file__).resolve().parent / "cases"
    return sorted([*profiles_dir().glob("*.yaml"), *cases.rglob("*.yaml")])


def test_libyaml_reads_every_spec_and_profile_as_ruamel_does() -> None:
    """meshctl reads with libyaml for speed; ruamel (a YAML 1.2 parser) must agree
    on the data and on every position, for every input that both can read."""
    compared = 0
    for path in [example_spec(), *_every_yaml_input()]:
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            ours = yamlio.parse_document(text)
        except yamlio.YamlSyntaxError:
            continue
        exact = _ruamel_document(text)
        assert ours.data == exact.data, path
        assert ours.positions == exact.positions, path
        assert ours.key_positions == exact.key_positions, path
        compared += 1
    assert compared > 20


# --------------------------------------------------------------------------
# The fast paths (template output in, canonical YAML out) against libyaml


def test_fast_paths_agree_with_libyaml_on_every_render(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every template output and every file of every valid spec's render: the fast
    reader and writer give what libyaml gives, or step aside."""
    from meshctl import build, emit, yamlio
    from meshctl.spec import load_platform

    from conftest import valid_specs

    counts = {"read": 0, "read-fallback": 0, "written": 0, "written-fallback": 0}
    fast_load, fast_dump = yamlio.fast_load_all, yamlio.fast_dump_documents

    def load(text: str) -> list[object] | None:
        fast = fast_load(text)
        counts["read" if fast is not None else "read-fallback"] += 1
        if fast is not None:
            slow = [d for d in yamlio.load_output_all(text) if d is not None]
            assert repr(fast) == repr(slow), text
        return fast

    def dump(documents: list[object], header: str | None = None) -> str | None:
        fast = fast_dump(documents, header)
        counts["written" if fast is not None else "written-fallback"] += 1
        if fast is not None:
            assert fast == yamlio.libyaml_dump_documents(documents, header)
        return fast

    monkeypatch.setattr(yamlio, "fast_load_all", load)
    monkeypatch.setattr(yamlio, "fast_dump_documents", dump)
    for spec in valid_specs().values():
        platform = load_platform(spec)
        builds = {env: build.build_environment(platform, env) for env in platform.environments}
        emit.emit(builds, list(platform.environments), "platform.yaml")
    # The fast paths take almost everything (the writer, at present, every file;
    # its fallback is exercised by the tests below).
    assert counts["read"] > 20 * counts["read-fallback"] > 0
    assert counts["written"] > 20 * counts["written-fallback"]


@pytest.mark.parametrize(
    "text",
    [
        "a: 1 # a comment after a value\n",
        "a: 'single quoted'\n",
        "a: |\n  literal\n",
        "a: &anchor 1\nb: *anchor\n",
        "a: {b: plain flow}\n",
        "a: [1e3]\n",  # YAML 1.1 reads a string, JSON a float
        "a: b: c\n",
        "a:\n\tb: 1\n",
        "a: 1\na: 2\n",
        "a: plain\n  continued\n",
        '"quoted key": 1\n',
        "- a\nb: 1\n",
        "a: 1 \n",  # a trailing space
        "a: 1\n...\n",
        "%YAML 1.2\n---\na: 1\n",
        "--- a\n",
    ],
)
def test_fast_reader_steps_aside_outside_its_subset(text: str) -> None:
    assert yamlio.fast_load_all(text) is None


def test_fast_reader_splits_documents_and_skips_comments() -> None:
    text = "# header\na: 1\n---\n\n  # indented comment\nb:\n  - x\n---\n---\nc: d\n"
    expected = [{"a": 1}, {"b": ["x"]}, {"c": "d"}]
    # twice: the second time every line is already known
    assert yamlio.fast_load_all(text) == expected
    assert yamlio.fast_load_all(text) == expected
    assert yamlio.fast_load_all(text) == [d for d in yamlio.load_output_all(text) if d is not None]


WORDS = [
    *("y", "Y", "yes", "Yes", "YES", "n", "no", "NO", "on", "Off", "true", "FALSE", "null", "Null"),
    *("yes-no", "onion", "nullable", "y1", "e", "E1", "inf", "nan", "a-", "a.b", "a/b", "A_b"),
    *("kube-prometheus-stack", "app.kubernetes.io/name", "v1", "x.", "a--b", "Z9/._-"),
    *("k" * 127, "k" * 128, "k" * 129),
]


@pytest.mark.parametrize("word", WORDS)
def test_plain_words_are_written_as_libyaml_writes_them(word: str) -> None:
    for document in ({"a": word}, {word: 1}, {"a": [word]}):
        fast = yamlio.fast_dump_documents([document])
        assert fast == yamlio.libyaml_dump_documents([document]) or (
            fast is None and len(word) > 128  # a complex key (`? `): libyaml's job
        )


@pytest.mark.parametrize("number", [0.01, 1e-05, 1e20, 100.0, -0.0, 0.0, 1.5, -2.25])
def test_fast_writer_writes_floats_as_libyaml_does(number: float) -> None:
    document = {"a": number, "b": [number], "c": {"d": number}}
    assert yamlio.fast_dump_documents([document]) == yamlio.libyaml_dump_documents([document])


LITERALS = [
    "two\nlines",
    "two\nlines\n",
    "with\n\nan empty line\n",
    "indented\n  second line\n",
    "[FILTER]\n    Name  kubernetes\n",
    '{\n  "policy": {}\n}',
    "a: b\n- c\n# d\n---\n...\n",
]


@pytest.mark.parametrize("text", LITERALS)
def test_fast_writer_writes_literal_blocks_as_libyaml_does(text: str) -> None:
    for document in (
        {"a": text},
        {"a": {"b": text, "c": 1}},
        {"a": [text, "x"]},
        {"a": [{"b": text, "c": [text]}]},
        {"a": [[text]]},
    ):
        fast = yamlio.fast_dump_documents([document, {"z": text}])
        assert fast == yamlio.libyaml_dump_documents([document, {"z": text}])
        assert fast is not None
        assert next(yamlio.load_output_all(fast)) == document


@pytest.mark.parametrize(
    "text",
    [
        *(" leading space\nx", "\nleading break", "trailing space \nx", "two breaks\n\n"),
        *("tab\tx\n", "é\nx", "carriage\r\nreturn"),
    ],
)
def test_fast_writer_leaves_other_multiline_strings_to_libyaml(text: str) -> None:
    assert yamlio.fast_dump_documents([{"a": text}]) is None
    assert yamlio.dump_documents([{"a": text}]) == yamlio.libyaml_dump_documents([{"a": text}])


@pytest.mark.parametrize(
    "document",
    [
        {"a": float("nan")},
        {"x" * 200: 1},
        {1: "integer key"},
    ],
)
def test_fast_writer_steps_aside_outside_its_subset(document: dict[object, object]) -> None:
    assert yamlio.fast_dump_documents([document]) is None
    assert yamlio.dump_documents([document]) == yamlio.libyaml_dump_documents([document])


def test_fast_writer_quotes_as_libyaml_does() -> None:
    document = {
        "on": ["yes", "no", "off", "12:30", "0o12", "1e3", "", "- x", "a: b", "#c", "é"],
        "nested": [{"a": [[1, 2], {}], "b": []}, [], [{"c": None, "d": True}]],
    }
    fast = yamlio.fast_dump_documents([document, {"second": 1}], "header")
    assert fast == yamlio.libyaml_dump_documents([document, {"second": 1}], "header")


DEFERRED_READER_PATTERN = """
import re
import meshctl.yamlio as yamlio
import yaml
import yaml.reader

pattern = yaml.reader.Reader.NON_PRINTABLE
print(type(pattern).__name__)
# Nothing of the stand-in is left in re's cache: this compiles for real.
print(isinstance(re.compile(yamlio.YAML_READER_PATTERN), re.Pattern))
real = re.compile(yamlio.YAML_READER_PATTERN)
for text in ("plain", "tab\\there", "bell\\x07", "\\ufffe", "emoji \\U0001f600", "\\x85ok"):
    found, expected = pattern.search(text), real.search(text)
    assert (found and found.span()) == (expected and expected.span()), text
try:  # PyYAML's pure-Python reader still refuses what it refused
    yaml.load("a: b\\x07", Loader=yaml.SafeLoader)
except yaml.reader.ReaderError as exc:
    print("refused", exc.character == 7)  # its code point
"""


def test_pyyaml_reader_pattern_compiles_only_when_used() -> None:
    """meshctl imports PyYAML with its pure-Python reader's pattern deferred
    (compiling it was 3 % of a render); the stand-in must match PyYAML's pattern
    exactly (else this fails: PyYAML changed it) and behave as the real one."""
    run = subprocess.run(
        [sys.executable, "-c", DEFERRED_READER_PATTERN],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n") == ["_DeferredPattern", "True", "refused True", ""]
