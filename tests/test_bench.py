"""bench/run.py measures the cases of one spec in rounds; its bookkeeping, here."""

from __future__ import annotations

import importlib.util
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
