"""Same input, same bytes: on every run, whatever the hash seed."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshctl import emit
from meshctl.build.context import Manifest

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


def _config_map(value: object) -> Manifest:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "x"},
        "data": {"v": value},
    }
    return Manifest("demo", "config", body)


@pytest.mark.parametrize(
    ("one", "other"),
    [(1, 1.0), (1, True), (0.0, -0.0), (float("nan"), None), ("1", 1), ([1], (1.0,))],
)
def test_manifests_python_calls_equal_but_yaml_writes_differently_are_not_shared(
    one: object, other: object
) -> None:
    """base/ takes a manifest only when every environment has it byte for byte."""
    assert emit._key(_config_map(one)) != emit._key(_config_map(other))


def test_the_sharing_key_ignores_key_order() -> None:
    first = _config_map({"a": 1, "b": [2, {"c": None, "d": "e"}]})
    second = _config_map({"b": [2, {"d": "e", "c": None}], "a": 1})
    assert emit._key(first) == emit._key(second)
