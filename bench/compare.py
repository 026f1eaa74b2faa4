"""Compare the render time of two or more meshctl builds, interleaved, on this machine.

A shared machine's speed drifts by up to 2x within minutes, so two runs of
run.py an hour apart compare two machines. Here every round renders once with
each build, in an order that rotates and reverses, and the verdict is the median of the
per-round ratios, which that drift cancels out of:

    python bench/compare.py --meshctl old/bin/meshctl --meshctl new/bin/meshctl
    python bench/compare.py --meshctl A --meshctl B --services 1000 --runs 9
    python bench/compare.py --meshctl A --meshctl B --cold

Each build renders its own bundled example (`meshctl init` of that build), so
builds whose spec format differs can still be compared; with --services N they
all render the same generated spec. Every render goes into a new, empty
directory, as `render example (fresh)` in run.py; with --cold every render
also gets an empty template cache (a new XDG_CACHE_HOME), as in a fresh CI
container. Standard library only; see bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from run import (
    Case,
    CommandFailed,
    count_files,
    find_meshctl,
    format_table,
    generate_spec,
    interpreter_of,
    positive,
    run_once,
    run_quiet,
)


def prepare_spec(meshctl: str, services: int | None, work: Path) -> Path:
    """The spec this build renders: its own example, or the generated one."""
    work.mkdir(parents=True)
    spec = work / "platform.yaml"
    if services:
        spec.write_text(generate_spec(services))
    else:
        run_quiet([meshctl, "init", str(work)])
    return spec


def order_of(round_index: int, count: int) -> list[int]:
    """Builds in the order round k runs them: a rotation that moves on every
    second round, backwards on odd rounds. Over 2 x count rounds each build
    runs in each position equally often, so none is always first, last or in
    the middle. (With three builds and the middle one fixed, a run here put
    the middle build 12 % behind one it matched within 1 % head to head.)"""
    shift = (round_index // 2) % count
    rotated = [(i + shift) % count for i in range(count)]
    return rotated if round_index % 2 == 0 else rotated[::-1]


def compare(cases: Sequence[Case], runs: int, work: Path, *, cold: bool = False) -> None:
    """Round -1 (untimed) warms each build's template cache (with `cold`, the
    disk only); then `runs` rounds."""
    for k in range(-1, runs):
        for index in order_of(k, len(cases)):
            case = cases[index]
            out = work / f"out-{index}-{k + 1}"
            cache = work / f"cache-{index}-{k + 1}"
            env = {**os.environ, "XDG_CACHE_HOME": str(cache)} if cold else None
            sample = run_once([*case.argv, "-o", str(out)], env=env)
            if k >= 0:
                case.samples.append(sample)
            if k == -1:
                case.notes.append(f"{count_files(out)} files")
            # Untimed: the next render meets the same, emptier file system.
            shutil.rmtree(out)
            shutil.rmtree(cache, ignore_errors=True)


def paired_ratios(base: Case, other: Case) -> list[float]:
    return [o.seconds / b.seconds for b, o in zip(base.samples, other.samples, strict=True)]


def report(cases: Sequence[Case]) -> str:
    """run.py's table, each build's notes ending with its ratio to the first."""
    for case in cases[1:]:
        ratio = statistics.median(paired_ratios(cases[0], case))
        case.notes.append(f"{ratio:.3f} x the first")
    legend = (
        "x the first: the median over the rounds of this build's time divided by the "
        "first build's time in the same round"
    )
    return f"{format_table(cases)}\n{legend}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--meshctl",
        action="append",
        required=True,
        metavar="PATH",
        help="a build's meshctl executable; give two or more (the first is the reference)",
    )
    parser.add_argument("--runs", type=positive, default=15, help="timed rounds (default 15)")
    parser.add_argument("--services", type=positive, help="render a generated spec with N services")
    parser.add_argument(
        "--cold", action="store_true", help="every render with an empty template cache"
    )
    args = parser.parse_args(argv)
    if len(args.meshctl) < 2:
        parser.error("give --meshctl at least twice")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="meshctl-compare-") as tmp:
        work = Path(tmp)
        cases = []
        try:
            for index, given in enumerate(args.meshctl):
                meshctl = find_meshctl(given)
                spec = prepare_spec(meshctl, args.services, work / f"spec-{index}")
                cases.append(Case(meshctl, [meshctl, "render", str(spec)]))
            compare(cases, args.runs, work, cold=args.cold)
        except CommandFailed as exc:
            print(f"failed: {' '.join(exc.argv)} (exit {exc.code})\n{exc.output}", file=sys.stderr)
            return 1
    label = f"{args.services} services" if args.services else "each build's example"
    rounds = f"{args.runs} interleaved round{'s' if args.runs > 1 else ''}"
    cache = ", each with an empty template cache" if args.cold else ""
    print(f"render of {label}{cache}, {rounds} after a warm-up round")
    for case in cases:
        print(f"  {case.name}: Python {interpreter_of(case.name)}")
    print(report(cases))
    return 0


if __name__ == "__main__":
    sys.exit(main())
