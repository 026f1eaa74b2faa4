"""postgres: being built (issue 3)."""

from __future__ import annotations

from meshctl.build.context import BuildContext, ComponentOutput


def build(ctx: BuildContext) -> ComponentOutput:
    return ComponentOutput()
