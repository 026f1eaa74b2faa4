"""`python -m meshctl` and the `meshctl` console script.

`meshctl --version` answers before the CLI framework is imported: it runs in
shell prompts and CI preambles, where 100 ms of imports is noticeable.
"""

from __future__ import annotations

import gc
import os
import sys


def main() -> None:
    # A render builds hundreds of thousands of small, acyclic objects and exits;
    # reference counting frees them, and the cyclic collector's passes over
    # them cost a sixth of the run. (Library callers keep the collector.)
    gc.disable()
    # Pydantic looks for plugins in every installed distribution's entry points
    # on first use (tens of milliseconds); meshctl's validation uses none, and
    # a plugin installed for another program must not change it.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    if sys.argv[1:] == ["--version"]:
        from meshctl import __version__

        print(f"meshctl {__version__}")
        return
    from meshctl.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
