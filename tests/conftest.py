"""Shared pytest configuration for scanwatch.

* Everything under tests/system gets the ``system`` marker, and system tests
  run after the unit tests.
* System tests need root and working network namespaces (``ip netns``);
  without them they are skipped, with the reason.
* With CI=true a skip is not acceptable: any skipped test (or skipped
  module) makes the whole session fail, naming what was skipped.
* xfail is strict (pyproject: xfail_strict), and with CI=true an expected
  failure (or a non-strict unexpected pass) counts like a skip: a known bug
  may not hide in a green CI run.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SYSTEM_DIR = Path(__file__).resolve().parent / "system"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _is_system(item: pytest.Item) -> bool:
    path = Path(str(item.path)).resolve()
    return path == SYSTEM_DIR or SYSTEM_DIR in path.parents


@functools.lru_cache(maxsize=None)
def system_unavailable_reason() -> str | None:
    """Why system tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "system tests need root (namespaces, veth, XDP, nftables)"
    ip = shutil.which("ip")
    if ip is None:
        return "system tests need the `ip` command (iproute2)"
    # Listing is not enough (it works unprivileged): really make and remove
    # a namespace, as containers without CAP_SYS_ADMIN cannot.
    probe = f"swprobe-{os.getpid()}"
    try:
        add = subprocess.run([ip, "netns", "add", probe], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns` is unavailable: {exc}"
    if add.returncode != 0:
        return f"`ip netns add` is unavailable: {add.stderr.strip() or add.returncode}"
    subprocess.run([ip, "netns", "del", probe], capture_output=True, timeout=20)
    return None


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        if _is_system(item):
            item.add_marker(pytest.mark.system)
    # Unit tests first, then system tests; order otherwise unchanged.
    items.sort(key=lambda it: it.get_closest_marker("system") is not None)


def pytest_runtest_setup(item):
    if item.get_closest_marker("system") is not None:
        reason = system_unavailable_reason()
        if reason is not None:
            pytest.skip(reason)


# --- CI=true: a skip or an xfail fails the session --------------------------------------

_skipped: dict[str, str] = {}


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr or "skipped")


def pytest_runtest_logreport(report):
    if hasattr(report, "wasxfail"):
        # An expected failure hides a known bug: under CI it fails the run like a skip.
        _skipped.setdefault(report.nodeid, f"xfail: {report.wasxfail or 'expected failure'}")
    elif report.skipped:
        _skipped.setdefault(report.nodeid, _skip_reason(report))


def pytest_collectreport(report):
    if report.skipped:
        _skipped.setdefault(report.nodeid or "<collection>", _skip_reason(report))


def _ci_skip_lines() -> list[str]:
    head = (f"CI=true: {len(_skipped)} skipped test(s) fail this run: "
            + ", ".join(sorted(_skipped)))
    return [head] + [f"  {nodeid}: {reason}" for nodeid, reason in sorted(_skipped.items())]


def pytest_sessionfinish(session, exitstatus):
    if not (_in_ci() and _skipped):
        return
    if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if session.config.pluginmanager.get_plugin("terminalreporter") is None:
        print("\n".join(_ci_skip_lines()))  # e.g. -p no:terminal


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _in_ci() and _skipped:
        terminalreporter.section("skipped tests fail the run when CI=true", sep="=", red=True)
        for line in _ci_skip_lines():
            terminalreporter.write_line(line, red=True, bold=True)
