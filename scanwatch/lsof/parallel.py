"""Half of a /proc walk in a forked child, for a second CPU.

The walk is mostly system calls (readlink of every /proc/PID/fd/N), which one Python
process cannot overlap; a forked child can. Forked(func, items) starts a child that
computes func(item) for each item and sends the results back (marshal); get(item) waits
for them on first use. Whatever goes wrong in the child (it died, sent garbage), the
parent simply computes those items itself, so the answer never depends on the child.
"""
from __future__ import annotations

import os

MIN_ITEMS = 48  # below this a fork costs more than it saves


def worth_it(n: int) -> bool:
    """Fork only for a big walk, and only when a CPU is idle right now: on a busy machine
    the child would just take turns with the parent on the same CPU."""
    force = os.environ.get("SCANWATCH_LSOF_FORK", "")   # "always" / "never": for tests
    if force == "always":
        return True
    if force == "never" or n < MIN_ITEMS:
        return False
    try:
        cpus = len(os.sched_getaffinity(0))
    except OSError:
        cpus = os.cpu_count() or 1
    if cpus < 2:
        return False
    try:
        with open("/proc/loadavg", "rb") as f:
            running = int(f.read().split()[3].split(b"/")[0])  # this process included
    except (OSError, ValueError, IndexError):
        return False
    return running < cpus


class Forked:
    def __init__(self, func, items):
        self.func = func
        self.items = set(items)
        self.results: dict | None = None
        self.pid = None
        self.fd = None
        try:
            r, w = os.pipe()
        except OSError:
            return
        try:
            pid = os.fork()
        except OSError:
            os.close(r)
            os.close(w)
            return
        if pid == 0:  # the child: compute, send, leave without running any cleanup
            code = 1
            try:
                os.close(r)
                import marshal
                data = marshal.dumps({i: func(i) for i in items})
                view = memoryview(data)
                while view:
                    view = view[os.write(w, view):]
                code = 0
            except BaseException:
                pass
            finally:
                os._exit(code)
        os.close(w)
        self.pid, self.fd = pid, r

    def __contains__(self, item) -> bool:
        return item in self.items

    def get(self, item):
        if self.results is None:
            self.results = self._collect()
        if item in self.results:
            return self.results[item]
        return self.func(item)

    def _collect(self) -> dict:
        if self.fd is None:
            return {}
        chunks = []
        try:
            while True:
                chunk = os.read(self.fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError:
            chunks = []
        finally:
            os.close(self.fd)
            self.fd = None
        status = self._reap()
        if status != 0 or not chunks:
            return {}
        import marshal
        try:
            out = marshal.loads(b"".join(chunks))
        except (EOFError, ValueError, TypeError):
            return {}
        return out if isinstance(out, dict) else {}

    def _reap(self) -> int:
        if self.pid is None:
            return 1
        pid, self.pid = self.pid, None
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return 1
        return os.waitstatus_to_exitcode(status)

    def close(self) -> None:
        """Collect (or discard) the child's answer; the child never outlives the walk."""
        if self.results is None:
            self.results = self._collect()
