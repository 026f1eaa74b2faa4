"""A non-editable install into a fresh virtualenv renders (templates, schemas and
profiles ship inside the wheel)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import harness

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, check=False, timeout=600
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_renders(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--wheel", "--outdir", dist, ROOT)
    wheels = list(dist.glob("meshctl-*.whl"))
    assert len(wheels) == 1
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin/python", "-m", "pip", "install", "--quiet", wheels[0])
    work = tmp_path / "work"
    work.mkdir()
    meshctl = venv / "bin/meshctl"
    run(meshctl, "init", cwd=work)
    # A first render, as in a fresh CI container (no template cache): the
    # templates come compiled from the wheel (hatch_build.py), so Jinja's
    # compiler is never called, and they are cached for the next render.
    refuse_compile = (
        "import sys, jinja2\n"
        "def compile(*args, **kwargs): raise AssertionError('Jinja compiled a template')\n"
        "jinja2.Environment.compile = compile\n"
        "from meshctl.__main__ import run\n"
        "sys.argv = ['meshctl', 'render']\n"
        "run()\n"
    )
    cache = tmp_path / "cache"
    result = subprocess.run(
        [venv / "bin/python", "-c", refuse_compile],
        cwd=work,
        env={**os.environ, "XDG_CACHE_HOME": str(cache)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "rendered dev, staging, prod" in result.stdout
    assert len(list(cache.glob("meshctl/templates-*/*"))) > 40
    # the installed package must not be reading the source checkout's data
    location = run(
        venv / "bin/python",
        "-c",
        "import meshctl.resources as r; print(r.templates_dir())",
        cwd=work,
    ).stdout.strip()
    assert str(ROOT) not in location and "_data/templates" in location
    for env in ("dev", "staging", "prod"):
        assert harness.kustomize_build(work / "rendered/overlays" / env)
