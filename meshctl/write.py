"""Stage 6, write: put the rendered files on disk, safely.

- meshctl owns exactly the files listed in ``<out>/.meshctl-manifest.json``;
  it never overwrites or deletes anything else (a conflict is an error, and
  nothing is changed);
- owned files the render no longer produces are pruned (within the render's
  scope: a render of some environments leaves the others' files alone);
- everything is first written to a staging folder on the same filesystem, then
  moved into place with atomic renames while interrupts are held back, so a
  failed or interrupted render leaves the previous tree as it was.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import posixpath
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from msgspec import Struct, field

from meshctl import layout
from meshctl.errors import Differences, OutputConflict, OutputConflictError, OutputError

Files = dict[str, bytes]
Scope = Callable[[str], bool]


class WritePlan(Struct):
    changed: dict[str, bytes] = field(default_factory=dict)
    added: dict[str, bytes] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    conflicts: list[OutputConflict] = field(default_factory=list)
    manifest: bytes = b""
    manifest_changed: bool = False

    @property
    def differences(self) -> Differences:
        changed = sorted(self.changed)
        if self.manifest_changed and not (self.changed or self.added or self.removed):
            changed.append(layout.MANIFEST)
        return Differences(changed=changed, added=sorted(self.added), removed=sorted(self.removed))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_owned(out_dir: Path) -> dict[str, str]:
    """The files meshctl owns in out_dir (path -> sha256); empty when there is no manifest."""
    path = out_dir / layout.MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise OutputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        body = json.loads(raw)
        files = body["files"]
        if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()
        ):
            raise TypeError
    except (ValueError, KeyError, TypeError) as exc:
        raise OutputError(
            f"{path} is damaged; meshctl cannot tell which files it owns. Restore it from Git, "
            "or remove it and the files it listed"
        ) from exc
    return {k: v for k, v in files.items() if _safe_relative(k)}


def manifest_bytes(digests: dict[str, str], spec_name: str) -> bytes:
    """The ownership manifest: every file meshctl wrote, with its SHA-256."""
    body = {
        "generator": "meshctl",
        "spec": PurePosixPath(spec_name).name,
        "files": dict(sorted(digests.items())),
    }
    return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()


def _safe_relative(path: str) -> bool:
    parts = path.split("/")
    return bool(path) and not path.startswith("/") and ".." not in parts and "" not in parts


def _scan(out_dir: Path) -> dict[str, str]:
    """Everything under out_dir, once: relative path -> "file", "dir" or "other"
    (symlinks, devices, ...). Cheaper than asking the filesystem per file."""
    found: dict[str, str] = {}
    if not out_dir.is_dir():
        return found
    for root, dirs, names in os.walk(out_dir):
        base = Path(root).relative_to(out_dir)
        for name in (*dirs, *names):
            entry = Path(root) / name
            relative = (base / name).as_posix()
            if entry.is_symlink():
                found[relative] = "other"
            elif entry.is_dir():
                found[relative] = "dir"
            else:
                found[relative] = "file" if entry.is_file() else "other"
        dirs[:] = [d for d in dirs if found[(base / d).as_posix()] == "dir"]
    return found


def plan_write(out_dir: Path, files: Files, in_scope: Scope, spec_name: str) -> WritePlan:
    """Compare the rendered files with out_dir; decide what to write and remove."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir} exists and is not a directory")
    old = read_owned(out_dir)
    on_disk = _scan(out_dir)
    plan = WritePlan()
    # Owned files outside this render's scope (other environments) stay listed.
    listing = {p: d for p, d in old.items() if not in_scope(p) and on_disk.get(p) == "file"}
    for path, data in sorted(files.items()):
        conflict = _blocking_parent(on_disk, path)
        kind = on_disk.get(path)
        if conflict:
            plan.conflicts.append(OutputConflict(path, conflict))
        elif kind is None:
            plan.added[path] = data
        elif kind != "file":
            plan.conflicts.append(OutputConflict(path, "is not a regular file"))
        elif path not in old:
            plan.conflicts.append(OutputConflict(path, "exists, and meshctl did not write it"))
        elif (out_dir / path).read_bytes() != data:
            plan.changed[path] = data
    plan.removed = sorted(
        p for p in old if in_scope(p) and p not in files and on_disk.get(p) == "file"
    )
    listing.update({p: _sha(d) for p, d in files.items()})
    plan.manifest = manifest_bytes(listing, spec_name)
    manifest_path = out_dir / layout.MANIFEST
    current = manifest_path.read_bytes() if on_disk.get(layout.MANIFEST) == "file" else None
    plan.manifest_changed = current != plan.manifest
    return plan


def _blocking_parent(on_disk: dict[str, str], path: str) -> str | None:
    parts = path.split("/")[:-1]
    for end in range(1, len(parts) + 1):
        parent = "/".join(parts[:end])
        kind = on_disk.get(parent)
        if kind is not None and kind != "dir":
            return f"{parent} is in the way (not a directory)"
    return None


def check(out_dir: Path, files: Files, in_scope: Scope, spec_name: str) -> Differences:
    """What `render --check` reports; raises on conflicts, writes nothing."""
    plan = plan_write(out_dir, files, in_scope, spec_name)
    if plan.conflicts:
        raise OutputConflictError(str(out_dir), plan.conflicts)
    return plan.differences


def write(out_dir: Path, files: Files, in_scope: Scope, spec_name: str) -> WritePlan:
    """Write the tree; raise (changing nothing) on conflicts or an unwritable target."""
    plan = plan_write(out_dir, files, in_scope, spec_name)
    if plan.conflicts:
        raise OutputConflictError(str(out_dir), plan.conflicts)
    if not (plan.changed or plan.added or plan.removed or plan.manifest_changed):
        return plan
    try:
        if out_dir.exists():
            _update(out_dir, plan)
        else:
            _create(out_dir, plan)
    except OSError as exc:
        raise OutputError(_os_message(out_dir, exc)) from exc
    return plan


def _os_message(out_dir: Path, exc: OSError) -> str:
    reason = {
        errno.EACCES: "permission denied",
        errno.EROFS: "read-only file system",
        errno.ENOSPC: "no space left on device",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    where = exc.filename or out_dir
    return f"cannot write {out_dir}: {where}: {reason}"


def _stage(staging: Path, files: Files) -> None:
    made: set[str] = set()  # a tree has a few folders for many files
    for path, data in files.items():
        folder = posixpath.dirname(path)
        if folder not in made:
            (staging / folder).mkdir(parents=True, exist_ok=True)
            made.add(folder)
        (staging / path).write_bytes(data)


def _create(out_dir: Path, plan: WritePlan) -> None:
    parent = out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.meshctl-", dir=parent))
    try:
        _stage(staging, {**plan.added, layout.MANIFEST: plan.manifest})
        staging.chmod(0o777 & ~_umask())
        with _interrupts_held():
            staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _update(out_dir: Path, plan: WritePlan) -> None:
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "permission denied", str(out_dir))
    staging = Path(tempfile.mkdtemp(prefix=".meshctl-staging-", dir=out_dir))
    try:
        incoming = {**plan.changed, **plan.added}
        _stage(staging, incoming)
        # List new files as owned before they appear, so that even a hard kill
        # in the middle leaves nothing the next render would call foreign.
        interim = json.loads(plan.manifest)
        for path in plan.removed:
            interim["files"].setdefault(path, "")
        (staging / layout.MANIFEST).write_bytes(manifest_bytes(interim["files"], interim["spec"]))
        final_manifest = staging / (layout.MANIFEST + ".final")
        final_manifest.write_bytes(plan.manifest)
        with _interrupts_held():
            (staging / layout.MANIFEST).replace(out_dir / layout.MANIFEST)
            for path in sorted(incoming):
                (out_dir / path).parent.mkdir(parents=True, exist_ok=True)
                (staging / path).replace(out_dir / path)
            for path in plan.removed:
                (out_dir / path).unlink(missing_ok=True)
                _prune_empty_dirs(out_dir, Path(path).parent)
            final_manifest.replace(out_dir / layout.MANIFEST)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _prune_empty_dirs(out_dir: Path, relative: Path) -> None:
    while relative.parts:
        with contextlib.suppress(OSError):  # not empty: keep it
            (out_dir / relative).rmdir()
        relative = relative.parent


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Defer Ctrl-C (and SIGTERM) until the renames are done."""
    received: list[int] = []

    def hold(signum: int, _frame: object) -> None:
        received.append(signum)

    try:
        previous = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: signals cannot be deferred here
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received:
            signal.raise_signal(received[0])
