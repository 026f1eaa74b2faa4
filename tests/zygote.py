"""Run many meshctl CLI invocations, each in its own process, without paying
Python's and meshctl's import time for each: this process imports the CLI
once, then forks a child per invocation. A child is a fresh process (its own
working directory, streams, exit code), running exactly what `python -m
meshctl` runs; only the imports are shared.

Protocol: a JSON list of jobs on stdin (`{"args": [...], "cwd": "..."}`), a
JSON list of results on stdout (`{"code": n, "stdout": "...", "stderr": "..."}`),
in the same order. The environment is this process's (the caller sets it).
Used by tests/test_bad_input.py, which runs meshctl a few hundred times.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path


def _child(args: list[str], cwd: str, out: int, err: int) -> None:
    os.chdir(cwd)
    os.dup2(out, 1)
    os.dup2(err, 2)
    sys.argv = ["meshctl", *args]
    code = 0
    try:
        from meshctl.__main__ import main

        main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:  # what the interpreter would do: print, exit 1
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _warm_up() -> None:
    """Validate the bundled example and a refused spec once, in this process:
    pydantic builds its validators and the JSON Schema checker compiles on
    first use, which every child would otherwise repeat."""
    from meshctl.__main__ import main as cli
    from meshctl.resources import example_spec

    with tempfile.TemporaryDirectory() as scratch:
        refused = Path(scratch) / "platform.yaml"
        refused.write_text(example_spec().read_text().replace("port: 8080", "port: eighty", 1))
        for spec in (example_spec(), refused):
            sys.argv = ["meshctl", "validate", str(spec)]
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
                contextlib.suppress(SystemExit),
            ):
                cli()


def main() -> None:
    _warm_up()

    jobs = json.load(sys.stdin)
    timeout = float(os.environ.get("MESHCTL_ZYGOTE_TIMEOUT", "120"))
    width = os.cpu_count() or 2
    results: list[dict[str, object] | None] = [None] * len(jobs)
    running: dict[int, tuple[int, float, object, object]] = {}
    pending = list(enumerate(jobs))
    with tempfile.TemporaryDirectory() as scratch:
        while pending or running:
            while pending and len(running) < width:
                index, job = pending.pop(0)
                out = (Path(scratch) / f"{index}.out").open("w+b")
                err = (Path(scratch) / f"{index}.err").open("w+b")
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _child(job["args"], job["cwd"], out.fileno(), err.fileno())
                running[pid] = (index, time.monotonic(), out, err)
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                for child, (_, started, _, _) in list(running.items()):
                    if time.monotonic() - started > timeout:
                        os.kill(child, signal.SIGKILL)
                time.sleep(0.005)
                continue
            index, _, out, err = running.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            streams = []
            for handle in (out, err):
                handle.seek(0)  # type: ignore[attr-defined]
                streams.append(handle.read().decode("utf-8", "replace"))  # type: ignore[attr-defined]
                handle.close()  # type: ignore[attr-defined]
            results[index] = {"code": code, "stdout": streams[0], "stderr": streams[1]}
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
