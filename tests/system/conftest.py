"""Fixtures for system tests: `lab` (per test) and `module_lab` (per module).

Both yield a started lab.Lab (target and scanner namespaces joined by a veth
pair) and close it afterwards, whether the test passed or not. The root
conftest skips system tests when not root or when `ip netns` does not work.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from lab import TARGET_SYSCTLS, Lab  # noqa: E402
from sentryproc import listen  # noqa: E402


def _read_root_sysctls() -> dict[str, str | None]:
    values = {}
    for key in TARGET_SYSCTLS:
        try:
            with open("/proc/sys/" + key.replace(".", "/")) as f:
                values[key] = f.read().strip()
        except OSError:
            values[key] = None
    return values


# Read when this conftest is imported, i.e. before any lab exists.
_ROOT_SYSCTLS_AT_START = _read_root_sysctls()


@pytest.fixture
def root_sysctls():
    """(values at session start, function reading the current values) for
    the sysctls that labs set inside their target namespace."""
    return dict(_ROOT_SYSCTLS_AT_START), _read_root_sysctls


@pytest.fixture
def lab():
    with Lab() as the_lab:
        yield the_lab


@pytest.fixture(scope="module")
def module_lab():
    with Lab() as the_lab:
        yield the_lab


@pytest.fixture
def workdir():
    d = Path(tempfile.mkdtemp(prefix="swres-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def web(lab):
    """An open TCP port on the target, to tell a block (connect fails) from no block."""
    p = listen(lab, 8080)
    yield 8080
    p.kill()
    p.wait()
