"""`python -m meshctl` and the `meshctl` console script.

`meshctl --version` answers before the CLI framework is imported: it runs in
shell prompts and CI preambles, where 100 ms of imports is noticeable.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import os
import sys
import types


class _NoPydanticPlugins(types.ModuleType):
    """Stands in for ``pydantic.plugin._loader`` when plugins are off.

    The real module imports importlib.metadata (and with it email, zipfile and
    socket) at the top, only for ``get_plugins`` to return nothing when
    PYDANTIC_DISABLE_PLUGINS turns them all off: a twentieth of a render. Any other
    name is looked up in the real module, so a pydantic that needs more of it
    still gets it.
    """

    @staticmethod
    def get_plugins() -> tuple[()]:
        return ()

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), name)


def main() -> None:
    # A render builds hundreds of thousands of small, acyclic objects and exits;
    # reference counting frees them, and the cyclic collector's passes over
    # them cost a sixth of the run. (Library callers keep the collector.)
    gc.disable()
    # Pydantic looks for plugins in every installed distribution's entry points
    # on first use (tens of milliseconds); meshctl's validation uses none, and
    # a plugin installed for another program must not change it.
    # (Pydantic reads any of these three values as "all plugins off".)
    if os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__") in ("__all__", "1", "true"):
        name = "pydantic.plugin._loader"
        sys.modules.setdefault(name, _NoPydanticPlugins(name))
    if sys.argv[1:] == ["--version"]:
        from meshctl import __version__

        print(f"meshctl {__version__}")
        return
    from meshctl.cli import main as cli_main

    cli_main()


def _exit_status(code: object) -> int:
    # What the interpreter makes of SystemExit's code.
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def run() -> None:
    """The `meshctl` command: `main`, then leave without tearing the interpreter down.

    A render leaves hundreds of thousands of objects behind; freeing them one by
    one and unloading every module at shutdown is a twentieth of the run, and
    the operating system reclaims the memory at once. Exit handlers still run
    and the standard streams are flushed, as at a normal exit.
    """
    try:
        main()
        status = 0
    except SystemExit as exc:
        status = _exit_status(exc.code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            # Output left in the buffer for a reader that has gone: Python's
            # own exit reports the failed flush with 120.
            status = status or 120
    os._exit(status)


if __name__ == "__main__":
    run()
