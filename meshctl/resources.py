"""Where meshctl's own data (templates, schemas, profiles) lives.

In a wheel they are packaged under ``meshctl/_data/``; in a source checkout or an
editable install they are the top-level folders beside the package.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from meshctl.errors import MeshctlError


@cache
def data_dir(name: str) -> Path:
    package = Path(__file__).resolve().parent
    for candidate in (package / "_data" / name, package.parent / name):
        if candidate.is_dir():
            return candidate
    raise MeshctlError(f"meshctl is installed without its {name}/ folder; reinstall it")


def templates_dir() -> Path:
    return data_dir("templates")


def shipped_templates() -> Path | None:
    """The templates compiled at wheel build time (hatch_build.py); a source
    checkout or an editable install has none."""
    from meshctl.template_syntax import SHIPPED_FILE

    path = Path(__file__).resolve().parent / "_data" / SHIPPED_FILE
    return path if path.is_file() else None


def profiles_dir() -> Path:
    return data_dir("profiles")


def schemas_dir() -> Path:
    return data_dir("schemas")


def example_spec() -> Path:
    return templates_dir() / "init" / "platform.yaml"
