"""Environment profiles: built-in ones shipped with meshctl, and a project's own.

A profile is a named layer of settings that may extend another; the chain
always ends at the built-in ``default``, which holds every setting. A project
adds profiles as ``profiles/<name>.yaml`` beside its spec.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from msgspec import Struct

from meshctl.errors import Problem, SpecError
from meshctl.inline_secrets import inline_secret_problems
from meshctl.load import Source, read_source
from meshctl.models import ProfileDocument
from meshctl.resources import profiles_dir
from meshctl.validate import suggestion, validate_document

ROOT_PROFILE = "default"
BUILTIN_PREFIX = "meshctl:profiles/"


class Profile(Struct, frozen=True):
    name: str
    description: str
    extends: str | None
    production: bool | None
    settings: dict[str, Any]
    source: Source
    builtin: bool

    @property
    def origin(self) -> str:
        return "built-in" if self.builtin else "project"


class ProfileSet:
    """The profiles available to one spec, by name."""

    def __init__(self, profiles: dict[str, Profile]) -> None:
        self._profiles = profiles

    def names(self) -> list[str]:
        return sorted(self._profiles)

    def __contains__(self, name: object) -> bool:
        return name in self._profiles

    def get(self, name: str) -> Profile:
        return self._profiles[name]

    def chain(self, name: str) -> list[Profile]:
        """The profile and those it extends, lowest (default) first."""
        chain: list[Profile] = []
        current: str | None = name
        while current is not None:
            profile = self._profiles[current]
            chain.append(profile)
            current = profile.extends
        return list(reversed(chain))

    def is_production(self, name: str) -> bool:
        for profile in reversed(self.chain(name)):
            if profile.production is not None:
                return profile.production
        return False


def load_profiles(project_dir: Path | None = None) -> ProfileSet:
    """Built-in profiles plus `project_dir/profiles/*.yaml`; every problem at once."""
    problems: list[Problem] = []
    profiles: dict[str, Profile] = {}
    broken: set[str] = set()  # profiles with problems of their own
    builtin_dir = profiles_dir()
    for path in sorted(builtin_dir.glob("*.yaml")):
        _add(profiles, problems, broken, path, BUILTIN_PREFIX + path.name, builtin=True)
    if project_dir is not None:
        local_dir = project_dir / "profiles"
        if local_dir.is_dir() and local_dir.resolve() != builtin_dir.resolve():
            for path in sorted(local_dir.glob("*.yaml")):
                if _same_as_builtin(path, builtin_dir):
                    # meshctl's own checkout (`pip install .` in it), or a
                    # verbatim copy: it is the built-in, not a second profile.
                    continue
                _add(profiles, problems, broken, path, str(path), builtin=False)
    problems.extend(_chain_problems(profiles, broken))
    if problems:
        raise SpecError(problems)
    return ProfileSet(profiles)


def _same_as_builtin(path: Path, builtin_dir: Path) -> bool:
    builtin = builtin_dir / path.name
    try:
        return builtin.is_file() and builtin.read_bytes() == path.read_bytes()
    except OSError:
        return False


def _add(
    profiles: dict[str, Profile],
    problems: list[Problem],
    broken: set[str],
    path: Path,
    name: str,
    *,
    builtin: bool,
) -> None:
    try:
        source = read_source(path, name)
    except SpecError as exc:
        problems.extend(exc.problems)
        broken.add(path.stem)
        return
    # Built-in profiles are meshctl's own data, validated by its tests.
    if not builtin:
        # A secret is reported alone, as in a spec (see load_platform).
        found = (
            inline_secret_problems(source)
            or validate_document(source, ProfileDocument, "profile.schema.json")[1]
        )
    if not builtin and found:
        problems.extend(found)
        broken.add(path.stem)
        return
    data: dict[str, Any] = source.data  # type: ignore[assignment]
    profile_name = data["name"]
    if profile_name != path.stem:
        problems.append(
            Problem(
                source.location(("name",)),
                "name",
                f"'{profile_name}' does not match the file name; expected '{path.stem}'",
                rule="profile",
            )
        )
        return
    if profile_name in profiles:
        problems.append(
            Problem(
                source.location(("name",)),
                "name",
                f"profile '{profile_name}' is built in; give yours another name and "
                f"'extends: {profile_name}'",
                rule="profile",
            )
        )
        return
    profiles[profile_name] = Profile(
        name=profile_name,
        description=data["description"],
        extends=data.get("extends"),
        production=data.get("production"),
        settings=data.get("settings") or {},
        source=source,
        builtin=builtin,
    )


def _chain_problems(profiles: dict[str, Profile], broken: set[str]) -> list[Problem]:
    problems = []
    for profile in profiles.values():
        if profile.name == ROOT_PROFILE:
            if profile.extends is not None:
                problems.append(_problem(profile, "the default profile cannot extend another"))
            continue
        if profile.extends is None:
            problems.append(
                _problem(
                    profile,
                    f"missing 'extends'; every profile builds on '{ROOT_PROFILE}' "
                    "or another profile",
                )
            )
            continue
        seen = [profile.name]
        current: str | None = profile.extends
        while current is not None:
            if current in broken:
                break  # already reported where it is broken
            if current not in profiles:
                problems.append(
                    _problem(
                        profile,
                        f"extends unknown profile '{current}'{suggestion(current, profiles)}",
                    )
                )
                break
            if current in seen:
                cycle = " -> ".join([*seen, current])
                problems.append(
                    _problem(profile, f"profiles extend each other in a cycle: {cycle}")
                )
                break
            seen.append(current)
            current = profiles[current].extends
    return problems


def _problem(profile: Profile, message: str) -> Problem:
    data = profile.source.data
    path = ("extends",) if isinstance(data, dict) and "extends" in data else ("name",)
    return Problem(profile.source.location(path), path[0], message, rule="profile")
