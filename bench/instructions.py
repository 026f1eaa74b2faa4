"""Count the CPU instructions of one `meshctl render`, exactly, under valgrind.

Wall and CPU times on a shared machine swing by 2x within minutes; the number
of instructions a render executes (user space, whole process, interpreter
start included) does not. Use it to compare two builds or a change:

    python bench/instructions.py                        # the bundled example
    python bench/instructions.py --services 1000        # a generated spec
    python bench/instructions.py --meshctl A --meshctl B

Each render goes into a new, empty directory, as `render example (fresh)` in
run.py. Needs valgrind (Debian: `apt-get install valgrind`); standard library
only. A run takes about 60x the render's time. See bench/README.md.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from run import find_meshctl, generate_spec

_COLLECTED = re.compile(r"Collected : (\d+)")


def instructions(meshctl: str, spec: Path, work: Path) -> int:
    """Instructions of `meshctl render spec` into a new directory under work."""
    out = Path(tempfile.mkdtemp(dir=work)) / "rendered"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        meshctl,
        "render",
        str(spec),
        "-o",
        str(out),
    ]
    run = subprocess.run(command, capture_output=True, text=True, check=False)
    match = _COLLECTED.search(run.stderr)
    if run.returncode != 0 or match is None:
        sys.exit(f"failed: {' '.join(command)}\n{run.stdout}{run.stderr}")
    return int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meshctl", action="append", help="executable(s) to measure")
    parser.add_argument("--services", type=int, help="a generated spec with N services")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    executables = args.meshctl or [find_meshctl(None)]
    with tempfile.TemporaryDirectory(prefix="meshctl-instructions-") as tmp:
        work = Path(tmp)
        if args.services:
            spec = work / "platform.yaml"
            spec.write_text(generate_spec(args.services))
            label = f"{args.services} services"
        else:
            subprocess.run([executables[0], "init", str(work)], check=True, capture_output=True)
            spec, label = work / "platform.yaml", "the example"
        counts = [(exe, instructions(exe, spec, work)) for exe in executables]
    first = counts[0][1]
    for exe, count in counts:
        ratio = f"  {count / first:.3f} x the first" if exe != counts[0][0] else ""
        print(f"{count:>16,}  render of {label}  {exe}{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
