"""The write stage: ownership, pruning, conflicts, --check, scope, atomicity."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import pytest

from meshctl import layout, write
from meshctl.errors import OutputError
from meshctl.pipeline import RenderResult, render

from conftest import meshctl

SPEC_NAME = "platform.yaml"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def render_project(project: Path, *envs: str, check: bool = False) -> RenderResult:
    return render(
        project / SPEC_NAME,
        project / "rendered",
        list(envs) or None,
        check_only=check,
        display_name=SPEC_NAME,
    )


def drop_service(project: Path, name: str) -> None:
    """Remove a service (and references to it) from the example spec."""
    text = (project / SPEC_NAME).read_text()
    start = text.index(f"  - name: {name}\n")
    end = text.find("\n  - name:", start + 1)
    text = text[:start] + (text[end + 1 :] if end != -1 else "")
    text = text.replace(f", {name}]", "]").replace(f"[{name}, ", "[")
    (project / SPEC_NAME).write_text(text)


def test_first_render_writes_the_tree_and_a_manifest_of_it(project: Path) -> None:
    render_project(project)
    tree = project / "rendered"
    owned = json.loads((tree / layout.MANIFEST).read_text())
    files = snapshot(tree)
    del files[layout.MANIFEST]
    assert owned["spec"] == SPEC_NAME
    assert owned["files"] == {p: hashlib.sha256(d).hexdigest() for p, d in files.items()}
    assert {
        "base/resources/kustomization.yaml",
        "overlays/prod/foundation/kustomization.yaml",
        "overlays/prod/kustomization.yaml",
        "overlays/prod/values/kong.yaml",
    } <= owned["files"].keys()
    assert sorted(p.name for p in project.iterdir()) == ["platform.yaml", "rendered"]


def test_an_unchanged_render_touches_nothing(project: Path) -> None:
    render_project(project)
    tree = project / "rendered"
    before = {p: p.stat().st_mtime_ns for p in tree.rglob("*") if p.is_file()}
    result = render_project(project)
    assert result.plan is not None
    assert not (result.plan.changed or result.plan.added or result.plan.removed)
    assert {p: p.stat().st_mtime_ns for p in tree.rglob("*") if p.is_file()} == before


def test_stale_owned_files_are_pruned_with_their_empty_folders(project: Path) -> None:
    render_project(project)
    tree = project / "rendered"
    assert (tree / "overlays/prod/resources/services/console.yaml").exists()
    drop_service(project, "console")
    result = render_project(project)
    assert result.plan is not None
    removed = result.plan.removed
    assert "overlays/prod/resources/services/console.yaml" in removed
    assert not any(
        "console" in p for p in json.loads((tree / layout.MANIFEST).read_text())["files"]
    )
    assert not (tree / "overlays/prod/resources/services/console.yaml").exists()
    # a folder that held only pruned files is gone; one that holds others stays
    assert (tree / "overlays/prod/resources/services").is_dir()


def test_files_meshctl_did_not_write_are_left_alone(project: Path) -> None:
    render_project(project)
    tree = project / "rendered"
    (tree / "README.md").write_text("ours, not meshctl's\n")
    (tree / "overlays/dev/notes.txt").write_text("keep me\n")
    drop_service(project, "console")
    render_project(project)
    assert (tree / "README.md").read_text() == "ours, not meshctl's\n"
    assert (tree / "overlays/dev/notes.txt").read_text() == "keep me\n"


def test_a_foreign_file_in_the_way_is_an_error_and_nothing_changes(project: Path) -> None:
    tree = project / "rendered"
    (tree / "overlays/dev").mkdir(parents=True)
    (tree / "overlays/dev/kustomization.yaml").write_text("# hand-written\n")
    before = snapshot(project)
    run = meshctl("render", cwd=project)
    assert run.code == 1
    assert "did not write" in run.stderr
    assert "rendered/overlays/dev/kustomization.yaml" in run.stderr
    assert "Traceback" not in run.stderr
    assert snapshot(project) == before


def test_a_symlink_in_the_way_is_not_followed(project: Path, tmp_path: Path) -> None:
    render_project(project)
    tree = project / "rendered"
    target = tmp_path / "outside.yaml"
    target.write_text("outside\n")
    victim = tree / "overlays/dev/values/kong.yaml"
    victim.unlink()
    victim.symlink_to(target)
    run = meshctl("render", cwd=project)
    assert run.code == 1
    assert "not a regular file" in run.stderr
    assert target.read_text() == "outside\n"


def test_a_damaged_manifest_stops_the_render(project: Path) -> None:
    render_project(project)
    manifest = project / "rendered" / layout.MANIFEST
    manifest.write_text("{not json")
    before = snapshot(project)
    run = meshctl("render", cwd=project)
    assert run.code == 2
    assert "damaged" in run.stderr
    assert snapshot(project) == before


def test_check_reports_differences_and_writes_nothing(project: Path) -> None:
    run = meshctl("render", "--check", cwd=project)
    assert run.code == 1
    assert not (project / "rendered").exists()
    assert "missing rendered/base/resources/kustomization.yaml" in run.stdout

    assert meshctl("render", cwd=project).code == 0
    run = meshctl("render", "--check", cwd=project)
    assert (run.code, run.stdout.strip()) == (0, "rendered is up to date")

    edited = project / "rendered/overlays/prod/values/kong.yaml"
    edited.write_text(edited.read_text() + "extra: true\n")
    drop_service(project, "console")
    before = snapshot(project)
    run = meshctl("render", "--check", cwd=project)
    assert run.code == 1
    assert "changed rendered/overlays/prod/values/kong.yaml" in run.stdout
    assert "stale   rendered/overlays/prod/resources/services/console.yaml" in run.stdout
    assert snapshot(project) == before


def test_rendering_some_environments_leaves_the_others_alone(project: Path) -> None:
    render_project(project)
    tree = project / "rendered"
    prod_before = {k: v for k, v in snapshot(tree).items() if k.startswith("overlays/prod/")}
    drop_service(project, "console")
    result = render_project(project, "dev")
    assert result.environments == ["dev"]
    after = snapshot(tree)
    assert {k: v for k, v in after.items() if k.startswith("overlays/prod/")} == prod_before
    assert "overlays/dev/resources/services/console.yaml" not in after
    # the manifest still owns prod's files, so a full render later prunes them
    owned = json.loads(after[layout.MANIFEST])["files"]
    assert "overlays/prod/resources/services/console.yaml" in owned
    render_project(project)
    assert not (tree / "overlays/prod/resources/services/console.yaml").exists()


def test_an_environment_removed_from_the_spec_is_pruned(project: Path) -> None:
    render_project(project)
    spec = project / SPEC_NAME
    text = spec.read_text()
    start = text.index("    staging:\n")
    end = text.index("    prod:\n")
    spec.write_text(text[:start] + text[end:])
    render_project(project)
    assert not (project / "rendered/overlays/staging").exists()
    assert (project / "rendered/overlays/prod").is_dir()


def test_a_failure_while_staging_a_new_tree_leaves_nothing(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    original = Path.write_bytes

    def flaky(self: Path, data: bytes) -> int:  # type: ignore[override]
        calls["n"] += 1
        if calls["n"] == 10:
            raise OSError(28, "No space left on device", str(self))
        return original(self, data)

    monkeypatch.setattr(Path, "write_bytes", flaky)
    with pytest.raises(OutputError, match="no space left on device"):
        render_project(project)
    assert sorted(p.name for p in project.iterdir()) == ["platform.yaml"]


def test_a_failure_while_staging_an_update_leaves_the_old_tree(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    render_project(project)
    before = snapshot(project)
    drop_service(project, "console")
    spec_now = (project / SPEC_NAME).read_bytes()
    original = Path.write_bytes

    def failing(self: Path, data: bytes) -> int:  # type: ignore[override]
        if ".meshctl-staging-" in str(self):
            raise OSError(13, "Permission denied", str(self))
        return original(self, data)

    monkeypatch.setattr(Path, "write_bytes", failing)
    with pytest.raises(OutputError, match="permission denied"):
        render_project(project)
    after = snapshot(project)
    assert after.pop(SPEC_NAME) == spec_now
    before.pop(SPEC_NAME)
    assert after == before
    assert not list(project.rglob(".meshctl-staging-*"))


def test_output_path_that_is_a_file(project: Path) -> None:
    (project / "rendered").write_text("not a folder\n")
    run = meshctl("render", cwd=project)
    assert run.code == 2
    assert "is not a directory" in run.stderr


def test_interrupts_wait_until_the_renames_are_done() -> None:
    done = []
    with pytest.raises(KeyboardInterrupt), write._interrupts_held():
        os.kill(os.getpid(), signal.SIGINT)
        done.append("renamed")
    assert done == ["renamed"]
