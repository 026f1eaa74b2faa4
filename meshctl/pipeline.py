"""The pipeline, end to end: load -> validate -> expand -> build -> emit -> write.

This is meshctl's library API; the CLI is a thin layer over these functions.
"""

from __future__ import annotations

from pathlib import Path

from msgspec import Struct

from meshctl import layout
from meshctl.build import build_environment
from meshctl.emit import Files, emit
from meshctl.errors import Differences
from meshctl.spec import Platform, load_platform, select_environments
from meshctl.write import Scope, WritePlan, check, write

__all__ = ["RenderResult", "load_platform", "render", "render_files"]


class RenderResult(Struct):
    platform: Platform
    environments: list[str]
    files: Files
    plan: WritePlan | None = None
    differences: Differences | None = None


def render_files(platform: Platform, environments: list[str]) -> Files:
    """Render in memory. base/ is computed from every environment, so it does not
    depend on which environments are selected."""
    builds = {env: build_environment(platform, env) for env in platform.environments}
    return emit(builds, environments, platform.source.name)


def scope(platform: Platform, environments: list[str]) -> Scope:
    """Which owned files a render is responsible for (and may prune)."""
    if set(environments) == set(platform.environments):
        return lambda path: True
    selected = set(environments)
    return lambda path: (
        (layout.environment_of(path) or "") in selected or layout.environment_of(path) is None
    )


def render(
    spec_path: Path,
    out_dir: Path,
    environments: list[str] | None = None,
    *,
    check_only: bool = False,
    display_name: str | None = None,
) -> RenderResult:
    """Load, validate, render and write (or, with check_only, compare) a spec."""
    platform = load_platform(spec_path, display_name)
    selected = select_environments(platform, environments)
    files = render_files(platform, selected)
    result = RenderResult(platform, selected, files)
    in_scope = scope(platform, selected)
    if check_only:
        result.differences = check(out_dir, files, in_scope, platform.source.name)
    else:
        result.plan = write(out_dir, files, in_scope, platform.source.name)
    return result
