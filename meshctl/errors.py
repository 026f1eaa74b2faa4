"""Typed errors and the problems they carry.

Every error a user can cause is a ``MeshctlError``; the CLI maps its kind to an
exit code (``exit_code``) and prints it. Problems are data: a location (file,
line, column), the dotted path in the spec, and a message. Formatting them is
the reporters' job.
"""

from __future__ import annotations

from msgspec import Struct, field

EXIT_OK = 0
EXIT_INVALID = 1  # invalid spec, policy violation, differences found
EXIT_USAGE = 2  # usage or environment error
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


class Location(Struct, frozen=True, order=True):
    """A place in a source file; line and column are 1-based."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


class Problem(Struct, frozen=True):
    """One thing wrong with the input, with where it is and what was expected."""

    location: Location
    path: str
    message: str
    rule: str = "schema"

    def sort_key(self) -> tuple[str, int, int, str, str]:
        loc = self.location
        return (loc.file, loc.line, loc.column, self.path, self.message)

    def __str__(self) -> str:
        where = f"{self.location}: "
        return f"{where}{self.path}: {self.message}" if self.path else f"{where}{self.message}"


class MeshctlError(Exception):
    """Root of every error meshctl reports to a user."""

    exit_code = EXIT_INTERNAL


class SpecError(MeshctlError):
    """The spec (or a profile it uses) is invalid; carries every problem found."""

    exit_code = EXIT_INVALID

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=Problem.sort_key)
        super().__init__("\n".join(str(p) for p in self.problems))


class UsageError(MeshctlError):
    """A bad argument or a missing input file: the command cannot start."""

    exit_code = EXIT_USAGE


class ProfileError(UsageError):
    """An unknown profile name asked for on the command line."""


class RenderError(MeshctlError):
    """A template failed; always a meshctl bug or a broken custom template."""

    exit_code = EXIT_INTERNAL


class OutputConflict(Struct):
    path: str
    reason: str


class OutputError(MeshctlError):
    """The output directory cannot be read or written; nothing was changed."""

    exit_code = EXIT_USAGE


class OutputConflictError(MeshctlError):
    """Files meshctl would have to overwrite or delete but does not own."""

    exit_code = EXIT_INVALID

    def __init__(self, directory: str, conflicts: list[OutputConflict]) -> None:
        self.directory = directory
        self.conflicts = conflicts
        details = "".join(f"\n  {directory}/{c.path}: {c.reason}" for c in conflicts)
        super().__init__(
            f"refusing to write {directory}: {len(conflicts)} file(s) in the way that meshctl "
            f"did not write; nothing was changed{details}"
        )


class Differences(Struct):
    """What `render --check` found: files that would be written or removed."""

    changed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.changed or self.added or self.removed)
