"""pyflakes over the whole tree: unused imports, undefined names, f-strings without
placeholders. Cheap, and it catches what a refactor leaves behind."""
import io
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_pyflakes_finds_nothing():
    pytest.importorskip("pyflakes", reason="`pip install -e .[test]` installs pyflakes")
    from pyflakes.api import checkRecursive
    from pyflakes.reporter import Reporter
    out, err = io.StringIO(), io.StringIO()
    paths = [str(ROOT / d) for d in ("scanwatch", "tests", "bench")]
    count = checkRecursive(paths, Reporter(out, err))
    assert count == 0, out.getvalue() + err.getvalue()
