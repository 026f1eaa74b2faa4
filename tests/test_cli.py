"""The command line as a user meets it: exit codes, formats, streams, colour, init."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from meshctl import __version__
from meshctl.resources import example_spec

from conftest import meshctl

BROKEN = "spec:\n  services:\n  - {name: a, port: x}\n"


def test_version() -> None:
    for args in (["--version"], ["--debug", "--version"]):
        run = meshctl(*args)
        assert (run.code, run.stdout) == (0, f"meshctl {__version__}\n")


def test_help_lists_the_commands() -> None:
    run = meshctl("--help")
    assert run.code == 0
    for command in ("init", "validate", "render", "explain", "profiles", "schema"):
        assert re.search(rf"^\s*{command}\s", run.stdout, re.MULTILINE), command


def test_init_writes_the_example_and_refuses_to_overwrite(tmp_path: Path) -> None:
    run = meshctl("init", cwd=tmp_path)
    assert run.code == 0
    assert (tmp_path / "platform.yaml").read_bytes() == example_spec().read_bytes()
    (tmp_path / "platform.yaml").write_text("# mine\n")
    run = meshctl("init", cwd=tmp_path)
    assert run.code == 2
    assert "already exists" in run.stderr
    assert (tmp_path / "platform.yaml").read_text() == "# mine\n"
    assert meshctl("init", "sub/dir", cwd=tmp_path).code == 0
    assert (tmp_path / "sub/dir/platform.yaml").is_file()


def test_the_example_is_commented_for_a_new_user() -> None:
    text = example_spec().read_text()
    assert text.count("\n#") + text.count("\n  #") > 10
    assert "$schema=" in text.splitlines()[0]


def test_validate_success_and_formats(project: Path) -> None:
    run = meshctl("validate", cwd=project)
    assert run.code == 0
    assert run.stdout.startswith("platform.yaml is valid: 5 services")
    run = meshctl("validate", "--format", "json", cwd=project)
    assert run.code == 0
    assert json.loads(run.stdout) == {
        "version": 1,
        "spec": "platform.yaml",
        "valid": True,
        "problems": [],
    }
    run = meshctl("validate", "--format", "github", cwd=project)
    assert (run.code, run.stdout) == (0, "")


def test_validate_reports_every_problem_in_each_format(tmp_path: Path) -> None:
    (tmp_path / "platform.yaml").write_text(BROKEN)
    text = meshctl("validate", cwd=tmp_path)
    assert text.code == 1
    assert text.stdout.splitlines() == [
        "platform.yaml:1:1: missing required key 'apiVersion'",
        "platform.yaml:1:1: missing required key 'kind'",
        "platform.yaml:1:1: missing required key 'metadata'",
        "platform.yaml:2:3: spec: missing required key 'environments'",
        "platform.yaml:2:3: spec: missing required key 'gitops'",
        "platform.yaml:3:5: spec.services[0]: missing required key 'namespace'",
        "platform.yaml:3:21: spec.services[0].port: expected an integer, got a string 'x'",
        "7 problems in platform.yaml",
    ]
    report = json.loads(meshctl("validate", "--format", "json", cwd=tmp_path).stdout)
    assert report["valid"] is False
    assert report["problems"][-1] == {
        "file": "platform.yaml",
        "line": 3,
        "column": 21,
        "path": "spec.services[0].port",
        "message": "expected an integer, got a string 'x'",
        "rule": "schema",
    }
    github = meshctl("validate", "--format", "github", cwd=tmp_path)
    assert github.code == 1
    assert github.stdout.splitlines()[-1] == (
        "::error file=platform.yaml,line=3,col=21,title=meshctl schema::"
        "spec.services[0].port: expected an integer, got a string 'x'"
    )


def test_github_annotations_escape_what_would_break_them(tmp_path: Path) -> None:
    (tmp_path / "a,b:c.yaml").write_text("a: [\n")
    run = meshctl("validate", "a,b:c.yaml", "--format", "github", cwd=tmp_path)
    assert run.stdout.startswith("::error file=a%2Cb%3Ac.yaml,line=")


def test_render_of_an_invalid_spec_prints_problems_on_stderr(tmp_path: Path) -> None:
    (tmp_path / "platform.yaml").write_text(BROKEN)
    run = meshctl("render", cwd=tmp_path)
    assert run.code == 1
    assert run.stdout == ""
    assert "platform.yaml:3:21: spec.services[0].port" in run.stderr
    assert not (tmp_path / "rendered").exists()


def test_usage_and_environment_errors_exit_2(project: Path) -> None:
    cases = [
        (["render", "missing.yaml"], "meshctl: missing.yaml: no such file"),
        (["validate", "."], "meshctl: .: is a directory, expected a YAML file"),
        (
            ["render", "-e", "prdo"],
            "meshctl: unknown environment 'prdo'; did you mean 'prod'? "
            "(the spec has: dev, staging, prod)",
        ),
        (["validate", "--format", "xml"], "Invalid value"),
        (["frobnicate"], "No such command"),
        (["render", "--bogus"], "No such option"),
    ]
    for args, message in cases:
        run = meshctl(*args, cwd=project)
        assert run.code == 2, (args, run)
        assert message in run.stderr, (args, run.stderr)
        assert "Traceback" not in run.stderr


def test_render_selected_environments(project: Path) -> None:
    run = meshctl("render", "-e", "prod", "-e", "dev", "-o", "out", cwd=project)
    assert run.code == 0, run.stderr
    assert run.stdout.startswith("rendered dev, prod into out:")
    assert sorted(p.name for p in (project / "out/overlays").iterdir()) == ["dev", "prod"]


def test_no_color_and_plain_output_when_not_a_terminal(project: Path) -> None:
    (project / "platform.yaml").write_text(BROKEN)
    for env in ({"NO_COLOR": "1"}, {"NO_COLOR": "", "FORCE_COLOR": ""}):
        run = meshctl("validate", cwd=project, env=env)
        assert "\x1b[" not in run.stdout + run.stderr


def test_colour_when_forced(project: Path) -> None:
    (project / "platform.yaml").write_text(BROKEN)
    run = meshctl("validate", cwd=project, env={"NO_COLOR": "", "FORCE_COLOR": "1"})
    assert "\x1b[" in run.stdout


def test_markup_in_user_text_is_printed_literally(tmp_path: Path) -> None:
    (tmp_path / "platform.yaml").write_text("[bold]x[/bold]: [\n")
    run = meshctl("validate", cwd=tmp_path, env={"NO_COLOR": "", "FORCE_COLOR": "1"})
    assert run.code == 1
    assert "[" in run.stdout


def test_schema_command_prints_the_committed_schemas() -> None:
    root = Path(__file__).resolve().parents[1] / "schemas"
    assert meshctl("schema").stdout == (root / "platform.schema.json").read_text()
    assert meshctl("schema", "--profile").stdout == (root / "profile.schema.json").read_text()


def test_internal_errors_are_short_without_debug(project: Path) -> None:
    """A broken installation (a template gone) is exit 3, one line; --debug adds the traceback."""
    code = (
        "import sys, meshctl.resources as r\n"
        "from pathlib import Path\n"
        "real = r.templates_dir\n"
        "r.templates_dir = lambda: Path('/nonexistent')\n"
        "import meshctl.templating as t; t.templates_dir = r.templates_dir\n"
        "from meshctl.cli import main\n"
        "sys.argv = ['meshctl'] + sys.argv[1:]\n"
        "main()\n"
    )
    import subprocess
    import sys

    for debug in (False, True):
        args = [sys.executable, "-c", code, *(["--debug"] if debug else []), "render"]
        run = subprocess.run(args, cwd=project, capture_output=True, text=True, check=False)
        assert run.returncode == 3, run.stderr
        assert "meshctl: internal error: templates/platform/namespaces.yaml.j2" in run.stderr
        assert ("Traceback" in run.stderr) == debug
        if not debug:
            assert len(run.stderr.splitlines()) == 1


def _python(code: str, *args: str, env: dict[str, str] | None = None) -> str:
    import os
    import subprocess
    import sys

    environment = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    run = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**environment, **(env or {})},
        check=True,
    )
    return run.stdout


VALIDATE_THEN_REPORT = """
import sys
from meshctl.__main__ import main
sys.argv = ["meshctl", "validate", sys.argv[1]]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
print("importlib.metadata" in sys.modules, type(sys.modules["pydantic.plugin._loader"]).__name__)
"""


def test_the_cli_validates_without_importing_package_metadata(tmp_path: Path) -> None:
    """With pydantic's plugins off (meshctl's default), its plugin loader, which
    imports importlib.metadata at the top, is replaced by a stand-in."""
    spec = str(example_spec())
    report = _python(VALIDATE_THEN_REPORT, spec).splitlines()
    assert report[0] == f"{spec} is valid: 5 services, environments dev, staging, prod"
    assert report[-1].split() == ["False", "_NoPydanticPlugins"]
    # A user who names plugins to disable gets pydantic's own loader.
    report = _python(VALIDATE_THEN_REPORT, spec, env={"PYDANTIC_DISABLE_PLUGINS": "logfire"})
    assert report.splitlines()[-1].split() == ["True", "module"]


def test_the_plugin_stand_in_serves_other_names_from_pydantic() -> None:
    code = (
        "import sys\n"
        "from meshctl.__main__ import main\n"
        "sys.argv = ['meshctl', '--version']\n"
        "main()\n"
        "stand_in = sys.modules['pydantic.plugin._loader']\n"
        "from pydantic.plugin._loader import PYDANTIC_ENTRY_POINT_GROUP, get_plugins\n"
        "# a second name through the stand-in still reaches the real module\n"
        "assert stand_in._plugins is None\n"
        "print(PYDANTIC_ENTRY_POINT_GROUP, list(get_plugins()))\n"
    )
    assert _python(code).splitlines()[-1] == "pydantic []"


RUN_WITH_EXIT_HANDLER = """
import atexit, sys
from meshctl.__main__ import run
atexit.register(lambda: print("exit handler ran"))
sys.argv = ["meshctl", *sys.argv[1:]]
print("buffered", end=" ")
run()
print("not reached")
"""


def test_the_command_exits_at_once_with_its_status_after_exit_handlers(tmp_path: Path) -> None:
    """`meshctl` (run) skips the interpreter's teardown but keeps what a normal
    exit does: exit handlers run, buffered output is written, the status is
    main's."""
    script = tmp_path / "run.py"
    script.write_text(RUN_WITH_EXIT_HANDLER)
    ok = subprocess.run(
        [sys.executable, str(script), "--version"], capture_output=True, text=True, check=False
    )
    assert (ok.returncode, ok.stdout) == (0, f"buffered meshctl {__version__}\nexit handler ran\n")
    missing = subprocess.run(
        [sys.executable, str(script), "validate", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 2
    assert missing.stdout == "buffered exit handler ran\n"
    assert "missing.yaml: no such file" in missing.stderr


@pytest.mark.parametrize(("code", "status"), [(None, 0), (0, 0), (3, 3), ("bye", 1)])
def test_exit_codes_mean_what_they_mean_to_the_interpreter(
    code: object, status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    from meshctl.__main__ import _exit_status

    assert _exit_status(code) == status
    assert capsys.readouterr().err == ("bye\n" if code == "bye" else "")
