"""`python -m meshctl` and the `meshctl` console script.

`meshctl --version` answers before the CLI framework is imported: it runs in
shell prompts and CI preambles, where 100 ms of imports is noticeable.
"""

from __future__ import annotations

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


if __name__ == "__main__":
    main()
