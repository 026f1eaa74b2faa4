"""Everything meshctl prints: problems (text, JSON, GitHub annotations), render
summaries, explanations and profile listings. Only this module and cli.py
import rich; colour follows NO_COLOR and whether the stream is a terminal."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from meshctl import yamlio
from meshctl.errors import Differences, Problem
from meshctl.expand import REMOVED
from meshctl.paths import format_path

if TYPE_CHECKING:
    from rich.console import Console

    from meshctl.explain import Explanation

JSON_REPORT_VERSION = 1


def console(stream: TextIO | None = None) -> Console:
    # rich is imported only when something is printed with it: the success path
    # of `render` prints one plain line and should not pay for it.
    from rich.console import Console

    # highlight=False: never colour numbers or paths inside user text.
    return Console(file=stream or sys.stdout, highlight=False, soft_wrap=True)


def err_console() -> Console:
    return console(sys.stderr)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# -- problems ---------------------------------------------------------------


def problems_text(out: Console, problems: Sequence[Problem]) -> None:
    from rich.text import Text

    for problem in problems:
        line = Text()
        line.append(str(problem.location), style="bold")
        line.append(": ")
        if problem.path:
            line.append(problem.path, style="cyan")
            line.append(": ")
        line.append(problem.message)
        out.print(line)
    files = sorted({p.location.file for p in problems})
    out.print(Text(f"{_plural(len(problems), 'problem')} in {', '.join(files)}", style="red"))


def problems_json(problems: Sequence[Problem], spec: str) -> str:
    body = {
        "version": JSON_REPORT_VERSION,
        "spec": spec,
        "valid": not problems,
        "problems": [
            {
                "file": p.location.file,
                "line": p.location.line,
                "column": p.location.column,
                "path": p.path,
                "message": p.message,
                "rule": p.rule,
            }
            for p in problems
        ],
    }
    return json.dumps(body, indent=2, ensure_ascii=False)


def _gh_escape(text: str, *, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def problems_github(problems: Sequence[Problem]) -> str:
    """GitHub Actions workflow commands: each problem becomes an annotation."""
    lines = []
    for p in problems:
        props = [f"file={_gh_escape(p.location.file, prop=True)}"]
        if p.location.line:
            props += [f"line={p.location.line}", f"col={p.location.column}"]
        props.append(f"title={_gh_escape('meshctl ' + p.rule, prop=True)}")
        message = f"{p.path}: {p.message}" if p.path else p.message
        lines.append(f"::error {','.join(props)}::{_gh_escape(message)}")
    return "\n".join(lines)


# -- render -----------------------------------------------------------------


def render_summary(
    directory: str, environments: list[str], *, written: int, removed: int, total: int
) -> None:
    envs = ", ".join(environments)
    if not written and not removed:
        print(f"{directory} is up to date ({_plural(total, 'file')}; {envs})")
        return
    print(
        f"rendered {envs} into {directory}: {written} written, {removed} removed, "
        f"{total - written} unchanged"
    )


def differences(out: Console, directory: str, diff: Differences) -> None:
    from rich.text import Text

    out.print(Text(f"{directory} is out of date; run `meshctl render`:", style="red"))
    for label, paths, style in (
        ("changed", diff.changed, "yellow"),
        ("missing", diff.added, "green"),
        ("stale  ", diff.removed, "red"),
    ):
        for path in paths:
            out.print(Text.assemble((f"  {label} ", style), f"{directory}/{path}"))


# -- explain ----------------------------------------------------------------


def _value(value: Any) -> str:
    from meshctl.explain import MISSING  # `render` prints through this module too

    if value is MISSING or value is REMOVED:
        return "(not set)"
    if isinstance(value, str | int | float | bool) or value is None:
        return json.dumps(value) if isinstance(value, str) else yamlio.dump(value).strip()
    return json.dumps(value, ensure_ascii=False)


def explanation(out: Console, item: Explanation) -> None:
    from rich.text import Text

    title = Text()
    title.append(format_path(item.path), style="bold")
    title.append(f"  (environment {item.environment})")
    out.print(title)
    for leaf in item.leaves:
        prefix = "  "
        if leaf.path != item.path:
            out.print(
                Text(f"  {format_path(leaf.path[len(item.path) :]).lstrip('.')}", style="cyan")
            )
            prefix = "    "
        out.print(Text.assemble(prefix, ("= ", "bold"), (_value(leaf.value), "bold green")))
        for index, contribution in enumerate(reversed(leaf.history)):
            verb = "set by" if index == 0 else "over"
            what = "removed (null)" if contribution.removed else _value(contribution.value)
            line = Text(prefix)
            line.append(f"{verb:7}", style="dim" if index else "")
            line.append(f"{contribution.layer.label:34}")
            line.append(f"{contribution.location}  ", style="dim")
            line.append(what, style="strike dim" if index else "")
            out.print(line)
        if not leaf.history:
            out.print(Text(f"{prefix}no layer sets it", style="dim"))


# -- profiles ---------------------------------------------------------------


def profile_table(out: Console, rows: list[dict[str, str]]) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("name", "extends", "production", "origin", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            *(Text(row[c]) for c in ("name", "extends", "production", "origin", "description"))
        )
    out.print(table)


def settings_diff(out: Console, a: str, b: str, rows: list[tuple[str, Any, Any]]) -> None:
    from rich.table import Table
    from rich.text import Text

    if not rows:
        out.print(f"profiles {a} and {b} have the same settings")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("setting")
    table.add_column(a)
    table.add_column(b)
    for path, left, right in rows:
        table.add_row(Text(path), Text(_value(left)), Text(_value(right)))
    out.print(table)
