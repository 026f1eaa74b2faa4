"""The bundled example's rendered tree, committed for review.

A change to meshctl's output shows up here as a diff of real files, reviewed
like code. Regenerate after an intended change with:

    MESHCTL_UPDATE_GOLDEN=1 pytest tests/test_golden.py
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from conftest import Rendered

GOLDEN = Path(__file__).resolve().parent / "golden" / "example"


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_example_render_matches_the_golden_tree(example_tree: Rendered) -> None:
    if os.environ.get("MESHCTL_UPDATE_GOLDEN"):
        shutil.rmtree(GOLDEN, ignore_errors=True)
        shutil.copytree(example_tree.tree, GOLDEN)
    expected = _files(GOLDEN)
    actual = _files(example_tree.tree)
    assert sorted(actual) == sorted(expected), (
        "files differ from tests/golden/example; regenerate with "
        "MESHCTL_UPDATE_GOLDEN=1 pytest tests/test_golden.py and review the diff"
    )
    for path, data in actual.items():
        assert data == expected[path], f"{path} differs from the golden copy"
