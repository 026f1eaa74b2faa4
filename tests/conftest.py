"""Shared fixtures: the bundled example, renders of every valid spec, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from meshctl import pipeline
from meshctl.resources import example_spec

TESTS = Path(__file__).resolve().parent
CASES = TESTS / "cases"


@pytest.fixture(scope="session", autouse=True)
def template_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """meshctl's compiled-template cache, for this run only (and for the CLI
    subprocesses, which inherit it): never the developer's ~/.cache."""
    folder = tmp_path_factory.mktemp("xdg-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(folder))
        yield folder


def valid_specs() -> dict[str, Path]:
    """The bundled example and every tests/cases/valid/<name>/platform.yaml."""
    specs = {"example": example_spec()}
    for folder in sorted((CASES / "valid").iterdir()):
        if (folder / "platform.yaml").is_file():
            specs[folder.name] = folder / "platform.yaml"
    return specs


@dataclass(frozen=True)
class Rendered:
    name: str
    spec: Path
    tree: Path
    result: pipeline.RenderResult


@pytest.fixture(scope="session")
def rendered_trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    trees = {}
    for name, spec in valid_specs().items():
        tree = tmp_path_factory.mktemp(f"rendered-{name}") / "rendered"
        result = pipeline.render(spec, tree, display_name="platform.yaml")
        trees[name] = Rendered(name, spec, tree, result)
    return trees


@pytest.fixture(scope="session")
def example_tree(rendered_trees: dict[str, Rendered]) -> Rendered:
    return rendered_trees["example"]


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


def meshctl(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> Run:
    """Run the real CLI in a subprocess (exit codes, streams and all)."""
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "meshctl", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(result.returncode, result.stdout, result.stderr)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder holding a copy of the bundled example as platform.yaml."""
    (tmp_path / "platform.yaml").write_bytes(example_spec().read_bytes())
    return tmp_path
