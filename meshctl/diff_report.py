"""The three formats of `meshctl diff`.

- text: a summary table per environment, the risky changes, then every change
  (``--unified`` adds the text diff of each resource). Returned as styled
  segments so that cli.py, which alone prints with rich, can colour them; or as
  plain text for logs, pipes and ``NO_COLOR``.
- markdown: a pull-request comment: summary table, risky changes first, one
  collapsible section per environment with each resource's text diff, cut to
  fit GitHub's comment limit with a note saying so.
- json: a stable, versioned structure described by ``schemas/diff.schema.json``.

Risky changes come first in all three.
"""

from __future__ import annotations

import html
import json
import math
import re
from typing import Any

from msgspec import Struct

from meshctl.diff_model import ABSENT, Change, DiffReport, EnvironmentDiff, Target

JSON_VERSION = 1
# GitHub refuses comments over 65,536 characters; leave room for a bot's own text.
MARKDOWN_LIMIT = 60_000

Segment = tuple[str, str]  # text, and a rich style ("" for none)
Line = list[Segment]

ACTION_MARK = {"added": "+", "removed": "-", "changed": "~"}
ACTION_STYLE = {"added": "green", "removed": "red", "changed": "yellow"}
VALUE_LIMIT = 160


def show(value: Any, limit: int = VALUE_LIMIT) -> str:
    """A value as one line: JSON for data, `(not set)` for a missing key."""
    if value is ABSENT:
        return "(not set)"
    if isinstance(value, str) and value.startswith("<redacted>"):
        return value
    text = json.dumps(_jsonable(value), ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _where(change: Change) -> str:
    return change.new_file or change.old_file or ""


def _counts(env: EnvironmentDiff) -> str:
    parts = [
        f"{env.count('added')} added",
        f"{env.count('removed')} removed",
        f"{env.count('changed')} changed",
    ]
    if env.risky:
        parts.append(f"{env.risky} risky")
    return ", ".join(parts)


def _env_title(env: EnvironmentDiff) -> str:
    return f"{env.name} (production)" if env.production else env.name


def _summary(report: DiffReport) -> str:
    changes = list(report.changes())
    risky = sum(1 for c in changes if c.risky)
    envs = sum(1 for e in report.environments if e.changes)
    text = (
        f"{len(changes)} change{'' if len(changes) == 1 else 's'} in {envs} "
        f"environment{'' if envs == 1 else 's'}"
    )
    return text + (f", {risky} risky" if risky else "")


def no_differences(report: DiffReport) -> str:
    envs = ", ".join(e.name for e in report.environments) or "no environments"
    against = report.against
    if against.type == "git":
        return f"no differences: {report.spec} renders the same as at {against.ref} ({envs})"
    return f"no differences: {against.label} is what {report.spec} renders ({envs})"


# --------------------------------------------------------------------------
# text


class TextReport(Struct):
    title: str
    header: list[str]
    rows: list[list[str]]
    body: list[Line]


def text_report(report: DiffReport, *, unified: bool = False) -> TextReport:
    title = f"meshctl diff: {report.spec} against {report.against.label}: {_summary(report)}"
    header = ["environment", "production", "added", "removed", "changed", "risky"]
    rows = [
        [
            env.name,
            "yes" if env.production else "no",
            str(env.count("added")),
            str(env.count("removed")),
            str(env.count("changed")),
            str(env.risky),
        ]
        for env in report.environments
    ]
    body: list[Line] = []
    risky = [c for c in report.changes() if c.risky]
    if risky:
        body.append([])
        body.append([(f"Risky changes ({len(risky)})", "bold red")])
        for change in risky:
            for risk in change.risks:
                body.append(
                    [
                        ("  ! ", "bold red"),
                        (f"{risk.id}", "red"),
                        (f"  {change.environment}  {change.action} {change.target.label}: ", ""),
                        (risk.message, ""),
                    ]
                )
    for env in report.environments:
        if not env.changes:
            continue
        body.append([])
        body.append([(_env_title(env), "bold"), (f": {_counts(env)}", "")])
        for change in env.changes:
            body += _text_change(change, unified=unified)
    return TextReport(title, header, rows, body)


def _text_change(change: Change, *, unified: bool) -> list[Line]:
    style = ACTION_STYLE[change.action]
    lines: list[Line] = [
        [
            (f"  {ACTION_MARK[change.action]} {change.action:<8}", style),
            (change.target.label, "bold"),
            (f"  ({_where(change)})", "dim"),
        ]
    ]
    for item in change.fields:
        lines.append(
            [
                (f"      {item.path}: ", "cyan"),
                (show(item.old), "red" if item.old is not ABSENT else "dim"),
                (" -> ", ""),
                (show(item.new), "green" if item.new is not ABSENT else "dim"),
            ]
        )
    for risk in change.risks:
        lines.append([("      ! ", "bold red"), (risk.id, "red"), (f": {risk.message}", "")])
    if unified and change.unified:
        for text in change.unified.splitlines():
            color = (
                "bold"
                if text.startswith(("---", "+++"))
                else "green"
                if text.startswith("+")
                else "red"
                if text.startswith("-")
                else "cyan"
                if text.startswith("@@")
                else ""
            )
            lines.append([(f"      {text}", color)])
    return lines


def plain_text(text: TextReport) -> str:
    """The text report without colour: aligned columns, one change per line."""
    widths = [max(len(r[i]) for r in [text.header, *text.rows]) for i in range(len(text.header))]

    def row(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        ).rstrip()

    lines = [text.title, "", row(text.header), *(row(r) for r in text.rows)]
    lines += ["".join(segment for segment, _ in line) for line in text.body]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# markdown


def _code(value: str) -> str:
    """Inline code that survives tables, HTML and markdown: every character that
    could mean something there is written as an entity."""
    escaped = _CODE_SPECIAL.sub(lambda m: f"&#{ord(m[0])};", html.escape(value, quote=False))
    return f"<code>{escaped}</code>"


_CODE_SPECIAL = re.compile(r"[\\`*_\[\]|~]")


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~#])")


def _md_text(value: str) -> str:
    """Text that markdown shows as is: no emphasis, links, code or HTML from user data."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(value, quote=False))


def _fence(text: str, language: str = "") -> str:
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=2)
    fence = "`" * (longest + 1)
    return f"{fence}{language}\n{text}{'' if text.endswith(chr(10)) else chr(10)}{fence}\n"


def _md_target(target: Target) -> str:
    if target.type == "values":
        return f"Helm values {_code(target.name)}"
    where = f"{target.namespace}/{target.name}" if target.namespace else target.name
    return f"{_code(target.api_version)} {target.kind} {_code(where)}"


class _Budget:
    """Markdown pieces, kept under a size limit; what does not fit is counted."""

    def __init__(self, limit: int | None) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit
        self.left_out = 0
        self.left_out_risky = 0

    def add(self, text: str, *, reserve: int = 0) -> bool:
        if self.limit is not None and self.size + len(text) + reserve > self.limit:
            return False
        self.parts.append(text)
        self.size += len(text)
        return True


_RESERVE = 800  # closing tags and the truncation note


def markdown(report: DiffReport, limit: int = MARKDOWN_LIMIT) -> str:
    """A pull-request comment; at most `limit` characters."""
    text = _markdown(report, unified=True, limit=None)
    if len(text) <= limit:
        return text
    return _markdown(report, unified=False, limit=limit)


def _markdown(report: DiffReport, *, unified: bool, limit: int | None) -> str:
    out = _Budget(limit)
    against = report.against
    base = (
        f"the render of {_code(against.path)} at {_code(against.ref or '')}"
        if against.type == "git"
        else _code(against.label)
    )
    out.add("### meshctl diff\n\n")
    if not report.differences:
        envs = ", ".join(e.name for e in report.environments)
        out.add(f"No changes: {_code(report.spec)} renders the same as {base} ({envs}).\n")
        return "".join(out.parts)
    out.add(f"{_code(report.spec)} against {base}: **{_summary(report)}**.\n\n")
    out.add("| environment | added | removed | changed | risky |\n|---|--:|--:|--:|--:|\n")
    for env in report.environments:
        risky = f"⚠️ {env.risky}" if env.risky else "0"
        out.add(
            f"| {_md_text(_env_title(env))} | {env.count('added')} | {env.count('removed')} "
            f"| {env.count('changed')} | {risky} |\n"
        )
    risky_changes = [c for c in report.changes() if c.risky]
    if risky_changes:
        out.add("\n#### ⚠️ Risky changes\n\n")
        for change in risky_changes:
            for risk in change.risks:
                line = (
                    f"- **{_md_text(change.environment)}** {_code(risk.id)} "
                    f"{change.action} {_md_target(change.target)}: {_md_text(risk.message)}\n"
                )
                if not out.add(line, reserve=_RESERVE):
                    out.left_out_risky += 1
    for env in report.environments:
        if env.changes:
            _md_environment(out, env, unified=unified)
    if out.left_out or out.left_out_risky:
        count = out.left_out
        risky_note = f" and {out.left_out_risky} risk line(s)" if out.left_out_risky else ""
        out.parts.append(
            f"\n> **Truncated:** {count} change(s){risky_note} not shown; a comment holds at most "
            f"{limit:,} characters. Run `meshctl diff` (or `--format json`) for all of them.\n"
        )
    elif not unified:
        out.parts.append(
            "\n> Text diffs left out to fit the comment; `meshctl diff --unified` shows them.\n"
        )
    return "".join(out.parts)


def _md_environment(out: _Budget, env: EnvironmentDiff, *, unified: bool) -> None:
    title = f"<b>{_md_text(_env_title(env))}</b>: {_counts(env)}"
    opened = out.add(f"\n<details>\n<summary>{title}</summary>\n\n", reserve=_RESERVE)
    if not opened:
        out.left_out += len(env.changes)
        return
    for change in env.changes:
        if not out.add(_md_change(change, unified=unified), reserve=_RESERVE):
            out.left_out += 1
    out.parts.append("</details>\n")
    out.size += len("</details>\n")


def _md_change(change: Change, *, unified: bool) -> str:
    flags = "".join(f" ⚠️ {_code(r.id)}" for r in change.risks)
    lines = [
        f"**{change.action}** {_md_target(change.target)} in {_code(_where(change))}{flags}\n\n"
    ]
    for risk in change.risks:
        lines.append(f"> ⚠️ {_code(risk.id)}: {_md_text(risk.message)}\n")
    if change.risks:
        lines.append("\n")
    if change.fields:
        lines.append("| key | old | new |\n|---|---|---|\n")
        for item in change.fields:
            lines.append(
                f"| {_code(item.path)} | {_code(show(item.old))} | {_code(show(item.new))} |\n"
            )
        lines.append("\n")
    if unified and change.unified:
        lines.append("<details><summary>text diff</summary>\n\n")
        lines.append(_fence(change.unified, "diff"))
        lines.append("\n</details>\n\n")
    return "".join(lines)


# --------------------------------------------------------------------------
# json


def _target_json(target: Target) -> dict[str, Any]:
    if target.type == "values":
        return {"type": "values", "release": target.name}
    return {
        "type": "resource",
        "apiVersion": target.api_version,
        "kind": target.kind,
        "namespace": target.namespace or None,
        "name": target.name,
    }


def _change_json(change: Change) -> dict[str, Any]:
    fields = []
    for item in change.fields:
        entry: dict[str, Any] = {"path": item.path}
        if item.old is not ABSENT:
            entry["old"] = _jsonable(item.old)
        if item.new is not ABSENT:
            entry["new"] = _jsonable(item.new)
        fields.append(entry)
    return {
        "action": change.action,
        "target": _target_json(change.target),
        "files": {"old": change.old_file, "new": change.new_file},
        "fields": fields,
        "risks": [{"id": r.id, "message": r.message, "path": r.path} for r in change.risks],
        "unified": change.unified,
    }


def to_json(report: DiffReport) -> str:
    """The report as JSON (schemas/diff.schema.json), risky changes first."""
    changes = list(report.changes())
    against = report.against
    body = {
        "version": JSON_VERSION,
        "spec": report.spec,
        "against": {
            "type": against.type,
            "path": against.path,
            "ref": against.ref,
            "commit": against.commit,
        },
        "differences": report.differences,
        "summary": {
            "added": sum(1 for c in changes if c.action == "added"),
            "removed": sum(1 for c in changes if c.action == "removed"),
            "changed": sum(1 for c in changes if c.action == "changed"),
            "risky": sum(1 for c in changes if c.risky),
        },
        "risks": [
            {
                "environment": c.environment,
                "id": r.id,
                "message": r.message,
                "path": r.path,
                "action": c.action,
                "target": _target_json(c.target),
            }
            for c in changes
            for r in c.risks
        ],
        "environments": [
            {
                "name": env.name,
                "production": env.production,
                "summary": {
                    "added": env.count("added"),
                    "removed": env.count("removed"),
                    "changed": env.count("changed"),
                    "risky": env.risky,
                },
                "changes": [_change_json(c) for c in env.changes],
            }
            for env in report.environments
        ],
    }
    return json.dumps(body, indent=2, ensure_ascii=False, default=str)
