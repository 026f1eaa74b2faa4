"""Stage 6 (the other branch), diff: what a render would change, per environment
and per resource, with the changes a reviewer must not miss flagged.

Two trees are compared: the render of the spec (in memory) against the tree on
disk, or against the render of the spec as it was at a Git revision (rendered
by this meshctl, so only spec changes show). Nothing is written.

The comparison is semantic. Each environment is what ``kubectl kustomize
overlays/<env>`` would build: the files its kustomizations reach (``base/``
included) and its Helm values files. Resources are matched by identity
(apiVersion, kind, namespace, name) wherever they live, so a resource that
moved between files or between ``base/`` and an overlay is not a change, and
comments, key order and whitespace never are. Files whose bytes are the same on
both sides are not parsed at all.

A Secret's ``data``/``stringData`` values never leave this module: every report
carries the redaction marker in their place.
"""

from __future__ import annotations

import difflib
import os
import posixpath
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from msgspec import Struct
from msgspec.structs import replace

from meshctl import layout, yamlio
from meshctl.diff_model import (
    ABSENT,
    REDACTED,
    REDACTED_CHANGED,
    RISKS,
    Action,
    Against,
    Change,
    DiffReport,
    EnvironmentDiff,
    FieldChange,
    FieldPath,
    Risk,
    Target,
    field_changes,
    format_field_path,
)
from meshctl.diff_risks import PRODUCTION_NAMES, Context, assess
from meshctl.errors import OutputError, UsageError

__all__ = [
    "ABSENT",
    "REDACTED",
    "RISKS",
    "Against",
    "Change",
    "DiffReport",
    "DirectoryTree",
    "EnvironmentDiff",
    "FieldChange",
    "MemoryTree",
    "Risk",
    "Target",
    "compare",
    "diff_directory",
    "diff_revision",
]

# --------------------------------------------------------------------------
# Trees: the files of a render, in memory or on disk.


class MemoryTree:
    """A rendered tree held in memory (path -> bytes)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self._parsed: dict[str, list[Any]] = {}

    def __contains__(self, path: str) -> bool:
        return path in self.files

    def paths(self) -> Iterator[str]:
        return iter(self.files)

    def read(self, path: str) -> bytes | None:
        return self.files.get(path)

    def documents(self, path: str) -> list[Any]:
        """The YAML documents of a file (parsed once)."""
        parsed = self._parsed.get(path)
        if parsed is None:
            data = self.read(path)
            parsed = self._parsed[path] = [] if data is None else self._parse(path, data)
        return parsed

    def _parse(self, path: str, data: bytes) -> list[Any]:
        try:
            return [d for d in yamlio.load_output_all(data.decode("utf-8")) if d is not None]
        except (yamlio.YAMLError, UnicodeDecodeError, RecursionError) as exc:
            raise OutputError(f"{self.describe(path)}: not a readable YAML file: {exc}") from exc

    def describe(self, path: str) -> str:
        return path


class DirectoryTree(MemoryTree):
    """A rendered tree on disk: regular files only (symlinks are never followed),
    each read at most once and only when a comparison needs it."""

    def __init__(self, root: Path) -> None:
        if not root.exists():
            raise UsageError(
                f"{root}: no such directory; render it first (`meshctl render -o {root}`), "
                "or compare with a Git revision (--base REF)"
            )
        if not root.is_dir():
            raise UsageError(f"{root} exists and is not a directory")
        super().__init__({})
        self.root = root
        self._known: set[str] = set()
        for directory, dirs, names in os.walk(root):
            relative = Path(directory).relative_to(root).as_posix()
            prefix = "" if relative == "." else f"{relative}/"
            dirs[:] = [d for d in dirs if not (Path(directory) / d).is_symlink()]
            for name in names:
                entry = Path(directory) / name
                if entry.is_file() and not entry.is_symlink():
                    self._known.add(prefix + name)

    def __contains__(self, path: str) -> bool:
        return path in self._known

    def paths(self) -> Iterator[str]:
        return iter(self._known)

    def read(self, path: str) -> bytes | None:
        if path not in self._known:
            return None
        data = self.files.get(path)
        if data is None:
            try:
                data = self.files[path] = (self.root / path).read_bytes()
            except OSError as exc:
                raise OutputError(
                    f"{self.describe(path)}: cannot read: {exc.strerror or exc}"
                ) from exc
        return data

    def describe(self, path: str) -> str:
        return str(self.root / path)


def tree_environments(tree: MemoryTree) -> list[str]:
    """Environments that have an overlay in the tree."""
    found = set()
    for path in tree.paths():
        parts = path.split("/")
        if len(parts) == 3 and parts[0] == layout.OVERLAYS and parts[2] == layout.KUSTOMIZATION:
            found.add(parts[1])
    return sorted(found)


class _View(Struct):
    """What one environment is made of in a tree."""

    resources: list[str]  # files its kustomizations reach, in order
    values: dict[str, str]  # release -> values file


def _view(tree: MemoryTree, env: str) -> _View:
    files: dict[str, None] = {}  # ordered, unique
    seen: set[str] = set()

    def visit(directory: str) -> None:
        if directory in seen:
            return
        seen.add(directory)
        documents = tree.documents(f"{directory}/{layout.KUSTOMIZATION}")
        body = documents[0] if documents and isinstance(documents[0], dict) else {}
        entries = body.get("resources")
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, str) or "://" in entry:
                continue
            target = posixpath.normpath(posixpath.join(directory, entry))
            if target == ".." or target.startswith("../"):
                continue
            if f"{target}/{layout.KUSTOMIZATION}" in tree:
                visit(target)
            elif target in tree:
                files[target] = None

    overlay = layout.overlay_dir(env)
    if f"{overlay}/{layout.KUSTOMIZATION}" in tree:
        visit(overlay)
    prefix = f"{overlay}/values/"
    values = {
        path[len(prefix) : -len(".yaml")]: path
        for path in tree.paths()
        if path.startswith(prefix)
        and path.endswith(".yaml")
        and "/" not in path[len(prefix) :]
        # Flux: the kustomization that turns the values files into ConfigMaps.
        and path != f"{prefix}{layout.KUSTOMIZATION}"
    }
    return _View(list(files), values)


def _identity(document: Any, path: str, index: int) -> Target:
    if not isinstance(document, dict):
        return Target("resource", "", "", f"{path}#{index}")
    metadata = document.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    return Target(
        "resource",
        str(document.get("kind") or ""),
        str(metadata.get("namespace") or ""),
        str(metadata.get("name") or f"{path}#{index}"),
        str(document.get("apiVersion") or ""),
    )


def _resources(tree: MemoryTree, paths: list[str], skip: set[str]) -> dict[Target, tuple[Any, str]]:
    found: dict[Target, tuple[Any, str]] = {}
    for path in paths:
        if path in skip:
            continue
        for index, document in enumerate(tree.documents(path)):
            found[_identity(document, path, index)] = (document, path)
    return found


# --------------------------------------------------------------------------
# Comparing.


def compare(
    old: MemoryTree,
    new: MemoryTree,
    environments: list[str],
    production: Callable[[str], bool],
) -> list[EnvironmentDiff]:
    """Per environment, every resource and values file that differs, with risks."""
    return [_compare_environment(old, new, env, production(env)) for env in environments]


def _compare_environment(
    old: MemoryTree, new: MemoryTree, env: str, production: bool
) -> EnvironmentDiff:
    result = EnvironmentDiff(env, production)
    before, after = _view(old, env), _view(new, env)
    same = {p for p in set(before.resources) & set(after.resources) if old.read(p) == new.read(p)}
    old_resources = _resources(old, before.resources, same)
    new_resources = _resources(new, after.resources, same)
    context = Context(env, production, lambda: _resources(old, before.resources, set()))
    for target in sorted(old_resources.keys() | new_resources.keys()):
        old_body, old_file = old_resources.get(target, (ABSENT, None))
        new_body, new_file = new_resources.get(target, (ABSENT, None))
        if old_body != new_body:
            result.changes.append(
                _change(context, target, (old_body, old_file), (new_body, new_file))
            )
    for release in sorted(before.values.keys() | after.values.keys()):
        old_file, new_file = before.values.get(release), after.values.get(release)
        if old_file and new_file and old.read(old_file) == new.read(new_file):
            continue
        old_values = _values(old, old_file)
        new_values = _values(new, new_file)
        if old_values != new_values:
            target = Target("values", "", "", release)
            result.changes.append(
                _change(context, target, (old_values, old_file), (new_values, new_file))
            )
    result.changes.sort(key=lambda c: (not c.risky, c.target.type, c.target))
    return result


def _values(tree: MemoryTree, path: str | None) -> Any:
    if path is None:
        return ABSENT
    documents = tree.documents(path)
    return documents[0] if documents else {}


def _change(
    context: Context, target: Target, before: tuple[Any, str | None], after: tuple[Any, str | None]
) -> Change:
    (old, old_file), (new, new_file) = before, after
    action: Action = "added" if old is ABSENT else "removed" if new is ABSENT else "changed"
    raw = field_changes(old, new) if action == "changed" else []
    secret = target.type == "resource" and _is_secret(old if new is ABSENT else new)
    change = Change(
        context.environment,
        action,
        target,
        old_file,
        new_file,
        fields=[
            FieldChange(
                format_field_path(p),
                _redact_field(p, o) if secret else o,
                _redact_field(p, n) if secret else n,
            )
            for p, o, n in raw
        ],
    )
    change.risks = assess(context, change, old, new, raw)
    shown_old, shown_new = _redact_bodies(old, new) if secret else (old, new)
    change.unified = _unified(shown_old, shown_new, old_file, new_file)
    return change


def _unified(old: Any, new: Any, old_file: str | None, new_file: str | None) -> str:
    before = [] if old is ABSENT else yamlio.dump(old).splitlines(keepends=True)
    after = [] if new is ABSENT else yamlio.dump(new).splitlines(keepends=True)
    lines = difflib.unified_diff(
        before,
        after,
        f"a/{old_file}" if old_file else "/dev/null",
        f"b/{new_file}" if new_file else "/dev/null",
        n=3,
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


# --------------------------------------------------------------------------
# Secrets: values never shown.

_SECRET_KEYS = ("data", "stringData")


def _is_secret(body: Any) -> bool:
    return (
        isinstance(body, dict)
        and body.get("kind") == "Secret"
        and str(body.get("apiVersion", "v1")) == "v1"
    )


def _redact_field(path: FieldPath, value: Any) -> Any:
    if value is ABSENT or not path or path[0] not in _SECRET_KEYS:
        return value
    if len(path) == 1 and isinstance(value, dict):
        return dict.fromkeys(value, REDACTED)
    return REDACTED


def _redact_bodies(old: Any, new: Any) -> tuple[Any, Any]:
    """Both sides with every Secret value replaced; a value that differs shows
    as changed on the new side (so the unified diff still shows which key)."""

    def values(body: Any, key: str) -> dict[Any, Any]:
        section = body.get(key) if isinstance(body, dict) else None
        return section if isinstance(section, dict) else {}

    shown_old = dict(old) if isinstance(old, dict) else old
    shown_new = dict(new) if isinstance(new, dict) else new
    for key in _SECRET_KEYS:
        before, after = values(old, key), values(new, key)
        if isinstance(shown_old, dict) and key in shown_old:
            shown_old[key] = dict.fromkeys(before, REDACTED) if before else REDACTED
        if isinstance(shown_new, dict) and key in shown_new:
            shown_new[key] = (
                {
                    k: REDACTED if k in before and before[k] == v else REDACTED_CHANGED
                    for k, v in after.items()
                }
                if after
                else REDACTED
            )
    return shown_old, shown_new


# --------------------------------------------------------------------------
# The commands' core.


def _production(platforms: list[Any]) -> Callable[[str], bool]:
    def production(env: str) -> bool:
        for platform in platforms:
            if env in platform.environments:
                return bool(platform.environments[env].production)
        return env in PRODUCTION_NAMES

    return production


def diff_directory(
    spec_path: Path,
    out_dir: Path,
    environments: list[str] | None = None,
    *,
    display_name: str | None = None,
) -> DiffReport:
    """Compare the spec's render with the tree in out_dir (which must exist)."""
    from meshctl.pipeline import load_platform, render_files
    from meshctl.spec import select_environments

    platform = load_platform(spec_path, display_name)
    selected = select_environments(platform, environments)
    disk = DirectoryTree(out_dir)
    rendered = MemoryTree(render_files(platform, selected))
    envs = list(selected)
    if not environments:  # environments only on disk: a render removes them
        envs += [e for e in tree_environments(disk) if e not in envs]
    result = compare(disk, rendered, envs, _production([platform]))
    return DiffReport(platform.source.name, Against("directory", str(out_dir)), result)


def diff_revision(
    spec_path: Path,
    ref: str,
    environments: list[str] | None = None,
    *,
    display_name: str | None = None,
) -> DiffReport:
    """Compare the spec's render with the render of the spec at Git revision ref."""
    from meshctl.pipeline import load_platform, render_files
    from meshctl.spec import select_environments

    platform = load_platform(spec_path, display_name)
    selected = select_environments(platform, environments)
    repo = _GitSpec.locate(spec_path, ref)
    with tempfile.TemporaryDirectory(prefix="meshctl-diff-") as temp:
        old_spec = repo.export(Path(temp))
        old_platform = load_platform(old_spec, f"{ref}:{repo.path}")
        # The same header as the new render, so unchanged files are byte-identical.
        old_platform = replace(
            old_platform, source=replace(old_platform.source, name=platform.source.name)
        )
        envs = list(selected)
        if not environments:
            envs += [e for e in old_platform.environments if e not in envs]
        old_envs = [e for e in envs if e in old_platform.environments]
        old_tree = MemoryTree(render_files(old_platform, old_envs))
    new_tree = MemoryTree(render_files(platform, selected))
    result = compare(old_tree, new_tree, envs, _production([platform, old_platform]))
    against = Against("git", repo.path, ref, repo.commit)
    return DiffReport(platform.source.name, against, result)


class _GitSpec(Struct):
    """A spec file (and its project's profiles/) as committed at a revision."""

    top: Path
    path: str  # the spec, relative to the repository's top
    ref: str
    commit: str

    @classmethod
    def locate(cls, spec_path: Path, ref: str) -> _GitSpec:
        if not ref or ref.startswith("-"):
            raise UsageError(f"--base: '{ref}' is not a Git revision")
        folder = spec_path.resolve().parent
        top = _git(
            ["rev-parse", "--show-toplevel"],
            folder,
            f"{folder} is not in a Git repository (--base needs one)",
        )
        commit = _git(
            ["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
            folder,
            f"--base: unknown Git revision '{ref}'",
        )
        try:
            relative = spec_path.resolve().relative_to(Path(top).resolve()).as_posix()
        except ValueError:
            raise UsageError(f"{spec_path} is not inside the Git repository at {top}") from None
        return cls(Path(top), relative, ref, commit)

    def export(self, into: Path) -> Path:
        """Write the spec and its profiles/ as they were into `into`; return the spec."""
        spec = into / posixpath.basename(self.path)
        spec.write_bytes(
            self._blob(self.path, f"--base: {self.path} is not in the repository at {self.ref}")
        )
        folder = posixpath.dirname(self.path)
        profiles = posixpath.join(folder, "profiles") if folder else "profiles"
        listing = _git(
            ["ls-tree", "-z", self.commit, "--", f"{profiles}/"], self.top, None, text=False
        )
        for entry in listing.split("\0"):
            meta, _, name = entry.partition("\t")
            if meta.split(" ")[1:2] == ["blob"] and name.endswith(".yaml"):
                target = into / "profiles" / posixpath.basename(name)
                target.parent.mkdir(exist_ok=True)
                target.write_bytes(self._blob(name, f"--base: cannot read {name} at {self.ref}"))
        return spec

    def _blob(self, path: str, failure: str) -> bytes:
        return _git_bytes(["cat-file", "blob", f"{self.commit}:{path}"], self.top, failure)


def _git_bytes(args: list[str], cwd: Path, failure: str | None) -> bytes:
    git = shutil.which("git")
    if git is None:
        raise UsageError("--base needs git, and git is not on PATH")
    try:
        result = subprocess.run(
            [git, "-c", "core.quotepath=off", *args],
            cwd=cwd,
            capture_output=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except OSError as exc:
        raise UsageError(f"cannot run git: {exc.strerror or exc}") from exc
    if result.returncode != 0:
        if failure is None:
            return b""
        # Say why when git's reason is not the one we name (say, a repository
        # owned by another user, which git refuses to read).
        detail = result.stderr.decode("utf-8", errors="replace").strip().splitlines()
        if detail and "not a git repository" not in detail[0].lower() and args[0] == "rev-parse":
            failure += f" (git: {detail[0].removeprefix('fatal: ')})"
        raise UsageError(failure)
    return result.stdout


def _git(args: list[str], cwd: Path, failure: str | None, *, text: bool = True) -> str:
    output = _git_bytes(args, cwd, failure).decode("utf-8", errors="replace")
    return output.strip() if text else output
