"""Same input, same bytes: on every run, whatever the hash seed."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import meshctl, valid_specs


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("name", sorted(valid_specs()))
def test_renders_are_byte_identical_under_different_hash_seeds(name: str, tmp_path: Path) -> None:
    spec = valid_specs()[name]
    trees = []
    for seed in ("1", "2", "12345"):
        work = tmp_path / f"seed-{seed}"
        work.mkdir()
        (work / "platform.yaml").write_bytes(spec.read_bytes())
        profiles = spec.parent / "profiles"
        if profiles.is_dir() and spec.parent.name != "init":
            (work / "profiles").symlink_to(profiles)
        run = meshctl("render", cwd=work, env={"PYTHONHASHSEED": seed})
        assert run.code == 0, run.stderr
        trees.append(tree_bytes(work / "rendered"))
    assert trees[0] == trees[1] == trees[2]
    assert len(trees[0]) > 10


def test_output_carries_no_machine_specific_paths(project: Path) -> None:
    assert (
        meshctl(
            "render",
            str(project / "platform.yaml"),
            "-o",
            str(project / "rendered"),
            cwd=project.parent,
        ).code
        == 0
    )
    for path, data in tree_bytes(project / "rendered").items():
        assert str(project) not in data.decode(), path
