"""RESOLVE_HOST: reverse DNS that can never stall detection or forge a log line.

PortSentry 1.2 (portsentry_util.c CleanAndResolve) calls gethostbyaddr() inline, so a
slow DNS server stops detection, and prints whatever name comes back ("XXX THIS
FUNCTION IS NOT COMPLETE"). Here lookups run in a small thread pool, every answer is a
Future that is complete by `timeout` whatever the resolver does, and a name is used only
if it is plain DNS text: the PTR record belongs to the scanner.
"""
import collections
import concurrent.futures
import heapq
import ipaddress
import itertools
import re
import socket
import queue
import threading
import time

from . import records

_NAME = re.compile(r"[A-Za-z0-9._-]{1,253}")
NEGATIVE_TTL = 300.0  # a failed lookup is retried after 5 minutes, not on every packet


def clean_name(name, addr):
    """`name` if it is a safe host name for addr, else addr."""
    if isinstance(name, (tuple, list)):  # gethostbyaddr's (name, aliases, addresses)
        name = name[0] if name else None
    if not isinstance(name, str):
        return addr
    name = name[:-1] if name.endswith(".") and len(name) > 1 else name
    if not _NAME.fullmatch(name):
        return addr
    try:  # a PTR of "10.0.0.1" for another address would mislead whoever reads the log
        ipaddress.ip_address(name)
        return addr
    except ValueError:
        return name


def _done(value):
    fut = concurrent.futures.Future()
    fut.set_result(value)
    return fut


def _finish(fut, value):
    try:
        fut.set_result(value)
    except concurrent.futures.InvalidStateError:
        pass  # the timer and the lookup raced; the first one wins


class _Deadlines:
    """One thread completing futures at their deadlines (not a Timer thread per lookup,
    which a scan from thousands of addresses would turn into thousands of threads)."""

    def __init__(self):
        self._heap, self._seq = [], itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = None

    def add(self, delay, fut, value):
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True,
                                                name="scanwatch-dns-timer")
                self._thread.start()
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), fut, value))
            self._cond.notify()

    def stop(self):
        with self._cond:
            self._stopped = True
            pending, self._heap = self._heap, []
            self._cond.notify()
        for _, _, fut, value in pending:
            _finish(fut, value)

    def _loop(self):
        while True:
            with self._cond:
                while not self._stopped and (
                        not self._heap or self._heap[0][0] > time.monotonic()):
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                if self._stopped:
                    return
                _, _, fut, value = heapq.heappop(self._heap)
            _finish(fut, value)  # outside the lock: callbacks may call lookup()


class _DaemonPool:
    """A few daemon threads: ThreadPoolExecutor's threads are joined at interpreter exit,
    so one lookup stuck in a dead resolver would hold up SIGTERM for seconds."""

    def __init__(self, workers):
        self._jobs = queue.Queue()
        self._closed = False
        for i in range(workers):
            threading.Thread(target=self._loop, name=f"scanwatch-dns-{i}", daemon=True).start()

    def submit(self, fn, *args):
        if self._closed:
            raise RuntimeError("resolver closed")
        self._jobs.put((fn, args))

    def shutdown(self):
        self._closed = True
        for _ in range(64):
            self._jobs.put(None)

    def _loop(self):
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args = job
            fn(*args)


class Resolver:
    """lookup(addr) -> Future[str]: a safe host name, or the address itself when
    disabled, on failure, or once `timeout` seconds have passed."""

    def __init__(self, enabled, timeout=2.0, cache_size=4096, workers=4,
                 lookup=socket.gethostbyaddr, clock=time.monotonic,
                 negative_ttl=NEGATIVE_TTL, positive_ttl=3600.0, max_pending=1024):
        self.enabled, self.timeout = bool(enabled), timeout
        self._lookup, self._clock = lookup, clock
        self._ttl = {True: positive_ttl, False: negative_ttl}
        self._cache_size, self._max_pending = cache_size, max_pending
        self._cache = collections.OrderedDict()  # addr -> (name, expires); LRU order
        self._inflight = {}  # addr -> the Future handed out while its lookup runs
        self._lock = threading.Lock()
        self._closed = False
        self._deadlines = _Deadlines()
        self._pool = None
        if self.enabled:
            # few threads: a lookup stuck in the system resolver cannot be cancelled, so
            # this caps how many can be stuck at once
            self._pool = _DaemonPool(workers)

    def cached(self, addr):
        """The name (or, after a failed lookup, the address) if known now, else None."""
        addr = records._addr(addr)
        if not self.enabled:
            return addr
        with self._lock:
            return self._get(addr)

    def lookup(self, addr):
        addr = records._addr(addr)  # ValueError for anything but an IP address
        if not self.enabled:
            return _done(addr)
        with self._lock:
            name = self._get(addr)
            if name is not None:
                return _done(name)
            if addr in self._inflight:
                # one query per address; if it already overran, its Future holds the
                # address and a new caller gets that at once
                return self._inflight[addr]
            if self._closed or len(self._inflight) >= self._max_pending:
                return _done(addr)  # flooded: the log line is not worth a queue
            fut = concurrent.futures.Future()
            fut.set_running_or_notify_cancel()  # nobody may cancel it from under us
            self._inflight[addr] = fut
        try:
            self._pool.submit(self._resolve, addr, fut)
        except RuntimeError:  # pool shut down by a concurrent close()
            with self._lock:
                self._inflight.pop(addr, None)
            _finish(fut, addr)
            return fut
        self._deadlines.add(self.timeout, fut, addr)
        return fut

    def close(self):
        with self._lock:
            self._closed = True
            pending = list(self._inflight.items())
        if self._pool is not None:
            self._pool.shutdown()
        self._deadlines.stop()
        for addr, fut in pending:
            _finish(fut, addr)

    def _resolve(self, addr, fut):
        try:
            name = clean_name(self._lookup(addr), addr)
        except Exception:  # noqa: BLE001 - herror, gaierror, timeouts, a broken resolver
            name = addr
        with self._lock:
            self._inflight.pop(addr, None)
            # cached even if the Future already timed out: the next line gets the name
            self._put(addr, name, name != addr)
        _finish(fut, name)

    # --- cache (callers hold self._lock) -----------------------------------------------
    def _get(self, addr):
        entry = self._cache.get(addr)
        if entry is None:
            return None
        name, expires = entry
        if self._clock() >= expires:
            del self._cache[addr]
            return None
        self._cache.move_to_end(addr)
        return name

    def _put(self, addr, name, positive):
        if self._cache_size <= 0:
            return
        self._cache[addr] = (name, self._clock() + self._ttl[positive])
        self._cache.move_to_end(addr)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
