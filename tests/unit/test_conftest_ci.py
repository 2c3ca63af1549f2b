"""The shared conftest: under CI=true a skip or an expected failure fails the run, and an
xfail that passes fails everywhere (strict). Runs pytest on a scratch suite."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"
ROOT = Path(__file__).resolve().parents[2]

SUITE = '''
import pytest

def test_ok():
    assert True

@pytest.mark.xfail(reason="BUG: known")
def test_known_bug():
    assert False
'''

XPASS = '''
import pytest

@pytest.mark.xfail(reason="BUG: fixed meanwhile")
def test_fixed():
    assert True
'''


def _run(tmp_path, body, ci):
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_scratch.py").write_text(body)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")  # its xfail_strict
    env = dict(os.environ, CI="true" if ci else "false")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_xfail_fails_ci_but_not_a_local_run(tmp_path):
    local = _run(tmp_path, SUITE, ci=False)
    assert local.returncode == 0, local.stdout
    assert "1 xfailed" in local.stdout
    ci = _run(tmp_path, SUITE, ci=True)
    assert ci.returncode == 1, ci.stdout
    assert "test_known_bug: xfail: BUG: known" in ci.stdout


def test_an_xfail_that_passes_fails_the_run(tmp_path):
    res = _run(tmp_path, XPASS, ci=False)
    assert res.returncode == 1, res.stdout
    assert "XPASS(strict)" in res.stdout or "1 failed" in res.stdout
