"""bench/run.py measures the cases of one spec in rounds; its bookkeeping, here."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from meshctl.resources import example_spec

ROOT = Path(__file__).resolve().parents[1]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("meshctl_bench_run", ROOT / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench = _bench()


def _step(
    name: str, log: list[tuple[str, int]], *, warm: bool = True, fail_at: int | None = None
) -> tuple[Any, Callable[[int], Any], bool]:
    """A case whose run k logs (name, k), and fails at fail_at."""
    case = bench.Case(name, [name])

    def once(k: int) -> Any:
        log.append((name, k))
        if k == fail_at:
            raise bench.CommandFailed([name], 3, "boom")
        return bench.Sample(float(k), 1)

    return case, once, warm


def test_rounds_take_run_k_of_every_case_before_run_k_plus_one() -> None:
    log: list[tuple[str, int]] = []
    render, diff = _step("render", log), _step("diff", log, warm=False)
    bench.run_rounds([render, diff], 2)
    assert log == [("render", -1), ("render", 0), ("diff", 0), ("render", 1), ("diff", 1)]
    # The warm-up round is not a sample.
    assert [s.seconds for s in render[0].samples] == [0.0, 1.0]
    assert [s.seconds for s in diff[0].samples] == [0.0, 1.0]


def test_when_the_first_case_fails_the_cases_that_need_its_output_stop() -> None:
    log: list[tuple[str, int]] = []
    render, diff = _step("render", log, fail_at=1), _step("diff", log)
    bench.run_rounds([render, diff], 3)
    assert log == [("render", -1), ("diff", -1), ("render", 0), ("diff", 0), ("render", 1)]
    assert render[0].error.startswith("exit 3: render")
    assert diff[0].error == "not run: render failed"
    assert not diff[0].ok


def test_a_later_case_failing_does_not_stop_the_others() -> None:
    log: list[tuple[str, int]] = []
    render, diff = _step("render", log), _step("diff", log, fail_at=0)
    bench.run_rounds([render, diff], 2)
    assert len(render[0].samples) == 2
    assert diff[0].error.startswith("exit 3: diff") and diff[0].samples == []


def test_the_cases_of_the_example_run_against_the_real_command(tmp_path: Path) -> None:
    """Each round's diff and unchanged render use that round's fresh tree: a
    diff that found a difference would fail its case (--exit-code)."""
    meshctl = bench.find_meshctl(None)
    spec = tmp_path / "example" / "platform.yaml"
    spec.parent.mkdir()
    shutil.copy(example_spec(), spec)
    runner = bench.Bench(meshctl, None, 2, tmp_path)
    runner.spec_cases("example", spec, None, unchanged=True, warm_kubectl=True)
    cases = {case.name: case for case in runner.cases}
    for name in ("render example (fresh)", "render example (unchanged tree)"):
        assert cases[name].ok and len(cases[name].samples) == 2, cases[name].error
    assert cases["diff example (unchanged tree)"].ok
    assert cases["kubectl kustomize example"].error == "kubectl not found (use --kubectl); skipped"
    assert cases["render example (fresh)"].notes[0].startswith("3 envs, ")
    # Disk use stays flat: only the last round's tree is left.
    assert sorted(p.name for p in spec.parent.iterdir()) == ["out-1", "platform.yaml"]


@pytest.mark.parametrize("size", [0, -1])
def test_a_size_below_one_is_refused(size: int) -> None:
    with pytest.raises(ValueError):
        bench.generate_spec(size)


# bench/compare.py: interleaved rounds of two or more builds.


def _compare() -> ModuleType:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return importlib.import_module("compare")
    finally:
        sys.path.remove(str(ROOT / "bench"))


compare = _compare()


@pytest.mark.parametrize("count", [2, 3, 4])
def test_compare_puts_every_build_in_every_position_equally_often(count: int) -> None:
    orders = [compare.order_of(k, count) for k in range(2 * count)]
    assert all(sorted(order) == list(range(count)) for order in orders)
    for position in range(count):
        assert sorted(order[position] for order in orders) == sorted(list(range(count)) * 2)
    if count == 3:  # and three builds meet in every order
        assert len({tuple(order) for order in orders}) == 6


def test_compare_pairs_each_round_of_one_build_with_the_same_round_of_the_first() -> None:
    first, other = bench.Case("a", ["a"]), bench.Case("b", ["b"])
    first.samples = [bench.Sample(s, 1) for s in (1.0, 2.0, 4.0)]
    other.samples = [bench.Sample(s, 1) for s in (0.5, 1.0, 3.0)]
    assert compare.paired_ratios(first, other) == [0.5, 0.5, 0.75]
    # The machine's drift (1 s to 4 s) cancels out of the paired ratios; the
    # ratio of the medians (1.0 / 2.0) would say the same here only by chance.
    assert compare.report([first, other]).splitlines()[3].endswith("  0.500 x the first")


def test_compare_renders_with_each_build_and_prints_the_ratio(
    capsys: pytest.CaptureFixture[str],
) -> None:
    meshctl = bench.find_meshctl(None)
    assert compare.main(["--meshctl", meshctl, "--meshctl", meshctl, "--runs", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "render of each build's example, 1 interleaved round after a warm-up round"
    rows = [line for line in lines if line.startswith(meshctl)]
    assert len(rows) == 2
    # The same build twice: the example's whole tree (counted in the warm-up
    # round), and only the second build has a ratio to the first.
    files = sum(1 for path in (ROOT / "tests/golden/example").rglob("*") if path.is_file())
    assert rows[0].endswith(f"  {files} files")
    assert re.search(rf"  {files} files, \d+\.\d{{3}} x the first$", rows[1])


def test_compare_reports_a_failing_build_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "meshctl"
    broken.write_text("#!/bin/sh\necho 'no such command' >&2\nexit 3\n")
    broken.chmod(0o755)
    meshctl = bench.find_meshctl(None)
    assert compare.main(["--meshctl", meshctl, "--meshctl", str(broken), "--runs", "1"]) == 1
    err = capsys.readouterr().err
    assert f"failed: {broken} init" in err and "(exit 3)" in err and "no such command" in err


def test_compare_needs_two_builds(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        compare.parse_args(["--meshctl", "a"])
    assert exc.value.code == 2
    assert "give --meshctl at least twice" in capsys.readouterr().err


def _script(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


def test_the_interpreter_that_runs_meshctl_is_reported(tmp_path: Path) -> None:
    this = f"{sys.version.split()[0]} {Path(sys.executable).resolve()}"
    direct = _script(tmp_path, "direct", f"#!{sys.executable}\nimport meshctl\n")
    assert bench.interpreter_of(direct) == this
    # pip's trampoline, for an interpreter path too long for #! or with spaces.
    trampoline = f"#!/bin/sh\n'''exec' \"{sys.executable}\" \"$0\" \"$@\"\n' '''\n"
    assert bench.interpreter_of(_script(tmp_path, "trampoline", trampoline)) == this
    with_env = bench.interpreter_of(_script(tmp_path, "env", "#!/usr/bin/env -S python3\n"))
    version, path = with_env.split(" ", 1)
    assert version[0].isdigit() and Path(path).is_file()
    bare = _script(tmp_path, "bare", "#!\n")
    assert bench.interpreter_of(bare) == "unknown (no interpreter named)"
    assert bench.interpreter_of(str(tmp_path / "missing")) == "unknown"
    binary = tmp_path / "binary"
    binary.write_bytes(b"\x7fELF\x02\x01")
    assert bench.interpreter_of(str(binary)) == "unknown (not a script)"


def test_compare_cold_gives_every_render_an_empty_template_cache(tmp_path: Path) -> None:
    log = tmp_path / "log"
    fake = tmp_path / "meshctl"
    # Records whether its template cache folder existed, and makes an output tree.
    fake.write_text(
        "#!/bin/sh\n"
        f'if [ -e "$XDG_CACHE_HOME" ]; then echo reused >> {log}; else echo empty >> {log}; fi\n'
        'mkdir -p "$XDG_CACHE_HOME/meshctl" "$4" && touch "$4/file"\n'
    )
    fake.chmod(0o755)
    cases = [bench.Case(name, [str(fake), "render", "spec"]) for name in ("a", "b")]
    compare.compare(cases, 2, tmp_path, cold=True)
    # The warm-up round and two timed rounds, for each build.
    assert log.read_text().split() == ["empty"] * 6
    assert [len(case.samples) for case in cases] == [2, 2]
