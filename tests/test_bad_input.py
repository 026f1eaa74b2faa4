"""Bad input: a clear, located message and exit 1; never a traceback; nothing on disk changes.

The corpus is data: tests/cases/invalid/<case>/platform.yaml is a broken spec
and expected.txt the exact stdout of `meshctl validate platform.yaml` run in
that folder. Where meshctl is wrong today, expected.txt holds what it should
print and the case is listed in KNOWN_BUGS (a strict xfail, so a fix shows up).
Inputs too big to commit are generated in tmp (GENERATED). The valid case
tests/cases/valid/hostile-text proves the other half: free text, however much
it looks like YAML, reaches the rendered objects as data.

Every run has a timeout, as a hang guard only: speed budgets are measured by
bench/, not asserted here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshctl.resources import example_spec

from conftest import CASES, Run, meshctl

INVALID = CASES / "invalid"
HOSTILE = CASES / "valid" / "hostile-text" / "platform.yaml"
TIMEOUT = 60
FORMATS = ("text", "json", "github")

PROBLEM_LINE = re.compile(r"^platform\.yaml:([1-9]\d*):([1-9]\d*): \S")
SUMMARY_LINE = re.compile(r"^(\d+) problems? in platform\.yaml$")
GITHUB_LINE = re.compile(
    r"^::error file=platform\.yaml(?:,line=(\d+),col=(\d+))?,title=[^:]*::(.*)$"
)


# --------------------------------------------------------------------------
# Known meshctl bugs: the case's expected.txt says what meshctl SHOULD print.


@dataclass(frozen=True)
class Bug:
    reason: str
    # True: exit code 1 and a located message already, only the text is wrong,
    # so only the exact-text test fails. False: meshctl accepts the spec or
    # crashes, so every test of the case fails.
    text_only: bool


KNOWN_BUGS: dict[str, Bug] = {}

CASE_DIRS = sorted(path for path in INVALID.iterdir() if path.is_dir())


def corpus(*, exact_text: bool = False) -> list[Any]:
    """The corpus as pytest params; a known bug is a strict xfail where it shows."""
    params = []
    for case in CASE_DIRS:
        bug = KNOWN_BUGS.get(case.name)
        marks = []
        if bug is not None and (exact_text or not bug.text_only):
            marks.append(pytest.mark.xfail(strict=True, reason=f"meshctl bug: {bug.reason}"))
        params.append(pytest.param(case, id=case.name, marks=marks))
    return params


# --------------------------------------------------------------------------
# Running the CLI: many short runs, so they go through a small thread pool.


def run_meshctl(args: Sequence[str], cwd: Path) -> Run:
    """meshctl with a hang guard; a hang becomes a failed run, not an aborted session."""
    try:
        return meshctl(*args, cwd=cwd, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return Run(-1, "", f"meshctl {' '.join(args)} did not finish within {TIMEOUT} s")


def run_all(jobs: Iterable[tuple[Sequence[str], Path]]) -> list[Run]:
    """Each job in a process of its own, forked from one that imported the CLI
    once (tests/zygote.py): a few hundred runs cost their work, not their imports."""
    batch = [{"args": list(args), "cwd": str(cwd)} for args, cwd in jobs]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "MESHCTL_ZYGOTE_TIMEOUT": str(TIMEOUT)}
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("zygote.py"))],
        input=json.dumps(batch),
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [Run(r["code"], r["stdout"], r["stderr"]) for r in json.loads(done.stdout)]


def selected_cases(request: pytest.FixtureRequest) -> list[Path]:
    """The corpus cases of this session's selected tests that use the requesting
    fixture, so that `-k some-case` runs meshctl for that case only."""
    return sorted(
        {
            item.callspec.params["case"]
            for item in request.session.items
            if request.fixturename in getattr(item, "fixturenames", ())
            and "case" in getattr(getattr(item, "callspec", None), "params", {})
        }
    )


def assert_no_traceback(run: Run) -> None:
    for stream in (run.stdout, run.stderr):
        assert "Traceback" not in stream, stream
        assert "internal error" not in stream, stream


def assert_located_report(text: str) -> None:
    """Problem lines each start with platform.yaml:line:col; the last line counts them."""
    lines = text.splitlines()
    assert lines, "no problems reported"
    *problems, summary = lines
    assert problems, text
    for line in problems:
        assert PROBLEM_LINE.match(line), line
    count = SUMMARY_LINE.match(summary)
    assert count, summary
    assert int(count.group(1)) == len(problems), text


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root: a file's bytes, None for a folder, the target of a link."""
    tree: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if path.is_symlink():
            tree[name] = b"symlink -> " + os.fsencode(path.readlink())
        elif path.is_dir():
            tree[name] = None
        else:
            tree[name] = path.read_bytes()
    return tree


# --------------------------------------------------------------------------
# The corpus itself


def test_the_corpus_is_complete_and_its_expectations_are_located() -> None:
    assert len(CASE_DIRS) >= 30
    for case in CASE_DIRS:
        assert sorted(p.name for p in case.iterdir()) == ["expected.txt", "platform.yaml"], case
        assert_located_report((case / "expected.txt").read_text(encoding="utf-8"))
    assert set(KNOWN_BUGS) <= {case.name for case in CASE_DIRS}


@pytest.fixture(scope="module")
def reports(request: pytest.FixtureRequest) -> dict[tuple[str, str], Run]:
    """`meshctl validate --format F platform.yaml` for every selected case and format."""
    jobs = [
        ((case.name, fmt), (("validate", "platform.yaml", "--format", fmt), case))
        for case in selected_cases(request)
        for fmt in FORMATS
    ]
    runs = run_all(job for _, job in jobs)
    return {key: run for (key, _), run in zip(jobs, runs, strict=True)}


@pytest.mark.parametrize("case", corpus(exact_text=True))
def test_validate_prints_exactly_the_expected_problems(
    case: Path, reports: dict[tuple[str, str], Run]
) -> None:
    run = reports[case.name, "text"]
    assert_no_traceback(run)
    assert run.code == 1, run.stdout + run.stderr
    assert run.stdout == (case / "expected.txt").read_text(encoding="utf-8")
    assert run.stderr == ""


def _unescape_github(text: str) -> str:
    return text.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


@pytest.mark.parametrize("case", corpus())
def test_json_and_github_reports_agree_with_the_text_report(
    case: Path, reports: dict[tuple[str, str], Run]
) -> None:
    text, report, github = (reports[case.name, fmt] for fmt in FORMATS)
    for run in (text, report, github):
        assert_no_traceback(run)
        assert run.code == 1, run.stdout + run.stderr

    body = json.loads(report.stdout)
    assert (body["spec"], body["valid"]) == ("platform.yaml", False)
    problems = body["problems"]
    assert problems
    for problem in problems:
        assert problem["file"] == "platform.yaml", problem
        whole_file = not problem["path"] and problem["line"] == 0
        if not whole_file:
            assert problem["line"] >= 1, problem
            assert problem["column"] >= 1, problem

    def where(line: int, column: int) -> str:
        return f"platform.yaml:{line}:{column}" if line else "platform.yaml"

    from_json = [
        f"{where(p['line'], p['column'])}: "
        + (f"{p['path']}: {p['message']}" if p["path"] else p["message"])
        for p in problems
    ]
    *text_lines, summary = text.stdout.splitlines()
    assert sorted(text_lines) == sorted(from_json)
    assert SUMMARY_LINE.match(summary)

    annotations = github.stdout.splitlines()
    assert len(annotations) == len(problems)
    for annotation, problem in zip(annotations, problems, strict=True):
        match = GITHUB_LINE.match(annotation)
        assert match, annotation
        line, column, message = match.groups()
        assert (int(line or 0), int(column or 0)) == (problem["line"], problem["column"])
        expected = f"{problem['path']}: {problem['message']}" if problem["path"] else None
        assert _unescape_github(message) == (expected or problem["message"])


# --------------------------------------------------------------------------
# Nothing on disk changes


@pytest.fixture(scope="module")
def rendered_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project like the `project` fixture's (the example as platform.yaml), rendered
    once with `meshctl render`; each test works on a copy of it."""
    project = tmp_path_factory.mktemp("rendered-example") / "project"
    project.mkdir()
    (project / "platform.yaml").write_bytes(example_spec().read_bytes())
    run = meshctl("render", cwd=project, timeout=TIMEOUT)
    assert run.code == 0, run.stdout + run.stderr
    assert (project / "rendered" / "overlays" / "prod").is_dir()
    return project


@dataclass
class BadRender:
    run: Run
    before: dict[str, bytes | None]
    after: dict[str, bytes | None]


def render_bad_specs(
    rendered_project: Path, workdir: Path, specs: dict[str, bytes], *extra_args: str
) -> dict[str, BadRender]:
    """For each spec: copy the rendered project, put the spec over platform.yaml,
    run `meshctl render`, and snapshot the copy's folder before and after."""
    folders = {}
    for name, spec in specs.items():
        folder = workdir / name
        shutil.copytree(rendered_project, folder / "project", symlinks=True)
        (folder / "project" / "platform.yaml").write_bytes(spec)
        folders[name] = folder
    before = {name: snapshot(folder) for name, folder in folders.items()}
    runs = run_all(((*extra_args, "render"), folder / "project") for folder in folders.values())
    return {
        name: BadRender(run, before[name], snapshot(folders[name]))
        for name, run in zip(folders, runs, strict=True)
    }


def assert_refused_and_unchanged(result: BadRender) -> None:
    assert_no_traceback(result.run)
    assert result.run.code == 1, result.run.stdout + result.run.stderr
    assert result.run.stdout == ""
    assert_located_report(result.run.stderr)
    assert sorted(result.after) == sorted(result.before), "files appeared or disappeared"
    changed = [name for name in result.before if result.after[name] != result.before[name]]
    assert changed == []


@pytest.fixture(scope="module")
def corpus_renders(
    request: pytest.FixtureRequest,
    rendered_project: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, BadRender]:
    specs = {case.name: (case / "platform.yaml").read_bytes() for case in selected_cases(request)}
    return render_bad_specs(rendered_project, tmp_path_factory.mktemp("corpus"), specs)


@pytest.mark.parametrize("case", corpus())
def test_render_of_a_bad_spec_changes_nothing_on_disk(
    case: Path, corpus_renders: dict[str, BadRender]
) -> None:
    assert_refused_and_unchanged(corpus_renders[case.name])


@pytest.mark.parametrize(
    "case",
    [
        "yaml-unclosed-flow-sequence",
        "binary-garbage",
        "alias-bomb",
        "port-as-string",
        "dangling-uses",
        "override-removes-required-setting",
        "prod-mtls-permissive-without-waiver",
    ],
)
def test_render_debug_of_a_bad_spec_is_still_a_located_exit_1(
    case: str, rendered_project: Path, tmp_path: Path
) -> None:
    """--debug only adds tracebacks of internal errors; a bad spec is not one."""
    spec = (INVALID / case / "platform.yaml").read_bytes()
    result = render_bad_specs(rendered_project, tmp_path, {case: spec}, "--debug")[case]
    assert_refused_and_unchanged(result)


# --------------------------------------------------------------------------
# Generated inputs, too big to commit


def _padded_spec(size: int) -> bytes:
    """The example followed by as many (well-formed) services as fit in size bytes."""
    spec = example_spec().read_bytes()
    service = b"  - name: filler\n    namespace: filler\n    port: 8080\n"
    spec += service * ((size - len(spec)) // len(service))
    return spec + b"#" * (size - len(spec) - 1) + b"\n"


def _example_with(old: str, new: str) -> bytes:
    text = example_spec().read_text(encoding="utf-8")
    assert text.count(old) == 1
    return text.replace(old, new).encode()


@dataclass(frozen=True)
class Generated:
    build: Callable[[], bytes]
    stdout: str  # a regular expression for the whole of validate's stdout
    # The reported line:col must point at one of these characters (the offending token).
    points_at: str | None = None


DESCRIPTION = '  description: "Parallel AI: public inference API, console and batch orchestration"'

GENERATED: dict[str, Generated] = {
    "file-of-20-mib": Generated(
        lambda: _padded_spec(20 * 1024 * 1024),
        r"platform\.yaml:1:1: the file is 20\.0 MiB; meshctl reads specs of at most \d+ MiB\n"
        r"1 problem in platform\.yaml\n",
    ),
    "flow-nesting-20000-deep": Generated(
        lambda: b"[" * 20_000 + b"]" * 20_000 + b"\n",
        r"platform\.yaml:1:\d+: nesting is deeper than 64 levels\n1 problem in platform\.yaml\n",
        points_at="[",
    ),
    "block-nesting-20000-deep": Generated(
        lambda: b"- " * 20_000 + b"x\n",
        r"platform\.yaml:1:129: nesting is deeper than 64 levels\n1 problem in platform\.yaml\n",
        points_at="-",
    ),
    "description-of-100-kb-on-one-line": Generated(
        lambda: _example_with(DESCRIPTION, '  description: "' + "x" * 102_400 + '"'),
        r"platform\.yaml:17:16: metadata\.description: is 102400 characters long; "
        r"the limit is 1024\n1 problem in platform\.yaml\n",
        points_at='"',
    ),
    "half-a-million-list-items": Generated(
        lambda: b"- 1\n" * 500_001,
        r"platform\.yaml:500000:3: the document has more than 500,000 values\n"
        r"1 problem in platform\.yaml\n",
        points_at="1",
    ),
    "flow-list-of-a-million-items": Generated(
        lambda: b"x: [" + b"1," * 1_000_000 + b"]\n",
        r"platform\.yaml:1:999999: the document has more than 500,000 values\n"
        r"1 problem in platform\.yaml\n",
        points_at="1",
    ),
    "document-of-one-100-kb-scalar": Generated(
        lambda: b"x" * 102_400 + b"\n",
        r"platform\.yaml:1:1: expected a mapping, got a string 'x{1,60}\.\.\.\n"
        r"1 problem in platform\.yaml\n",
        points_at="x",
    ),
}


@pytest.fixture(scope="module")
def generated_specs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("generated")
    specs = {}
    for name, case in GENERATED.items():
        (root / name).mkdir()
        specs[name] = root / name / "platform.yaml"
        specs[name].write_bytes(case.build())
    return specs


@pytest.mark.parametrize("name", list(GENERATED))
def test_generated_bad_input_is_refused_with_a_located_message(
    name: str, generated_specs: dict[str, Path]
) -> None:
    case, spec = GENERATED[name], generated_specs[name]
    run = run_meshctl(("validate", "platform.yaml"), spec.parent)
    assert_no_traceback(run)
    assert run.code == 1, run.stdout + run.stderr
    assert re.fullmatch(case.stdout, run.stdout), run.stdout[:2000]
    assert run.stderr == ""
    location = PROBLEM_LINE.match(run.stdout)
    assert location
    if case.points_at:
        line, column = (int(n) for n in location.groups())
        with spec.open("rb") as handle:
            text = b"".join(handle.readline() for _ in range(line)).decode()
        assert text.splitlines()[line - 1][column - 1] in case.points_at


@pytest.mark.parametrize("name", list(GENERATED))
def test_render_of_generated_bad_input_changes_nothing_on_disk(
    name: str, generated_specs: dict[str, Path], rendered_project: Path, tmp_path: Path
) -> None:
    spec = generated_specs[name].read_bytes()
    assert_refused_and_unchanged(render_bad_specs(rendered_project, tmp_path, {name: spec})[name])


# --------------------------------------------------------------------------
# YAML that is valid but unusual must not leak Python warnings either


def test_an_endless_device_is_read_no_further_than_the_size_limit() -> None:
    """The size limit does not trust stat(): /dev/zero has size 0 and no end."""
    run = run_meshctl(("validate", "/dev/zero"), Path.cwd())
    assert run.code == 1
    assert run.stdout.startswith(
        "/dev/zero:1:1: the file is larger; meshctl reads specs of at most"
    )


def test_a_reused_anchor_prints_no_python_warning(project: Path) -> None:
    spec = project / "platform.yaml"
    text = spec.read_text(encoding="utf-8")
    for description in ('"Model server (GPU nodes)"', '"Embedding model server"'):
        old = f"    port: 8000\n    description: {description}"
        assert old in text
        text = text.replace(old, f"    port: &port 8000\n    description: {description}")
    spec.write_text(text, encoding="utf-8")
    run = run_meshctl(("validate",), project)
    assert_no_traceback(run)
    assert run.code in (0, 1)
    assert run.stderr == ""


# --------------------------------------------------------------------------
# Hostile free text is data


HOSTILE_WORDS = ("on", "off", "yes", "no", "y", "n", "~", "null", "0o17", "1e3", "12:30")
HOSTILE_FRAGMENTS = (
    '"',
    "'",
    ": ",
    " #",
    "---",
    "{}",
    "[]",
    "&anchor",
    "*alias",
    "!tag",
    "%",
    "@",
    "Zürich \N{EN DASH} 東京 🚀",
)


def _documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def test_hostile_free_text_reaches_the_output_unchanged(tmp_path: Path) -> None:
    spec = yaml.safe_load(HOSTILE.read_text(encoding="utf-8"))
    description = spec["metadata"]["description"]
    environments = spec["spec"]["environments"]
    waivers = environments["prod"]["waivers"]
    services = {s["name"]: s["description"] for s in spec["spec"]["services"]}
    annotations = spec["spec"]["gateway"]["proxy"]["annotations"]

    # The case covers what it claims to (all of it read as strings).
    texts = [description, *(w["reason"] for w in waivers), *services.values()]
    texts += annotations.values()
    assert all(isinstance(text, str) for text in texts)
    for word in HOSTILE_WORDS:
        assert word in annotations.values(), word
    for fragment in HOSTILE_FRAGMENTS:
        assert any(fragment in text for text in texts), fragment
    assert any(text != text.lstrip() for text in texts)
    assert any(text != text.rstrip() for text in texts)

    (tmp_path / "platform.yaml").write_bytes(HOSTILE.read_bytes())
    run = run_meshctl(("render",), tmp_path)
    assert run.code == 0, run.stdout + run.stderr
    tree = tmp_path / "rendered"

    objects: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for path in sorted(tree.rglob("*.yaml")):
        for doc in _documents(path):
            if isinstance(doc, dict) and "kind" in doc and "metadata" in doc:
                objects.setdefault((doc["kind"], doc["metadata"]["name"]), []).append(doc)

    def annotation(kind: str, name: str, key: str) -> list[str]:
        return [obj["metadata"]["annotations"][key] for obj in objects[kind, name]]

    for env in environments:
        values = _documents(tree / "overlays" / env / "values" / "kong.yaml")[0]
        assert values["proxy"]["annotations"] == annotations
        (project,) = objects["AppProject", f"hostile-text-{env}"]
        assert project["spec"]["description"] == f"{description} ({env})"
        recorded = project["metadata"]["annotations"].get("meshctl.io/waivers")
        expected = environments[env].get("waivers")
        assert (json.loads(recorded) if recorded else None) == expected
    for name, text in services.items():
        assert annotation("AuthorizationPolicy", name, "meshctl.io/description") == [text]
    (ingress,) = (obj for (kind, _), objs in objects.items() if kind == "Ingress" for obj in objs)
    assert ingress["metadata"]["annotations"]["meshctl.io/description"] == services["quotes"]
