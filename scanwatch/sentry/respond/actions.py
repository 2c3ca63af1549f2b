"""PortSentry's block actions (KILL_HOSTS_DENY, KILL_ROUTE, KILL_RUN_CMD), in its order,
run by one worker thread so a slow or hung admin command never delays detection.

PortSentry 1.2 (portsentry.c DisposeTCP/DisposeUDP, portsentry_io.c KillRoute/KillRunCmd)
runs each action with system() on the detection path; scanwatch keeps the order and the
log lines but adds a timeout that kills the command's whole process group, a bounded
output capture and a bounded queue.
"""
import os
import queue
import selectors
import signal
import subprocess
import threading
import time
from typing import NamedTuple

from . import records

STEPS = ("hosts_deny", "route", "command")
OUTPUT_TAIL = 2048  # bytes of output kept: enough for an error message, never unbounded


def action_order(level, run_cmd_first):
    """Step names for BLOCK_TCP/BLOCK_UDP `level`, as DisposeTCP/DisposeUDP order them."""
    level = int(level)
    if level == 1:
        return ["command", "hosts_deny", "route"] if run_cmd_first else list(STEPS)
    if level == 2:  # "run external command only"; KILL_RUN_CMD_FIRST is irrelevant
        return ["command"]
    if level == 0:
        return []
    raise ValueError(f"{level!r} is not a BLOCK_TCP/BLOCK_UDP level (0, 1 or 2)")


class CommandResult(NamedTuple):
    command: str
    returncode: int  # negative: killed by that signal; 127: could not be run
    timed_out: bool
    output_tail: str  # the last OUTPUT_TAIL bytes of stdout+stderr
    seconds: float

    @property
    def ok(self):
        return self.returncode == 0 and not self.timed_out


def run_command(template, target, port, mode, timeout=30.0):
    """Expand the macros and run the result with /bin/sh -c; never raises for a command
    that fails, hangs or cannot start. A target that is not an IP address, a bad port or
    mode raise ValueError before any process exists."""
    # expand_macros validates every substituted value, so the shell only ever sees the
    # root-owned template plus an address, a number and a fixed mode word
    command = records.expand_macros(template, target, port, mode)
    start = time.monotonic()
    try:
        # own session = own process group, so a timeout can kill what the command
        # spawned too; cwd / like PortSentry's daemon, so no mount point is held busy
        proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                cwd="/", close_fds=True, start_new_session=True)
    except OSError as err:
        return CommandResult(command, 127, False, f"cannot run /bin/sh: {err}",
                             time.monotonic() - start)
    tail, timed_out = _collect(proc, start + timeout)
    return CommandResult(command, proc.returncode, timed_out,
                         tail.decode("utf-8", "replace"), time.monotonic() - start)


def _collect(proc, deadline):
    """Read output (keeping the tail) until the shell exits or the deadline passes."""
    tail, eof, fd = b"", False, proc.stdout.fileno()
    os.set_blocking(fd, False)
    with proc.stdout, selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            exited = proc.poll() is not None  # polled first: its output is in the pipe
            for _ in range(16):  # bounded: a chatty background child cannot pin us here
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    break
                eof = not chunk
                if eof:
                    break
                tail = (tail + chunk)[-OUTPUT_TAIL:]
            if exited:
                # a backgrounded child (`cmd &`, fine with system()) may still hold the
                # pipe; it is left running, as it would be under PortSentry
                return tail, False
            remaining = deadline - time.monotonic()
            if eof and remaining > 0:
                try:
                    proc.wait(remaining)
                    return tail, False
                except subprocess.TimeoutExpired:
                    remaining = 0
            if remaining <= 0:
                _kill_group(proc)
                return tail, True
            sel.select(min(remaining, 0.1))


def _kill_group(proc):
    # SIGKILL, not TERM: the command has already used its whole time and the worker
    # thread must not wait on it any longer
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _status(result, timeout):
    if result.timed_out:
        return "timed out after %gs and was killed" % timeout
    if result.returncode < 0:
        return f"was killed by signal {-result.returncode}"
    return f"exited with status {result.returncode}"


def _report_failure(logger, kind, target, result, timeout):
    # PortSentry's own line where it has one: its 127 check meant "the shell could not
    # exec the command" (system() failures, <0, cannot happen here as a separate case)
    if result.returncode == 127 and not result.timed_out:
        what = "block host" if kind == "route" else "run command"
        logger.error("adminalert: ERROR: There was an error trying to %s (exec fail) %s",
                     what, target)
    last = result.output_tail.strip().splitlines()[-1:] if result.output_tail else []
    detail = f": {records._printable(last[0])[:200]}" if last else ""
    logger.error('adminalert: ERROR: command "%s" for %s %s%s',
                 records._printable(result.command), target, _status(result, timeout), detail)


def run_steps(steps, logger, target, port, mode, *, hosts_deny=None, route="", command="",
              timeout=30.0):
    """Run `steps` (from action_order) in order; True if every step that ran succeeded.

    hosts_deny is a callable (it logs its own wrappers line; returning False or raising
    is a failure); route and command are KILL_ROUTE / KILL_RUN_CMD templates. Like
    DisposeTCP, a failed step does not stop the later ones, and an empty one is skipped.
    """
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ValueError(f"unknown action step(s): {', '.join(map(str, unknown))}")
    # validates target, port and mode (ValueError) before any step runs
    target = records.expand_macros("$TARGET$", target, port, mode)
    ok = True
    for step in steps:
        if step == "hosts_deny":
            if hosts_deny is None:
                continue
            try:
                ok = hosts_deny() is not False and ok
            except Exception as err:  # noqa: BLE001 - one step's failure is logged, not fatal
                logger.error("error: KILL_HOSTS_DENY for %s: %s", target,
                             records._printable(err))
                ok = False
            continue
        template = route if step == "route" else command
        if not template:
            continue
        if step == "route" and "$TARGET$" not in template:
            # KillRoute refuses a route command that would not name the host
            logger.info("adminalert: No target variable specified in KILL_ROUTE option. "
                        "Skipping.")
            ok = False
            continue
        result = run_command(template, target, port, mode, timeout)
        if not result.ok:
            _report_failure(logger, step, target, result, timeout)
            # As PortSentry: only a command that could not run (or hung) fails the block;
            # its exit status is the admin's script's business, logged above.
            ok = ok and not (result.returncode == 127 or result.timed_out)
        elif step == "route":
            logger.info(records.blocked_dropped_route_line(target, result.command))
        else:
            logger.info(records.external_command_line(target, result.command))
    return ok


_STOP = object()


class ActionWorker:
    """One daemon thread running submitted jobs strictly in submission order."""

    def __init__(self, logger, timeout=30.0, max_queue=10000):
        self.log, self.timeout = logger, timeout
        self.dropped, self._burst = 0, 0  # _burst: drops since the queue last ran empty
        self._lock = threading.Lock()
        self._closed = self._abandon = False
        self._queue = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._loop, name="scanwatch-actions",
                                        daemon=True)
        self._thread.start()

    def submit(self, job):
        """Queue a callable; False (and counted in .dropped) if closed or full."""
        with self._lock:
            if self._closed:
                return False
            try:
                self._queue.put_nowait(job)
                return True
            except queue.Full:
                self.dropped += 1
                self._burst += 1
                first = self._burst == 1
        if first:  # once per burst: a flood must not turn into a flood of log lines
            self.log.error("adminalert: ERROR: action queue full (%d jobs); dropping block "
                           "actions until it drains", self._queue.maxsize)
        return False

    def run_steps(self, steps, target, port, mode, **templates):
        """run_steps() with this worker's logger and timeout (call it inside a job)."""
        return run_steps(steps, self.log, target, port, mode, timeout=self.timeout,
                         **templates)

    def submit_steps(self, steps, target, port, mode, **templates):
        return self.submit(lambda: self.run_steps(steps, target, port, mode, **templates))

    def flush(self, timeout=5.0):
        """Wait until every job submitted so far has run; False on timeout or if closed."""
        deadline, done = time.monotonic() + timeout, threading.Event()
        if self._closed:
            return False
        try:  # waits for room: a flush is not a job to drop
            self._queue.put(done.set, timeout=max(timeout, 0.001))
        except queue.Full:
            return False
        return done.wait(max(deadline - time.monotonic(), 0))

    def close(self, wait=5.0):
        """Stop accepting jobs and run the queued ones until `wait` seconds have passed;
        True if the queue drained. A job still running then is left to its own timeout."""
        deadline = time.monotonic() + wait
        with self._lock:
            if self._closed:
                return not self._thread.is_alive()
            self._closed = True
        try:
            self._queue.put(_STOP, timeout=max(deadline - time.monotonic(), 0.001))
        except queue.Full:
            pass
        self._thread.join(max(deadline - time.monotonic(), 0))
        if self._thread.is_alive():
            self._abandon = True
            self.log.error("adminalert: ERROR: %d block action(s) not run at shutdown",
                           self._queue.qsize())
            return False
        return True

    def _loop(self):
        while not self._abandon:
            job = self._queue.get()
            if job is _STOP:
                return
            try:
                job()
            except Exception as err:  # noqa: BLE001 - a bad job must never end the worker
                self.log.error("error: action failed: %s",
                               records._printable(f"{type(err).__name__}: {err}"))
            if self._queue.empty():
                with self._lock:
                    burst, self._burst = self._burst, 0
                if burst:
                    self.log.error("adminalert: action queue drained; %d job(s) were "
                                   "dropped", burst)
