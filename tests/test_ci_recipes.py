"""The CI recipes in docs/ci/ and .pre-commit-hooks.yaml: their structure, and
every meshctl command in them run for real in a Git repository holding the
bundled example (a clone, so `origin/main` is a real remote-tracking branch)."""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import meshctl

ROOT = Path(__file__).resolve().parent.parent
GITHUB = ROOT / "docs" / "ci" / "github-actions.yml"
GITLAB = ROOT / "docs" / "ci" / "gitlab-ci.yml"
HOOKS = ROOT / ".pre-commit-hooks.yaml"
CI_DOC = ROOT / "docs" / "ci.md"

GIT_ENV = {
    "GIT_AUTHOR_NAME": "ci",
    "GIT_AUTHOR_EMAIL": "ci@example.com",
    "GIT_COMMITTER_NAME": "ci",
    "GIT_COMMITTER_EMAIL": "ci@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# --- reading the recipes ------------------------------------------------------

EXPRESSION = re.compile(r"\$\{\{\s*([\w.]+)\s*\}\}")
VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Substitute `${{ expr }}` and `$VAR`/`${VAR}`; an unknown one is an error."""
    text = EXPRESSION.sub(lambda m: variables[m.group(1)], text)
    return VARIABLE.sub(lambda m: variables[m.group(1) or m.group(2)], text)


def shell_lines(script: str) -> list[str]:
    return [line.strip() for line in script.splitlines() if line.strip()]


def github_steps() -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = load(GITHUB)["jobs"]["meshctl"]["steps"]
    return steps


def github_commands(base_ref: str) -> list[str]:
    """The workflow's meshctl lines, with the step and workflow env substituted."""
    workflow = load(GITHUB)
    expressions = {"github.base_ref": base_ref}
    commands = []
    for step in github_steps():
        env = {**workflow.get("env", {})}
        env.update({k: expand(v, expressions) for k, v in step.get("env", {}).items()})
        for line in shell_lines(step.get("run", "")):
            if line.startswith("meshctl "):
                commands.append(expand(line, env))
    return commands


def gitlab_script() -> list[str]:
    script: list[str] = load(GITLAB)["meshctl"]["script"]
    return script


def gitlab_commands(target_branch: str) -> list[str]:
    """The job's git and meshctl lines, in order, with CI variables substituted."""
    variables = {
        **load(GITLAB)["meshctl"]["variables"],
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": target_branch,
    }
    return [
        expand(line, variables) for line in gitlab_script() if line.startswith(("meshctl ", "git "))
    ]


def note_poster() -> str:
    """The Python program the GitLab job feeds to `python3 -` to post the note."""
    (block,) = [line for line in gitlab_script() if line.startswith("python3 - <<'PY'")]
    body = block.split("\n", 1)[1]
    assert body.rstrip().endswith("\nPY"), "the heredoc ends with PY on its own line"
    return body.rstrip()[: -len("PY")]


def run_line(line: str, cwd: Path) -> int:
    """Run one recipe line: `git ...` with git, `meshctl ...` with the real CLI
    (through conftest's helper); `> FILE` writes stdout to FILE as the shell would."""
    words = shlex.split(line)
    output = None
    if len(words) >= 2 and words[-2] == ">":
        output, words = words[-1], words[:-2]
    assert ">" not in words and "|" not in words, f"unexpected shell syntax in {line!r}"
    if words[0] == "git":
        subprocess.run(words, cwd=cwd, env={**os.environ, **GIT_ENV}, check=True)
        return 0
    assert words[0] == "meshctl"
    run = meshctl(*words[1:], cwd=cwd)
    if output is not None:
        (cwd / output).write_text(run.stdout, encoding="utf-8")
    assert "Traceback" not in run.stderr
    return run.code


def commands_by_kind(commands: list[str]) -> dict[str, str]:
    return {shlex.split(c)[1]: c for c in commands if c.startswith("meshctl ")}


# --- a repository holding the example -----------------------------------------


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's "server" repository: the example spec and its rendered tree on main."""
    repo = tmp_path_factory.mktemp("upstream")
    assert meshctl("init", cwd=repo).code == 0
    assert meshctl("render", cwd=repo).code == 0
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "platform", cwd=repo)
    return repo


@pytest.fixture
def checkout(upstream: Path, tmp_path: Path) -> Path:
    """What CI checks out: a clone, so `origin/main` exists as it does in CI."""
    work = tmp_path / "checkout"
    git("clone", "-q", str(upstream), str(work), cwd=tmp_path)
    return work


def break_spec(repo: Path) -> None:
    spec = repo / "platform.yaml"
    text = spec.read_text(encoding="utf-8")
    assert "\n  domain: ai.example.com\n" in text
    spec.write_text(text.replace("\n  domain: ai.example.com\n", "\n  domian: ai.example.com\n"))


def change_domain(repo: Path) -> None:
    """A valid change a pull request could make: every route host moves."""
    spec = repo / "platform.yaml"
    text = spec.read_text(encoding="utf-8")
    spec.write_text(text.replace("\n  domain: ai.example.com\n", "\n  domain: ml.example.com\n"))


# --- GitHub Actions -------------------------------------------------------------


def test_github_workflow_structure() -> None:
    workflow = load(GITHUB)
    # PyYAML reads the bare key `on` as the boolean True (YAML 1.1); GitHub reads "on".
    triggers = workflow.get("on", workflow.get(True))
    assert "pull_request" in triggers
    assert workflow["permissions"]["pull-requests"] == "write"
    assert re.fullmatch(r"\d+\.\d+\.\d+", workflow["env"]["MESHCTL_VERSION"])

    steps = github_steps()
    for step in steps:
        if "uses" in step:
            assert re.search(r"@v\d+(\.\d+)*$", step["uses"]), f"{step['uses']} is not pinned"
    checkout, python = steps[0], steps[1]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"]["fetch-depth"] == 0
    assert python["uses"].startswith("actions/setup-python@")
    major, minor = (int(x) for x in str(python["with"]["python-version"]).split(".")[:2])
    assert (major, minor) >= (3, 11)
    assert python["with"]["cache"] == "pip"

    runs = [step.get("run", "") for step in steps]
    assert 'pip install "meshctl==${MESHCTL_VERSION}"' in runs

    assert github_commands("main") == [
        "meshctl validate --format github",
        "meshctl render --check",
        'meshctl diff --base "origin/main" --format markdown > diff.md',
    ]
    diff_step = next(step for step in steps if step.get("id") == "diff")
    assert diff_step["env"]["BASE_REF"] == "${{ github.base_ref }}"
    assert "steps.validate.outcome == 'success'" in diff_step["if"]

    comment = steps[-1]
    assert comment["uses"].startswith("marocchino/sticky-pull-request-comment@")
    assert comment["with"]["path"] == "diff.md"
    assert comment["with"]["header"], "a header keeps one comment per pull request"
    assert "steps.diff.outcome == 'success'" in comment["if"]


# --- GitLab CI ------------------------------------------------------------------


def test_gitlab_job_structure() -> None:
    job = load(GITLAB)["meshctl"]
    assert job["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]
    assert re.fullmatch(r"\d+\.\d+\.\d+", job["variables"]["MESHCTL_VERSION"])
    assert job["variables"]["PIP_CACHE_DIR"] == "$CI_PROJECT_DIR/.cache/pip"
    assert job["cache"]["paths"] == [".cache/pip"]
    assert "diff.md" in job["artifacts"]["paths"]
    assert gitlab_script()[0] == 'pip install "meshctl==${MESHCTL_VERSION}"'
    assert gitlab_commands("main") == [
        "meshctl validate",
        'git fetch origin "+refs/heads/main:refs/remotes/origin/main"',
        'meshctl diff --base "origin/main" --format markdown > diff.md',
        "meshctl render --check",
    ]
    poster = note_poster()
    compile(poster, "gitlab-note", "exec")
    for variable in ("CI_API_V4_URL", "CI_PROJECT_ID", "CI_MERGE_REQUEST_IID"):
        assert variable in poster
    assert "MESHCTL_GITLAB_TOKEN" in poster


# --- every command, run for real ------------------------------------------------


@pytest.mark.parametrize("recipe", ["github", "gitlab"])
def test_recipe_commands_on_the_example(recipe: str, checkout: Path) -> None:
    commands = github_commands("main") if recipe == "github" else gitlab_commands("main")

    # The base branch itself: everything passes and the comment says "no changes".
    for line in commands:
        assert run_line(line, checkout) == 0, line
    comment = (checkout / "diff.md").read_text(encoding="utf-8")
    assert comment.startswith("### meshctl diff")
    assert "No changes" in comment
    assert "<code>origin/main</code>" in comment

    # A pull request that changes the spec but forgot to render: validate passes,
    # the diff shows the change, render --check fails.
    git("checkout", "-q", "-b", "feature", cwd=checkout)
    change_domain(checkout)
    git("commit", "-q", "-am", "new domain", cwd=checkout)
    by_kind = commands_by_kind(commands)
    assert run_line(by_kind["validate"], checkout) == 0
    assert run_line(by_kind["diff"], checkout) == 0
    comment = (checkout / "diff.md").read_text(encoding="utf-8")
    assert "No changes" not in comment
    assert "ml.example.com" in comment
    assert run_line(by_kind["render"], checkout) == 1

    # ... and after `meshctl render`, render --check passes too.
    assert meshctl("render", cwd=checkout).code == 0
    git("commit", "-q", "-am", "render", cwd=checkout)
    for line in commands:
        assert run_line(line, checkout) == 0, line


@pytest.mark.parametrize("recipe", ["github", "gitlab"])
def test_recipe_commands_fail_on_an_invalid_spec(recipe: str, checkout: Path) -> None:
    commands = github_commands("main") if recipe == "github" else gitlab_commands("main")
    break_spec(checkout)
    by_kind = commands_by_kind(commands)
    for kind in ("validate", "render", "diff"):
        assert run_line(by_kind[kind], checkout) == 1, kind
    if recipe == "github":
        run = meshctl(*shlex.split(by_kind["validate"])[1:], cwd=checkout)
        assert run.stdout.startswith("::error file=platform.yaml,line=")
        assert "unknown key 'domian'" in run.stdout


# --- the GitLab note, against a stand-in for the GitLab API -----------------------


class FakeGitLab(http.server.BaseHTTPRequestHandler):
    notes: list[dict[str, Any]]
    requests: list[tuple[str, str, str | None, Any]]

    def reply(self, payload: Any, status: int = 200) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self) -> Any:
        length = int(self.headers.get("Content-Length", 0))
        return json.loads(self.rfile.read(length)) if length else None

    def record(self) -> Any:
        payload = self.body()
        self.requests.append((self.command, self.path, self.headers["PRIVATE-TOKEN"], payload))
        return payload

    def do_GET(self) -> None:
        self.record()
        assert self.path.startswith("/api/v4/projects/42/merge_requests/7/notes?")
        page = int(urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)["page"][0])
        self.reply(self.notes[(page - 1) * 100 : page * 100])

    def do_POST(self) -> None:
        payload = self.record()
        assert self.path == "/api/v4/projects/42/merge_requests/7/notes"
        note = {"id": 1000 + len(self.notes), "body": payload["body"]}
        self.notes.append(note)
        self.reply(note, 201)

    def do_PUT(self) -> None:
        payload = self.record()
        note_id = int(self.path.rsplit("/", 1)[1])
        (note,) = [n for n in self.notes if n["id"] == note_id]
        note["body"] = payload["body"]
        self.reply(note)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def gitlab_api() -> Iterator[tuple[str, type[FakeGitLab]]]:
    handler = type("Handler", (FakeGitLab,), {"notes": [], "requests": []})
    # 150 notes from people, so the poster has to page to find its own.
    handler.notes.extend({"id": i, "body": f"review comment {i}"} for i in range(150))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v4", handler
    finally:
        server.shutdown()
        server.server_close()


def post_note(cwd: Path, api: str, token: str | None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CI_API_V4_URL": api,
        "CI_PROJECT_ID": "42",
        "CI_MERGE_REQUEST_IID": "7",
        "NO_PROXY": "127.0.0.1",
        "no_proxy": "127.0.0.1",
    }
    env.pop("MESHCTL_GITLAB_TOKEN", None)
    if token is not None:
        env["MESHCTL_GITLAB_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-"],
        input=note_poster(),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_gitlab_note_is_posted_once_then_edited(
    gitlab_api: tuple[str, type[FakeGitLab]], checkout: Path
) -> None:
    api, server = gitlab_api
    diff = gitlab_commands("main")
    for line in diff[:3]:  # validate, fetch, diff > diff.md
        assert run_line(line, checkout) == 0
    first = (checkout / "diff.md").read_text(encoding="utf-8")

    result = post_note(checkout, api, "glpat-test")
    assert result.returncode == 0, result.stderr
    assert [r[0] for r in server.requests] == ["GET", "GET", "POST"]
    assert {r[2] for r in server.requests} == {"glpat-test"}
    mine = server.notes[-1]
    assert mine["body"].startswith("<!-- meshctl-diff -->\n### meshctl diff")
    assert mine["body"].endswith(first)

    # The next push: the same note is edited, not a second one added.
    (checkout / "diff.md").write_text("### meshctl diff\n\nsecond push\n", encoding="utf-8")
    server.requests.clear()
    result = post_note(checkout, api, "glpat-test")
    assert result.returncode == 0, result.stderr
    assert [r[0] for r in server.requests] == ["GET", "GET", "PUT"]
    assert server.requests[-1][1].endswith(f"/notes/{mine['id']}")
    assert len(server.notes) == 151
    assert server.notes[-1]["body"] == "<!-- meshctl-diff -->\n### meshctl diff\n\nsecond push\n"


def test_gitlab_note_without_a_token_is_skipped(
    gitlab_api: tuple[str, type[FakeGitLab]], tmp_path: Path
) -> None:
    api, server = gitlab_api
    (tmp_path / "diff.md").write_text("### meshctl diff\n", encoding="utf-8")
    result = post_note(tmp_path, api, None)
    assert result.returncode == 0
    assert "MESHCTL_GITLAB_TOKEN is not set" in result.stdout
    assert server.requests == []


# --- pre-commit -------------------------------------------------------------------


def hooks() -> dict[str, dict[str, Any]]:
    return {hook["id"]: hook for hook in load(HOOKS)}


def test_pre_commit_hooks_structure() -> None:
    found = hooks()
    assert list(found) == ["meshctl-validate", "meshctl-render-check"]
    assert found["meshctl-validate"]["entry"] == "meshctl validate"
    assert found["meshctl-render-check"]["entry"] == "meshctl render --check"
    for hook in found.values():
        assert hook["language"] == "python"
        assert hook["pass_filenames"] is False
        assert hook["name"]

    # pre-commit matches `files` with re.search against repository-relative paths.
    validate = re.compile(found["meshctl-validate"]["files"])
    render = re.compile(found["meshctl-render-check"]["files"])
    for path in ("platform.yaml", "profiles/perf.yaml", "deploy/platform.yaml"):
        assert validate.search(path) and render.search(path), path
    for path in ("rendered/overlays/prod/kustomization.yaml", "other.yaml", "my-platform.yaml.bak"):
        assert not validate.search(path), path
    assert render.search("rendered/overlays/prod/kustomization.yaml")
    assert not render.search("README.md")


@pytest.mark.parametrize("hook_id", ["meshctl-validate", "meshctl-render-check"])
def test_pre_commit_hook_entries(hook_id: str, checkout: Path) -> None:
    words = shlex.split(hooks()[hook_id]["entry"])
    assert words[0] == "meshctl"
    assert meshctl(*words[1:], cwd=checkout).code == 0
    break_spec(checkout)
    run = meshctl(*words[1:], cwd=checkout)
    assert run.code == 1
    assert "unknown key 'domian'" in run.stdout + run.stderr


def test_render_check_hook_catches_a_hand_edit(checkout: Path) -> None:
    words = shlex.split(hooks()["meshctl-render-check"]["entry"])
    target = checkout / "rendered" / "overlays" / "prod" / "kustomization.yaml"
    target.write_text(target.read_text(encoding="utf-8") + "# edited by hand\n", encoding="utf-8")
    run = meshctl(*words[1:], cwd=checkout)
    assert run.code == 1
    assert "rendered/overlays/prod/kustomization.yaml" in run.stdout + run.stderr


# --- the documentation ------------------------------------------------------------


def test_docs_link_the_recipes() -> None:
    text = CI_DOC.read_text(encoding="utf-8")
    for link in ("ci/github-actions.yml", "ci/gitlab-ci.yml", "../.pre-commit-hooks.yaml"):
        assert f"]({link})" in text, link
    assert "(docs/ci.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
    # Every YAML snippet in the page parses.
    for block in re.findall(r"```yaml\n(.*?)```", text, re.S):
        yaml.safe_load(block)
