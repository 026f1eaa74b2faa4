"""The command line: parse arguments, call the core, report, map errors to exit codes.

Exit codes: 0 success; 1 invalid spec, policy violation or differences found;
2 usage or environment error; 3 internal error (traceback with --debug);
130 interrupted.
"""

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from meshctl import __version__
from meshctl.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_USAGE,
    MeshctlError,
    SpecError,
    UsageError,
)

if TYPE_CHECKING:
    from meshctl.profiles import ProfileSet

app = typer.Typer(
    name="meshctl",
    help="Validate a platform.yaml and render it into Helm values, Kustomize overlays "
    "and Argo CD objects.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
profiles_app = typer.Typer(
    help="List, show and compare environment profiles.", no_args_is_help=True
)
app.add_typer(profiles_app, name="profiles")

DEFAULT_SPEC = Path("platform.yaml")
_state = {"debug": False}


class Format(StrEnum):
    text = "text"
    json = "json"
    github = "github"


SpecArg = Annotated[Path, typer.Argument(help="The platform spec.", show_default=True)]
SpecOption = Annotated[Path, typer.Option("--spec", "-f", help="The platform spec.")]
EnvOption = Annotated[
    list[str] | None,
    typer.Option("--env", "-e", help="Environment (repeatable); default: all of them."),
]


def _version(value: bool) -> None:
    if value:
        print(f"meshctl {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks of internal errors.")
    ] = False,
    version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = None,
) -> None:
    _state["debug"] = debug


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Where to write platform.yaml.")] = Path(),
) -> None:
    """Write a commented example platform.yaml (never overwrites one)."""
    from meshctl.resources import example_spec

    target = directory / DEFAULT_SPEC.name
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with target.open("xb") as handle:
            handle.write(example_spec().read_bytes())
    except FileExistsError:
        raise UsageError(f"{target} already exists; meshctl init never overwrites a spec") from None
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from exc
    print(f"wrote {target}; next: meshctl validate {target}, then meshctl render {target}")


@app.command()
def validate(
    spec: SpecArg = DEFAULT_SPEC,
    format: Annotated[Format, typer.Option("--format", help="Report format.")] = Format.text,
) -> None:
    """Check the spec and the profiles it uses; report every problem at once."""
    from meshctl import reporters
    from meshctl.spec import load_platform

    try:
        platform = load_platform(spec, str(spec))
    except SpecError as exc:
        problems = exc.problems
        if format is Format.json:
            print(reporters.problems_json(problems, str(spec)))
        elif format is Format.github:
            print(reporters.problems_github(problems))
        else:
            reporters.problems_text(reporters.console(), problems)
        raise typer.Exit(EXIT_INVALID) from None
    if format is Format.json:
        print(reporters.problems_json([], str(spec)))
    elif format is Format.text:
        envs = ", ".join(platform.environments)
        count = len(platform.spec.services)
        print(f"{spec} is valid: {count} service{'' if count == 1 else 's'}, environments {envs}")


@app.command()
def render(
    spec: SpecArg = DEFAULT_SPEC,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output directory.")] = Path(
        "rendered"
    ),
    env: EnvOption = None,
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if the tree on disk differs.")
    ] = False,
) -> None:
    """Render the GitOps tree: base/, overlays/<env>/ with values and Argo CD objects."""
    from meshctl import pipeline, reporters

    result = pipeline.render(spec, output, env, check_only=check, display_name=str(spec))
    if check:
        assert result.differences is not None
        if result.differences:
            reporters.differences(reporters.console(), str(output), result.differences)
            raise typer.Exit(EXIT_INVALID)
        print(f"{output} is up to date")
        return
    assert result.plan is not None
    plan = result.plan
    reporters.render_summary(
        str(output),
        result.environments,
        written=len(plan.changed) + len(plan.added),
        removed=len(plan.removed),
        total=len(result.files),
    )


class DiffFormat(StrEnum):
    text = "text"
    markdown = "markdown"
    json = "json"


@app.command()
def diff(
    spec: SpecArg = DEFAULT_SPEC,
    *,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="The rendered tree to compare with [default: rendered]."
        ),
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(
            "--base", help="Compare with the spec as it was at this Git revision instead."
        ),
    ] = None,
    env: EnvOption = None,
    format: Annotated[
        DiffFormat, typer.Option("--format", help="Report format.")
    ] = DiffFormat.text,
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="Exit 1 when there are differences.")
    ] = False,
    unified: Annotated[
        bool, typer.Option("--unified", help="text: add each resource's text diff.")
    ] = False,
) -> None:
    """Show what a render would change, per environment and resource; risky changes first."""
    from meshctl import diff_report
    from meshctl.diff import diff_directory, diff_revision

    if base is not None and output is not None:
        raise UsageError("--base compares two renders of the spec; -o/--output is not used with it")
    if base is not None:
        report = diff_revision(spec, base, env, display_name=str(spec))
    else:
        report = diff_directory(spec, output or Path("rendered"), env, display_name=str(spec))
    if format is DiffFormat.json:
        print(diff_report.to_json(report))
    elif format is DiffFormat.markdown:
        sys.stdout.write(diff_report.markdown(report))
    elif not report.differences:
        print(diff_report.no_differences(report))
    elif sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
        from rich.table import Table
        from rich.text import Text

        from meshctl import reporters

        text = diff_report.text_report(report, unified=unified)
        out = reporters.console()
        out.print(Text(text.title, style="bold"))
        table = Table(header_style="bold")
        for index, column in enumerate(text.header):
            table.add_column(column, justify="left" if index < 2 else "right")
        for row in text.rows:
            table.add_row(*(Text(cell) for cell in row))
        out.print(table)
        for line in text.body:
            out.print(Text.assemble(*line))
    else:
        sys.stdout.write(diff_report.plain_text(diff_report.text_report(report, unified=unified)))
    if exit_code and report.differences:
        raise typer.Exit(EXIT_INVALID)


@app.command()
def explain(
    path: Annotated[str, typer.Argument(help="A setting, e.g. gateway.replicas.")],
    env: EnvOption = None,
    spec: SpecOption = DEFAULT_SPEC,
) -> None:
    """Show a setting's effective value, where it came from, and what it overrode."""
    from meshctl import reporters
    from meshctl.explain import explain as explain_setting
    from meshctl.spec import load_platform, select_environments

    platform = load_platform(spec, str(spec))
    explanations = explain_setting(platform, path, select_environments(platform, env))
    out = reporters.console()
    for index, item in enumerate(explanations):
        if index:
            out.print()
        reporters.explanation(out, item)


def _profiles(spec: Path) -> "ProfileSet":
    from meshctl.profiles import load_profiles

    return load_profiles(spec.parent if spec.exists() else Path.cwd())


def _profile_name(profiles: "ProfileSet", name: str) -> str:
    from meshctl.errors import ProfileError
    from meshctl.validate import suggestion

    if name not in profiles:
        raise ProfileError(
            f"unknown profile '{name}'{suggestion(name, profiles.names())} "
            f"(available: {', '.join(profiles.names())})"
        )
    return name


@profiles_app.command("list")
def profiles_list(spec: SpecOption = DEFAULT_SPEC) -> None:
    """The built-in profiles and the project's own (profiles/ beside the spec)."""
    from meshctl import reporters

    profiles = _profiles(spec)
    rows = []
    for name in profiles.names():
        profile = profiles.get(name)
        rows.append(
            {
                "name": name,
                "extends": profile.extends or "-",
                "production": "yes" if profiles.is_production(name) else "no",
                "origin": profile.origin,
                "description": profile.description,
            }
        )
    reporters.profile_table(reporters.console(), rows)


@profiles_app.command("show")
def profiles_show(
    name: Annotated[str, typer.Argument(help="Profile name.")],
    spec: SpecOption = DEFAULT_SPEC,
) -> None:
    """The settings an environment gets from a profile (its chain merged)."""
    from meshctl import yamlio
    from meshctl.explain import profile_expansion

    profiles = _profiles(spec)
    expansion = profile_expansion(profiles, _profile_name(profiles, name))
    sys.stdout.write(yamlio.dump(expansion.settings))


@profiles_app.command("diff")
def profiles_diff(
    first: Annotated[str, typer.Argument(help="Profile A.")],
    second: Annotated[str, typer.Argument(help="Profile B.")],
    spec: SpecOption = DEFAULT_SPEC,
) -> None:
    """Settings whose values differ between two profiles."""
    from meshctl import reporters
    from meshctl.explain import diff_settings, profile_expansion
    from meshctl.paths import format_path

    profiles = _profiles(spec)
    a = profile_expansion(profiles, _profile_name(profiles, first))
    b = profile_expansion(profiles, _profile_name(profiles, second))
    rows = [
        (format_path(p), left, right) for p, left, right in diff_settings(a.settings, b.settings)
    ]
    reporters.settings_diff(reporters.console(), first, second, rows)


class SchemaFormat(StrEnum):
    json = "json"
    markdown = "markdown"


@app.command()
def schema(
    profile: Annotated[
        bool, typer.Option("--profile", help="Print the schema of profile files instead.")
    ] = False,
    format: Annotated[
        SchemaFormat,
        typer.Option("--format", help="json: the JSON Schema; markdown: the spec reference."),
    ] = SchemaFormat.json,
) -> None:
    """Print the JSON Schema of platform.yaml (for editors and CI), or its reference."""
    if format is SchemaFormat.markdown:
        if profile:
            raise UsageError("--format markdown documents platform.yaml only")
        from meshctl.reference import markdown

        sys.stdout.write(markdown())
        return
    from meshctl.schema import schema_text

    sys.stdout.write(schema_text("profile.schema.json" if profile else "platform.schema.json"))


def _fail(code: int, message: str) -> NoReturn:
    from rich.text import Text

    from meshctl import reporters

    reporters.err_console().print(Text(message))
    sys.exit(code)


def _click_usage_error() -> Any:
    try:  # typer 0.29 and newer carry their own copy of click
        from typer._click.exceptions import ClickException
    except ImportError:  # pragma: no cover - older typer depends on click
        from click.exceptions import ClickException  # type: ignore[import-not-found,no-redef]
    return ClickException


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: one place maps every error to its exit code."""
    click_exception = _click_usage_error()
    args = sys.argv[1:] if argv is None else argv
    _state["debug"] = "--debug" in args
    try:
        code = app(args=args, prog_name="meshctl", standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        _fail(EXIT_INTERRUPTED, "meshctl: interrupted")
    except click_exception as exc:
        exc.show()
        sys.exit(EXIT_USAGE)
    except SpecError as exc:
        from meshctl import reporters

        reporters.problems_text(reporters.err_console(), exc.problems)
        sys.exit(exc.exit_code)
    except MeshctlError as exc:
        if _state["debug"]:
            import traceback

            traceback.print_exc()
        kind = "internal error: " if exc.exit_code == EXIT_INTERNAL else ""
        _fail(exc.exit_code, f"meshctl: {kind}{exc}")
    except KeyboardInterrupt:
        _fail(EXIT_INTERRUPTED, "meshctl: interrupted")
    except BrokenPipeError:
        # The reader went away (`meshctl schema | head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_OK)
    except Exception as exc:
        if _state["debug"]:
            import traceback

            traceback.print_exc()
            sys.exit(EXIT_INTERNAL)
        _fail(
            EXIT_INTERNAL,
            f"meshctl: internal error: {type(exc).__name__}: {exc} "
            "(run with --debug for the traceback, and please report it)",
        )
    sys.exit(code if isinstance(code, int) else EXIT_OK)
