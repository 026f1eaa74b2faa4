"""Dotted paths into YAML data: `spec.services[0].port`, and back."""

from __future__ import annotations

import json
import re

from meshctl.yamlio import Path

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_TOKEN = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


def format_path(path: Path | tuple[str | int | tuple[str, str], ...]) -> str:
    """`spec.services[0].port`, `metadata.labels["app.kubernetes.io/name"]`; a
    (key, value) part names an item of a keyed list: `containers[name=kong]`."""
    out = ""
    for part in path:
        if isinstance(part, tuple):
            out += f"[{part[0]}={part[1]}]"
        elif isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def parse_path(text: str) -> Path | None:
    """Parse what format_path writes; None when the text is not a path."""
    parts: list[str | int] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or (position == 0 and text.startswith(".")):
            return None
        key, index, quoted = match.groups()
        if key is not None:
            parts.append(key)
        elif index is not None:
            parts.append(int(index))
        else:
            parts.append(json.loads(quoted))
        position = match.end()
    return tuple(parts)
