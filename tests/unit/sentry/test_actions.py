"""actions.py: PortSentry's order and log lines; real commands, timeouts, the worker."""
import itertools
import logging
import os
import threading
import time

import pytest

from scanwatch.sentry.respond import actions
from scanwatch.sentry.respond.actions import ActionWorker, action_order, run_command, run_steps

_ids = itertools.count()


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _logger():
    log = logging.getLogger(f"scanwatch.test.actions.{next(_ids)}")
    log.propagate = False
    log.setLevel(logging.INFO)
    handler = _Lines()
    log.addHandler(handler)
    return log, handler.lines


def _alive(pid):
    """Running (a zombie waiting for init to reap it counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("level, first, expected", [
    (1, False, ["hosts_deny", "route", "command"]),
    (1, True, ["command", "hosts_deny", "route"]),
    (2, False, ["command"]),
    (2, True, ["command"]),
    (0, False, []),
    (0, True, []),
])
def test_action_order(level, first, expected):
    assert action_order(level, first) == expected
    assert action_order(str(level), int(first)) == expected


def test_action_order_rejects_other_levels():
    with pytest.raises(ValueError):
        action_order(3, False)


@pytest.mark.parametrize("level", [0, 1, 2])
@pytest.mark.parametrize("first", [False, True])
def test_steps_run_in_portsentry_order(tmp_path, level, first):
    out = tmp_path / "order"
    log, lines = _logger()

    def deny():
        with open(out, "a") as f:
            f.write("hosts_deny\n")

    ok = run_steps(action_order(level, first), log, "192.0.2.7", 1524, "stcp",
                   hosts_deny=deny, route=f"echo route $TARGET$ >> {out}",
                   command=f"echo command $PORT$ >> {out}")
    assert ok
    got = out.read_text().splitlines() if out.exists() else []
    expected = {"hosts_deny": "hosts_deny", "route": "route 192.0.2.7",
                "command": "command 1524"}
    assert got == [expected[s] for s in action_order(level, first)]
    if "route" in action_order(level, first):
        assert (f'attackalert: Host 192.0.2.7 has been blocked via dropped route using '
                f'command: "echo route 192.0.2.7 >> {out}"') in lines
    if "command" in action_order(level, first):
        assert (f'attackalert: External command run for host: 192.0.2.7 using command: '
                f'"echo command 1524 >> {out}"') in lines


def test_empty_templates_are_skipped_silently():
    log, lines = _logger()
    assert run_steps(action_order(1, False), log, "192.0.2.7", 1, "stcp")
    assert lines == []


@pytest.mark.parametrize("target, shown", [
    ("192.0.2.9", "192.0.2.9"),
    ("2001:DB8::0:1", "2001:db8::1"),
    ("::ffff:192.0.2.9", "192.0.2.9"),
])
def test_macro_expansion(target, shown):
    r = run_command("echo $TARGET$ $PORT$ $MODE$", target, 31337, "sudp")
    assert r.ok and r.returncode == 0 and not r.timed_out
    assert r.command == f"echo {shown} 31337 sudp"
    assert r.output_tail == f"{shown} 31337 sudp\n"


@pytest.mark.parametrize("target", [
    "192.0.2.1; touch {f}", "$(touch {f})", "evil.example.com", "192.0.2.1\n",
    "fe80::1%eth0;touch {f}", "",
])
def test_hostile_target_refused_before_any_shell(tmp_path, target):
    flag = tmp_path / "ran"
    target = target.format(f=flag)
    log, lines = _logger()
    with pytest.raises(ValueError):
        run_command(f"touch {flag}", target, 1, "stcp")
    called = []
    with pytest.raises(ValueError):
        run_steps(["hosts_deny", "route", "command"], log, target, 1, "stcp",
                  hosts_deny=lambda: called.append(1), route=f"touch {flag} $TARGET$",
                  command=f"touch {flag}")
    assert not flag.exists() and not called and lines == []


def test_bad_port_and_mode_refused():
    with pytest.raises(ValueError):
        run_command("true", "192.0.2.1", 70000, "stcp")
    with pytest.raises(ValueError):
        run_command("true", "192.0.2.1", 1, "stcp; reboot")


def test_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "pid"
    start = time.monotonic()
    r = run_command(f"sleep 100 & echo $! > {pidfile}; sleep 100", "192.0.2.1", 1, "stcp",
                    timeout=0.5)
    assert r.timed_out and not r.ok
    assert time.monotonic() - start < 5
    child = int(pidfile.read_text())
    for _ in range(50):  # the orphan is reaped by init asynchronously
        if not _alive(child):
            break
        time.sleep(0.05)
    assert not _alive(child)


def test_background_child_does_not_hold_up_a_finished_command():
    r = run_command("sleep 3 >/dev/null 2>&1 & echo started", "192.0.2.1", 1, "stcp",
                    timeout=10)
    assert r.ok and r.output_tail == "started\n" and r.seconds < 2


def test_output_tail_is_bounded():
    r = run_command("head -c 100000 /dev/zero | tr '\\0' a; echo END", "192.0.2.1", 1,
                    "stcp")
    assert r.ok and len(r.output_tail) == actions.OUTPUT_TAIL
    assert r.output_tail.endswith("aEND\n")


def test_missing_command_and_failures_never_raise():
    r = run_command("/nonexistent/kill-route $TARGET$", "192.0.2.1", 1, "stcp")
    assert r.returncode == 127 and not r.ok
    r = run_command("false", "192.0.2.1", 1, "stcp")
    assert r.returncode == 1 and not r.ok
    r = run_command("kill -9 $$", "192.0.2.1", 1, "stcp")
    assert r.returncode == -9 and not r.ok


def test_failed_route_logs_portsentry_and_scanwatch_lines():
    log, lines = _logger()
    ok = run_steps(["route", "command"], log, "192.0.2.5", 80, "stcp",
                   route="/nonexistent/route $TARGET$", command="echo oops >&2; exit 3")
    assert not ok
    assert lines[0] == ("adminalert: ERROR: There was an error trying to block host "
                        "(exec fail) 192.0.2.5")
    assert lines[1].startswith('adminalert: ERROR: command "/nonexistent/route 192.0.2.5" '
                               'for 192.0.2.5 exited with status 127')
    assert lines[2] == ('adminalert: ERROR: command "echo oops >&2; exit 3" for 192.0.2.5 '
                        'exited with status 3: oops')
    assert len(lines) == 3  # no success line for a failed command


def test_timed_out_command_logged():
    log, lines = _logger()
    assert not run_steps(["command"], log, "192.0.2.5", 80, "stcp", command="sleep 30",
                         timeout=0.3)
    assert lines == ['adminalert: ERROR: command "sleep 30" for 192.0.2.5 timed out after '
                     '0.3s and was killed']


def test_route_without_target_is_skipped_like_killroute(tmp_path):
    log, lines = _logger()
    flag = tmp_path / "ran"
    assert not run_steps(["route"], log, "192.0.2.5", 80, "stcp", route=f"touch {flag}")
    assert not flag.exists()
    assert lines == ["adminalert: No target variable specified in KILL_ROUTE option. Skipping."]


def test_hosts_deny_failure_does_not_stop_later_steps(tmp_path):
    log, lines = _logger()
    out = tmp_path / "out"

    def deny():
        raise OSError("read-only file system")

    assert not run_steps(["hosts_deny", "command"], log, "192.0.2.5", 80, "stcp",
                         hosts_deny=deny, command=f"echo ran > {out}")
    assert out.read_text() == "ran\n"
    assert lines[0] == "error: KILL_HOSTS_DENY for 192.0.2.5: read-only file system"


def test_worker_survives_failing_jobs_and_commands(tmp_path):
    log, lines = _logger()
    worker = ActionWorker(log, timeout=5)
    out = tmp_path / "out"

    def boom():
        raise RuntimeError("bad\njob")

    assert worker.submit(boom)
    assert worker.submit_steps(["command"], "192.0.2.3", 9, "sudp", command="false")
    assert worker.submit_steps(["command"], "192.0.2.3", 9, "sudp", command=f"echo ok > {out}")
    assert worker.close(wait=10)
    assert out.read_text() == "ok\n"
    assert lines[0] == "error: action failed: RuntimeError: bad?job"
    assert lines[1] == 'adminalert: ERROR: command "false" for 192.0.2.3 exited with status 1'
    assert lines[2].startswith("attackalert: External command run for host: 192.0.2.3")
    assert not worker.submit(lambda: None)  # closed


def test_worker_preserves_order_across_200_jobs(tmp_path):
    log, _ = _logger()
    worker = ActionWorker(log)
    out = tmp_path / "seq"
    seen = []
    for i in range(200):
        if i % 20 == 0:  # some real commands in between the in-process jobs
            assert worker.submit_steps(["command"], "192.0.2.1", i, "stcp",
                                       command=f"echo $PORT$ >> {out}")
        assert worker.submit(lambda i=i: seen.append(i))
    assert worker.flush(timeout=30)
    assert seen == list(range(200))
    assert out.read_text().split() == [str(i) for i in range(0, 200, 20)]
    assert worker.close()


def test_worker_queue_overflow_is_counted_and_logged_once(tmp_path):
    log, lines = _logger()
    worker = ActionWorker(log, max_queue=3)
    gate = threading.Event()
    started = threading.Event()

    def block():
        started.set()
        gate.wait(10)

    assert worker.submit(block)
    assert started.wait(5)
    ran = []
    accepted = [worker.submit(lambda i=i: ran.append(i)) for i in range(10)]
    assert accepted == [True] * 3 + [False] * 7
    assert worker.dropped == 7
    full = [line for line in lines if "action queue full" in line]
    assert len(full) == 1
    gate.set()
    assert worker.flush(timeout=5)
    assert ran == [0, 1, 2]
    assert "adminalert: action queue drained; 7 job(s) were dropped" in lines
    assert worker.close()


def test_close_deadline_abandons_a_stuck_queue():
    log, lines = _logger()
    worker = ActionWorker(log)
    gate = threading.Event()
    worker.submit(lambda: gate.wait(10))
    worker.submit(lambda: None)
    start = time.monotonic()
    assert not worker.close(wait=0.3)
    assert time.monotonic() - start < 2
    assert any("not run at shutdown" in line for line in lines)
    gate.set()
