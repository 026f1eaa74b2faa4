"""A non-editable install into a fresh virtualenv renders (templates, schemas and
profiles ship inside the wheel)."""

from __future__ import annotations

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
    result = run(meshctl, "render", cwd=work)
    assert "rendered dev, staging, prod" in result.stdout
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
