"""All YAML set-up in one place.

Reading specs and profiles: libyaml's composer (through PyYAML) with the YAML
1.2 core schema's rules for plain scalars (`off` and `yes` are strings, `0o17`
is an integer), so every node keeps its line and column. We build plain Python
data from the node graph ourselves: that records a position for every path,
reports duplicate keys with both places, refuses tags and merge keys, and
bounds alias expansion ("billion laughs") and nesting before anything expands.
The brief asked for ruamel.yaml's round-trip loader here; it reads a
1,000-service spec in about 1.6 s against libyaml's 0.08 s, with the same
positions, so ruamel.yaml is kept where speed does not matter: as the
independent YAML 1.2 reader in the tests, which also prove both readers agree
on every spec and profile meshctl ships or tests.

Writing output: PyYAML's libyaml emitter (``CSafeDumper``). It follows YAML 1.1,
so it already quotes ``on``/``off``/``yes``/``no``/``12:30``; we add implicit
resolvers for what YAML 1.2 and go-yaml read as non-strings (``0o12``, ``1e3``,
``y``/``n``), so such strings come out quoted and every reader - Helm and
kubectl (go-yaml v2, YAML 1.1) and kustomize (kyaml, YAML 1.2) - sees the same
data. Keys are sorted; multi-line strings use literal block style.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from msgspec import Struct, field


class _DeferredPattern:
    """Stands in for re.compile(pattern) and compiles it on first use."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._compiled: re.Pattern[str] | None = None

    def __getattr__(self, name: str) -> Any:
        if self._compiled is None:
            # re.UNICODE is what a str pattern gets anyway; it keys re's cache
            # apart from the stand-in's entry.
            self._compiled = re.compile(self.pattern, re.UNICODE)
        return getattr(self._compiled, name)


@contextmanager
def _deferred(pattern: str) -> Iterator[None]:
    """While open, re.compile(pattern) returns a _DeferredPattern.

    Python's re compiles in Python, and a character class over all of Unicode
    costs 3 % of a render. The stand-in goes into re's own cache, keyed
    (type, pattern, flags), and leaves it (and 3.12's second cache) at the end.
    Where that cache is not a dict, nothing is deferred.
    """
    cache = getattr(re, "_cache", None)
    key = (str, pattern, 0)
    if not isinstance(cache, dict) or key in cache:
        yield
        return
    stand_in = _DeferredPattern(pattern)
    cache[key] = stand_in
    try:
        yield
    finally:
        for table in (cache, getattr(re, "_cache2", None)):
            if isinstance(table, dict) and table.get(key) is stand_in:
                del table[key]


# PyYAML's pure-Python reader (yaml.reader.Reader) compiles this, exactly so
# written, when the package is imported. meshctl reads and writes through
# libyaml and never uses that reader: the pattern compiles only if something does.
YAML_READER_PATTERN = "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
with _deferred(YAML_READER_PATTERN):
    import yaml

YAMLError = yaml.YAMLError

Path = tuple[str | int, ...]
Mark = tuple[int, int]  # 1-based line and column

MAX_DEPTH = 64
MAX_NODES = 500_000

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


class YamlSyntaxError(Exception):
    """A document that is not YAML or not a YAML we accept; carries a position
    (and, when the data was already being built, the path of the value)."""

    def __init__(self, message: str, line: int, column: int, path: Path = ()) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.path = path


class Document(Struct):
    """Plain data plus the position of every value and every mapping key."""

    data: Any
    positions: dict[Path, Mark] = field(default_factory=dict)
    key_positions: dict[Path, Mark] = field(default_factory=dict)

    def mark(self, path: Path) -> Mark:
        """Position of the value at path, or of its nearest ancestor."""
        return _nearest(self.positions, path)

    def key_mark(self, path: Path) -> Mark:
        """Position of the key that names path (falls back to the value)."""
        if path in self.key_positions:
            return self.key_positions[path]
        return self.mark(path)


def _nearest(marks: dict[Path, Mark], path: Path) -> Mark:
    for end in range(len(path), -1, -1):
        found = marks.get(path[:end])
        if found is not None:
            return found
    return (1, 1)


def _mark_of(node: Any) -> Mark:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _syntax_error(exc: Exception, text: str) -> YamlSyntaxError:
    problem_mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    mark = problem_mark or context_mark
    problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
    context = getattr(exc, "context", None)
    if "tab character" in problem:  # libyaml: "found a tab character that violates indentation"
        problem = "a tab character indents this line; YAML indentation must use spaces"
        context = None
    elif "cannot start any token" in problem and problem_mark is not None:
        char = _char_at(text, problem_mark.line, problem_mark.column)
        if char == "\t":
            problem = "a tab character indents this line; YAML indentation must use spaces"
            context = None
        elif char:
            problem = f"found character {char!r} that cannot start any token"
    if (
        context
        and context.startswith("while ")
        and context_mark is not None
        and problem_mark is not None
        and ((context_mark.line, context_mark.column) != (problem_mark.line, problem_mark.column))
    ):
        context += f" (started at line {context_mark.line + 1}, column {context_mark.column + 1})"
    message = f"{context}: {problem}" if context and problem else problem or "invalid YAML"
    message = message.replace("\t", "\\t")
    if mark is None:
        return YamlSyntaxError(f"invalid YAML: {message}", 1, 1)
    return YamlSyntaxError(f"invalid YAML: {message}", mark.line + 1, mark.column + 1)


def _char_at(text: str, line: int, column: int) -> str:
    lines = text.split("\n", line + 1)
    return lines[line][column : column + 1] if line < len(lines) else ""


def _resolve_plain(tag: str, text: str, mark: Mark, path: Path) -> Any:
    if tag == _STR:
        return text
    if tag == _NULL:
        return None
    if tag == _BOOL:
        return text.lower() == "true"
    if tag == _INT:
        cleaned = text.replace("_", "")
        sign = -1 if cleaned.startswith("-") else 1
        digits = cleaned.lstrip("+-")
        if digits.startswith(("0o", "0O")):
            return sign * int(digits[2:], 8)
        if digits.startswith(("0x", "0X")):
            return sign * int(digits[2:], 16)
        if digits.startswith(("0b", "0B")):
            return sign * int(digits[2:], 2)
        return sign * int(digits, 10)
    if tag == _FLOAT:
        lowered = text.lower().replace("_", "")
        if lowered in (".nan", "+.nan", "-.nan"):
            return float("nan")
        if lowered.endswith(".inf"):
            return float("-inf") if lowered.startswith("-") else float("inf")
        return float(lowered)
    raise YamlSyntaxError(f"unsupported YAML tag {tag!r}; plain values only", *mark, path)


def _tag(node: Any) -> str:
    return node.tag if isinstance(node.tag, str) else str(node.tag)


class _Builder:
    """Turns a composed node graph into plain data with positions."""

    def __init__(self) -> None:
        self.doc = Document(data=None)

    def build(self, node: Any, path: Path, depth: int, at: Mark | None = None) -> Any:
        # `at`: where to report the value when the node has no text of its own
        # (an empty value, whose node starts at the next token).
        mark = _mark_of(node)
        plain = not getattr(node, "style", None)  # libyaml says '', ruamel None
        if at is not None and node.id == "scalar" and node.value == "" and plain:
            mark = at
        if depth > MAX_DEPTH:
            raise YamlSyntaxError(f"nesting is deeper than {MAX_DEPTH} levels", *mark, path)
        self.doc.positions[path] = mark
        kind = node.id
        tag = _tag(node)
        if kind == "scalar":
            if plain or tag not in (_STR, "!"):
                return _resolve_plain(tag, node.value, mark, path)
            return node.value
        if kind == "sequence":
            if tag != _SEQ:
                raise YamlSyntaxError(
                    f"unsupported YAML tag {tag!r}; plain lists only", *mark, path
                )
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if kind == "mapping":
            if tag != _MAP:
                raise YamlSyntaxError(
                    f"unsupported YAML tag {tag!r}; plain mappings only", *mark, path
                )
            return self._mapping(node, path, depth)
        raise YamlSyntaxError(f"unsupported YAML node {kind!r}", *mark, path)

    def _mapping(self, node: Any, path: Path, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key_mark = _mark_of(key_node)
            if key_node.id != "scalar":
                raise YamlSyntaxError("mapping keys must be plain strings", *key_mark, path)
            key = key_node.value
            if _tag(key_node) == "tag:yaml.org,2002:merge" or (key == "<<" and not key_node.style):
                raise YamlSyntaxError(
                    "merge keys ('<<') are not supported; use profiles or overrides",
                    *key_mark,
                    path,
                )
            if key in result:
                first = self.doc.key_positions[(*path, key)]
                raise YamlSyntaxError(
                    f"duplicate key {key!r} (first defined at line {first[0]}, column {first[1]})",
                    *key_mark,
                    (*path, key),
                )
            self.doc.key_positions[(*path, key)] = key_mark
            result[key] = None  # reserve the slot so duplicates are seen in order
            result[key] = self.build(value_node, (*path, key), depth + 1, at=key_mark)
        return result


class _Yaml12Loader(yaml.CSafeLoader):
    """libyaml with the YAML 1.2 core schema's plain-scalar rules (`off` is a string)."""


_Yaml12Loader.yaml_implicit_resolvers = {}
for _scalar_tag, _pattern, _first in (
    (_BOOL, r"^(?:true|True|TRUE|false|False|FALSE)$", ["t", "T", "f", "F"]),
    (_NULL, r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (_INT, r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    (
        _FLOAT,
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        list("-+.0123456789"),
    ),
):
    _Yaml12Loader.add_implicit_resolver(_scalar_tag, re.compile(_pattern), _first)


def parse_document(text: str) -> Document:
    """Parse one YAML 1.2 document into plain data with positions.

    Raises YamlSyntaxError (with a 1-based position) for anything that is not a
    single document of maps, lists and plain scalars.
    """
    _precheck(text)
    try:
        node = yaml.compose(text, Loader=_Yaml12Loader)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, text) from exc
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"invalid YAML: {exc}", 1, 1) from exc
    if node is None:
        return Document(data=None)
    _check_size(node)
    builder = _Builder()
    builder.doc.data = builder.build(node, (), 0)
    return builder.doc


def _precheck(text: str) -> None:
    """Refuse absurd nesting and absurd size before the pure-Python parser sees
    the text (it is recursive, and slow on huge or deeply nested flow
    collections); libyaml's event stream costs a few milliseconds."""
    depth = 0
    values = 0
    try:
        for event in yaml.parse(text, Loader=yaml.CSafeLoader):
            if isinstance(event, yaml.CollectionStartEvent | yaml.ScalarEvent):
                values += 1
                if values > MAX_NODES:
                    line, column = _mark_of(event)
                    raise YamlSyntaxError(
                        f"the document has more than {MAX_NODES:,} values", line, column
                    )
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    line, column = _mark_of(event)
                    raise YamlSyntaxError(
                        f"nesting is deeper than {MAX_DEPTH} levels", line, column
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as exc:
        if "nesting depth" in str(exc):
            # libyaml gives up at 1,000 levels before emitting the event we
            # would stop at; find the first bracket past our limit instead.
            raise YamlSyntaxError(
                f"nesting is deeper than {MAX_DEPTH} levels", *_deep_bracket(text)
            ) from exc
        # Anything else is a syntax problem that the composer reports with its context.


def _deep_bracket(text: str) -> Mark:
    depth = 0
    line, column = 1, 0
    for char in text:
        column += 1
        if char == "\n":
            line, column = line + 1, 0
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line, column
        elif char in "]}":
            depth -= 1
    return 1, 1


def _check_size(root: Any) -> None:
    """Refuse a document whose aliases expand to more than MAX_NODES values
    ("billion laughs"), counting each shared node once, before expanding it."""
    sizes: dict[int, int] = {}

    def size(node: Any) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        total = 1
        if node.id == "sequence":
            total += sum(size(item) for item in node.value)
        elif node.id == "mapping":
            total += sum(size(k) + size(v) for k, v in node.value)
        sizes[id(node)] = total
        if total > MAX_NODES:
            raise YamlSyntaxError(
                f"the document expands to more than {MAX_NODES:,} values "
                "(aliases repeated too often?)",
                *_mark_of(node),
            )
        return total

    size(root)


# --------------------------------------------------------------------------
# Output


class _OutputDumper(yaml.CSafeDumper):
    """libyaml emitter that quotes every string a YAML 1.1 or 1.2 reader would retype."""


# YAML 1.2 core schema and go-yaml forms that YAML 1.1 (PyYAML) reads as strings.
_OutputDumper.add_implicit_resolver(
    _INT, re.compile(r"^[-+]?0o[0-7_]+$|^[-+]?0x[0-9a-fA-F_]+$"), list("-+0")
)
_OutputDumper.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^[-+]?(\.[0-9_]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?$"),
    list("-+.0123456789"),
)
_OutputDumper.add_implicit_resolver(_BOOL, re.compile(r"^(?:y|Y|n|N)$"), list("yYnN"))


def _memoized_resolve(cls: type[Any]) -> None:
    """Plain-scalar resolution depends on the value alone, and output repeats the
    same keys and values thousands of times: remember each answer. (libyaml's
    emitter asks twice per scalar, once as if quoted: always a string.)"""
    original = cls.resolve
    answers: dict[str, str] = {}

    def resolve(self: Any, kind: type[yaml.Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is not yaml.ScalarNode:
            return original(self, kind, value, implicit)  # type: ignore[no-any-return]
        if not implicit[0]:
            return _STR
        tag = answers.get(value)
        if tag is None:
            tag = answers[value] = original(self, kind, value, implicit)
        return tag

    cls.resolve = resolve


_memoized_resolve(_OutputDumper)


def _literal_unsafe(value: str) -> bool:
    # Literal blocks cannot carry trailing spaces on a line or a leading space
    # on the first line unambiguously; libyaml would fall back anyway.
    return any(line != line.rstrip(" \t") for line in value.split("\n")) or value[:1] == " "


def _float_text(value: float) -> str:
    # As PyYAML's SafeRepresenter writes floats: YAML 1.1 needs a dot.
    if math.isnan(value):
        return ".nan"
    if value in (float("inf"), float("-inf")):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value).lower()
    if "." not in text and "e" in text:
        text = text.replace("e", ".0e", 1)
    return text


def _node(value: Any) -> yaml.Node:
    """Data to a node graph directly: the representer's generic dispatch costs
    twice as much, and output is only ever maps, lists and scalars."""
    if isinstance(value, str):
        style = "|" if "\n" in value and not _literal_unsafe(value) else None
        return yaml.ScalarNode(_STR, value, style=style)
    if isinstance(value, bool):
        return yaml.ScalarNode(_BOOL, "true" if value else "false")
    if isinstance(value, int):
        return yaml.ScalarNode(_INT, str(value))
    if value is None:
        return yaml.ScalarNode(_NULL, "null")
    if isinstance(value, float):
        return yaml.ScalarNode(_FLOAT, _float_text(value))
    if isinstance(value, dict):
        items = [(_node(k), _node(v)) for k, v in sorted(value.items())]
        return yaml.MappingNode(_MAP, items, flow_style=False)
    if isinstance(value, list | tuple):
        return yaml.SequenceNode(_SEQ, [_node(v) for v in value], flow_style=False)
    raise TypeError(f"cannot write a {type(value).__name__} as YAML")


def dump_documents(documents: list[Any], header: str | None = None) -> str:
    """Canonical multi-document YAML: sorted keys, block style, no line folding."""
    fast = fast_dump_documents(documents, header)
    return fast if fast is not None else libyaml_dump_documents(documents, header)


def libyaml_dump_documents(documents: list[Any], header: str | None = None) -> str:
    """``dump_documents`` through libyaml's emitter, for any document."""
    stream = io.StringIO()
    if header:
        stream.write(f"# {header}\n")
    dumper = _OutputDumper(
        stream,
        default_flow_style=False,
        allow_unicode=True,
        width=1_000_000,
        explicit_start=len(documents) > 1,
    )
    dumper.open()
    for document in documents:
        dumper.serialize(_node(document))
    dumper.close()
    return stream.getvalue()


def dump(data: Any, header: str | None = None) -> str:
    return dump_documents([data], header)


class _OutputLoader(yaml.CSafeLoader):
    """Reads YAML meshctl itself produced (template output), by YAML 1.1 rules as
    Helm would."""


_memoized_resolve(_OutputLoader)


def _plain(node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        tag, text = node.tag, node.value
        if tag == _STR:
            return text
        digits = text.removeprefix("-")
        if tag == _INT and digits.isdigit() and (digits == "0" or digits[0] != "0"):
            return int(text)  # plain decimal; YAML 1.1's octal and sexagesimal go below
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return text.lower() in ("true", "yes", "on", "y")
        return _OutputLoader("").construct_object(node, deep=True)  # rare: octal, floats, ...
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item) for item in node.value]
    return {_plain(k): _plain(v) for k, v in node.value}


def load_output(text: str) -> Any:
    """Read YAML that meshctl itself produced (templates, emitted files)."""
    node = yaml.compose(text, Loader=_OutputLoader)
    return None if node is None else _plain(node)


def load_output_all(text: str) -> Iterator[Any]:
    for node in yaml.compose_all(text, Loader=_OutputLoader):
        yield _plain(node)


# --------------------------------------------------------------------------
# Fast path for template output: block mappings and sequences whose values are
# plain scalars or JSON (what ``templating.yaml_scalar`` emits). Anything else
# (comments after values, single quotes, block scalars, anchors, multi-line
# flow, floats inside flow) returns None and the caller uses libyaml. A test
# proves both readers agree on every template output of the test specs.

_PLAIN_UNSAFE_START = frozenset("'!&*|>%@`?,#[]{}\"")
_plain_values: dict[str, Any] = {}


class _NotFast(Exception):
    pass


# Strings libyaml writes plain, known without asking it: a letter, then
# letters, digits and `._/-`, and not a word YAML 1.1 reads as a bool or null
# (nothing else that starts with a letter resolves to another type).
_PLAIN_WORD = re.compile(r"[A-Za-z][A-Za-z0-9._/-]*")
_YAML11_WORDS = frozenset(
    word
    for base in ("y", "yes", "n", "no", "true", "false", "on", "off", "null")
    for word in (base, base.capitalize(), base.upper())
)


def _plain_word(text: str) -> bool:
    return _PLAIN_WORD.fullmatch(text) is not None and text not in _YAML11_WORDS


_PLAIN_DECIMAL = re.compile(r"-?[0-9]+\.[0-9]+")


def _no_float(text: str) -> Any:
    # JSON and YAML 1.1 disagree on floats such as 1e3 (YAML 1.1 wants a dot
    # and a signed exponent): only plain decimals read alike; let libyaml
    # decide the rest.
    if _PLAIN_DECIMAL.fullmatch(text):
        return float(text)
    raise _NotFast


# One decoder for every call: json.loads with options builds a new one each time.
_JSON = json.JSONDecoder(parse_float=_no_float, parse_constant=_no_float)


def _json(text: str) -> Any:
    try:
        return _JSON.decode(text)
    except ValueError:
        raise _NotFast from None


def _plain_value(text: str) -> Any:
    if _plain_word(text):  # a string by YAML 1.1's rules too
        return text
    value = _plain_values.get(text, _plain_values)
    if value is _plain_values:
        if text[0] in _PLAIN_UNSAFE_START or " #" in text or ": " in text or text[-1] == ":":
            raise _NotFast
        if text[0] == "-" and text[1:2] in ("", " "):
            raise _NotFast
        node = yaml.compose(text, Loader=_OutputLoader)
        if not isinstance(node, yaml.ScalarNode):
            raise _NotFast
        value = _plain_values[text] = _plain(node)
    return value


# Template output repeats most of its lines (9,000 lines, 1,400 distinct, for
# the example): each distinct scalar and mapping line is parsed once. Only
# immutable values are remembered; a flow list or mapping is parsed anew.
_scalars: dict[str, Any] = {}
_BLOCK = object()  # a `key:` line: the value is the block below it
_mapping_lines: dict[str, tuple[Any, Any]] = {}


def _scalar(text: str) -> Any:
    value = _scalars.get(text, _scalars)
    if value is not _scalars:
        return value
    first = text[0]
    value = _json(text) if first == '"' or first in "[{" else _plain_value(text)
    if type(value) is not list and type(value) is not dict:
        _scalars[text] = value
    return value


def _mapping_line(content: str) -> tuple[Any, Any]:
    """A mapping line's key and value (_BLOCK when the value is a block)."""
    entry = _mapping_lines.get(content)
    if entry is None:
        key, rest = _key(content)
        entry = (key, _scalar(rest) if rest else _BLOCK)
        if type(entry[1]) is not list and type(entry[1]) is not dict:
            _mapping_lines[content] = entry
    return entry


def _key(content: str) -> tuple[Any, str]:
    """A mapping line's key and what follows it ('' when the value is a block)."""
    if content[0] in "\"'[{?":
        raise _NotFast
    key, sep, rest = content.partition(": ")
    if not sep:
        if content[-1] != ":":
            raise _NotFast
        key, rest = content[:-1], ""
    if ": " in rest and rest[0] not in '"[{':
        raise _NotFast
    return _plain_value(key), rest


def _fast_block(lines: list[tuple[int, str]], i: int, indent: int) -> tuple[Any, int]:
    if lines[i][1].startswith("- ") or lines[i][1] == "-":
        return _fast_sequence(lines, i, indent)
    return _fast_mapping(lines, i, indent)


def _nested(
    lines: list[tuple[int, str]], i: int, indent: int, *, in_mapping: bool
) -> tuple[Any, int]:
    """The block value that starts on line i (after a bare `key:` or `-`)."""
    if i < len(lines):
        next_indent, content = lines[i]
        if next_indent > indent:
            return _fast_block(lines, i, next_indent)
        if in_mapping and next_indent == indent and (content.startswith("- ") or content == "-"):
            return _fast_sequence(lines, i, indent)
    return None, i


def _fast_mapping(lines: list[tuple[int, str]], i: int, indent: int) -> tuple[Any, int]:
    mapping: dict[Any, Any] = {}
    while i < len(lines):
        line_indent, content = lines[i]
        if line_indent < indent:
            break
        if line_indent > indent or content.startswith("- ") or content == "-":
            raise _NotFast
        key, value = _mapping_line(content)
        if key in mapping:
            raise _NotFast
        if value is _BLOCK:
            mapping[key], i = _nested(lines, i + 1, indent, in_mapping=True)
        else:
            mapping[key] = value
            i += 1
    return mapping, i


def _fast_sequence(lines: list[tuple[int, str]], i: int, indent: int) -> tuple[Any, int]:
    items: list[Any] = []
    while i < len(lines):
        line_indent, content = lines[i]
        if line_indent < indent or not (content.startswith("- ") or content == "-"):
            if line_indent > indent:
                raise _NotFast
            break
        if line_indent > indent:
            raise _NotFast
        item = content[2:]
        if not item:
            value, i = _nested(lines, i + 1, indent, in_mapping=False)
        elif item.startswith("- ") or (item[0] not in '"[{' and (": " in item or item[-1] == ":")):
            # A nested block that starts on the dash's line: parse it in place.
            lines[i] = (indent + 2, item)
            value, i = _fast_block(lines, i, indent + 2)
        else:
            value = _scalar(item)
            i += 1
        items.append(value)
    return items, i


# What each distinct raw line is: skipped, a document start, outside the
# subset, or (indent, content).
_SKIP = object()
_DOCUMENT_START = object()
_OUTSIDE = object()
_raw_lines: dict[str, Any] = {}


def _raw_line(raw: str) -> Any:
    content = raw.lstrip(" ")
    if not content or content[0] == "#":
        return _SKIP
    if raw == "---":
        return _DOCUMENT_START
    if raw.startswith(("---", "...", "%")) or content[-1] == " ":
        return _OUTSIDE
    return (len(raw) - len(content), content)


def fast_load_all(text: str) -> list[Any] | None:
    """Template output as documents, or None when it is not in the simple subset."""
    if "\t" in text or "\r" in text:
        return None
    documents: list[list[tuple[int, str]]] = [[]]
    lines = documents[0]
    known = _raw_lines
    for raw in text.split("\n"):
        line = known.get(raw)
        if line is None:
            line = known[raw] = _raw_line(raw)
        if type(line) is tuple:
            lines.append(line)
        elif line is _DOCUMENT_START:
            lines = []
            documents.append(lines)
        elif line is _OUTSIDE:
            return None
    loaded: list[Any] = []
    try:
        for lines in documents:
            if not lines:
                continue
            value, end = _fast_block(lines, 0, lines[0][0])
            if end != len(lines):
                return None
            loaded.append(value)
    except (_NotFast, RecursionError):
        return None
    return loaded


# --------------------------------------------------------------------------
# Fast path for writing: the same bytes libyaml writes, for documents made of
# mappings with string keys, lists, one-line scalars and the multi-line
# strings libyaml writes as plain literal blocks. How each one-line scalar is
# written (plain or quoted) is libyaml's own answer, asked once per value.
# Anything else (floats libyaml spells its own way, odd keys, strings libyaml
# would quote) returns None and the caller uses libyaml. A test proves both
# writers agree on every rendered file.

_scalar_text: dict[Any, str | None] = {}  # numbers, booleans, null
_key_text: dict[str, str | None] = {}
# Every string value seen, to its one-line text ("" when it is not one line):
# output repeats the same values thousands of times.
_string_text: dict[str, str] = {}


def _libyaml_line(data: Any) -> str | None:
    text = libyaml_dump_documents([data])
    return text if text.count("\n") == 1 else None


def _libyaml_scalar(value: Any) -> str | None:
    line = _libyaml_line([value])  # "- <value>\n"
    return line[2:-1] if line and line.startswith("- ") else None


def _value_text(value: int | float | bool | None) -> str | None:
    if type(value) is int:
        return str(value)
    # Floats by their repr: 0.0 and -0.0 are equal keys but different text.
    key = (float, repr(value)) if isinstance(value, float) else (type(value), value)
    if key not in _scalar_text:
        _scalar_text[key] = _libyaml_scalar(value)
    return _scalar_text[key]


def _mapping_key_text(key: str) -> str:
    text = _key_text.get(key, "")
    if text:
        return text
    if type(key) is not str or key in _key_text:
        raise _NotFast
    # libyaml writes a key longer than 128 characters as a complex key (`? `).
    if len(key) <= 128 and _plain_word(key):
        text = key
    else:
        line = _libyaml_line({key: None})  # "<key>: null\n"
        ok = line is not None and line.endswith(": null\n") and not line.startswith("?")
        text = line[: -len(": null\n")] if ok and line else None
    _key_text[key] = text
    if text is None:
        raise _NotFast
    return text


def _one_line_string(value: str) -> str:
    if "\n" in value:
        text = ""
    elif _plain_word(value):
        text = value
    else:
        text = _libyaml_scalar(value) or ""
    _string_text[value] = text
    return text


def _literal_block(value: str, indent: str) -> str:
    """`value` as libyaml writes a literal block (after `key:` or `-`), or raise
    _NotFast for the cases where libyaml adds indicators or quotes instead:
    leading spaces or breaks, trailing spaces, more than one final break, and
    anything but printable ASCII."""
    if (
        value[0] in " \n"
        or value.endswith("\n\n")
        or not value.isascii()
        or not value.replace("\n", "").isprintable()
        or _literal_unsafe(value)
    ):
        raise _NotFast
    keep = value.endswith("\n")
    lines = (value[:-1] if keep else value).split("\n")
    body = "".join(f"{indent}{line}\n" if line else "\n" for line in lines)
    return f" |{'' if keep else '-'}\n{body}"


def _fast_value(value: Any, lead: str, indent: str, out: list[str], *, in_sequence: bool) -> None:
    """One value: `lead` is its line so far (`key:` or `-`), `indent` where
    nested lines start."""
    kind = type(value)
    if kind is dict and value:
        if in_sequence:
            _fast_mapping_lines(value, indent, out, first=lead + " ")
        else:
            out.append(lead + "\n")
            _fast_mapping_lines(value, indent, out)
    elif kind is list and value:
        if in_sequence:
            _fast_sequence_lines(value, indent, out, first=lead + " ")
        else:
            out.append(lead + "\n")
            # Block sequences in a mapping are not indented (`key:` then `- a`).
            _fast_sequence_lines(value, indent[:-2], out)
    else:
        out.append(_scalar_lines(value, lead, indent))


def _scalar_lines(value: Any, lead: str, indent: str) -> str:
    if type(value) is str:
        text = _string_text.get(value)
        if text is None:
            text = _one_line_string(value)
        if text:
            return f"{lead} {text}\n"
        if "\n" in value:
            return lead + _literal_block(value, indent)
        raise _NotFast
    if type(value) is dict or type(value) is list:  # empty ones
        return f"{lead} {'{}' if type(value) is dict else '[]'}\n"
    if isinstance(value, float) and not math.isfinite(value):
        raise _NotFast
    text = _value_text(value) if isinstance(value, int | float | bool | None) else None
    if text is None:
        raise _NotFast
    return f"{lead} {text}\n"


def _fast_mapping_lines(
    mapping: dict[Any, Any], indent: str, out: list[str], *, first: str | None = None
) -> None:
    """A block mapping; `first` is what precedes its first key on that key's line
    (`- ` for a mapping in a sequence), if not the indentation."""
    nested = indent + "  "
    for key, value in sorted(mapping.items()):
        key_text = _key_text.get(key) or _mapping_key_text(key)
        if first is None:
            lead = f"{indent}{key_text}:"
        else:
            lead, first = f"{first}{key_text}:", None
        _fast_value(value, lead, nested, out, in_sequence=False)


def _fast_sequence_lines(
    items: list[Any], indent: str, out: list[str], *, first: str | None = None
) -> None:
    nested = indent + "  "
    for item in items:
        if first is None:
            lead = f"{indent}-"
        else:
            lead, first = first + "-", None
        nonempty = type(item) in (dict, list) and item
        _fast_value(item, lead, nested, out, in_sequence=bool(nonempty))


def fast_dump_documents(documents: list[Any], header: str | None = None) -> str | None:
    """What ``dump_documents`` writes, or None when a document is outside the fast path."""
    out: list[str] = [f"# {header}\n"] if header else []
    try:
        for document in documents:
            if not isinstance(document, dict) or not document:
                return None
            if len(documents) > 1:
                out.append("---\n")
            _fast_mapping_lines(document, "", out)
    except _NotFast:
        return None
    return "".join(out)
