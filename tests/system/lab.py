"""A two-namespace test lab for scanwatch's system tests (not a test).

    with Lab() as lab:
        lab.wait_reachable()
        lab.run(lab.scanner_ns, "nmap", "-sS", lab.target_ip4)

Each Lab makes a target and a scanner network namespace joined by a veth
pair, addressed from 198.18.X.0/24 (RFC 2544 benchmarking range) and
fd53:7761:X::/64, with X unique per lab. Inside the target namespace only,
ICMP rate limits are lifted so closed-port replies are not throttled. The
root namespace and its interfaces are never touched: the veth ends are
created directly inside the two namespaces.

close() kills whatever still runs in the namespaces and deletes them; it is
safe to call more than once and is registered with atexit as a last resort.
"""

from __future__ import annotations

import atexit
import itertools
import os
import signal
import subprocess
import threading
import time
import weakref

IP = "ip"

_counter = itertools.count()
_counter_lock = threading.Lock()
_open_labs: "weakref.WeakSet[Lab]" = weakref.WeakSet()

# sysctl settings applied inside the target namespace only.
TARGET_SYSCTLS = {
    "net.ipv4.icmp_ratelimit": "0",
    "net.ipv4.icmp_msgs_per_sec": "100000",
    "net.ipv4.icmp_msgs_burst": "100000",
    "net.ipv6.icmp.ratelimit": "0",
}
# On older kernels these are global (not per namespace) and do not exist
# inside a namespace; they are skipped there rather than set globally.
OPTIONAL_SYSCTLS = {"net.ipv4.icmp_msgs_per_sec", "net.ipv4.icmp_msgs_burst"}


class LabError(RuntimeError):
    pass


def _next_index() -> int:
    with _counter_lock:
        return next(_counter)


def _ip(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    res = subprocess.run([IP, *argv], capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise LabError(f"`ip {' '.join(argv)}` failed ({res.returncode}): {res.stderr.strip()}")
    return res


def netns_list() -> list[str]:
    """Names of the existing network namespaces."""
    res = _ip("netns", "list", check=False)
    return [line.split()[0] for line in res.stdout.splitlines() if line.strip()]


class Lab:
    """Target and scanner namespaces joined by a veth pair."""

    def __init__(self) -> None:
        pid = os.getpid()
        n = _next_index()
        self.index = n
        # X: unique per lab within this process, spread across processes.
        self.subnet = (pid * 7 + n) % 254 + 1
        x = self.subnet
        self.target_ns = f"swt-{pid}-{n}"
        self.scanner_ns = f"sws-{pid}-{n}"
        # The veth ends live only inside the namespaces, so these names never
        # collide with anything in the root namespace or in other labs.
        self.target_if = "swt0"
        self.scanner_if = "sws0"
        self.target_ip4 = f"198.18.{x}.1"
        self.scanner_ip4 = f"198.18.{x}.2"
        self.target_ip6 = f"fd53:7761:{x:x}::1"
        self.scanner_ip6 = f"fd53:7761:{x:x}::2"
        self.prefix4 = 24
        self.prefix6 = 64
        self._procs: list[subprocess.Popen] = []
        self._started = False
        self._closed = False

    # -- life cycle -------------------------------------------------------

    def __enter__(self) -> "Lab":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Lab(target={self.target_ns} {self.target_ip4}/{self.target_ip6}, "
                f"scanner={self.scanner_ns} {self.scanner_ip4}/{self.scanner_ip6})")

    def start(self) -> "Lab":
        """Create namespaces, veth pair, addresses and sysctls (once)."""
        if self._closed:
            raise LabError("this Lab was closed; make a new one")
        if self._started:
            return self
        self._started = True
        _open_labs.add(self)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _build(self) -> None:
        t, s = self.target_ns, self.scanner_ns
        _ip("netns", "add", t)
        _ip("netns", "add", s)
        _ip("link", "add", self.target_if, "netns", t, "type", "veth",
            "peer", "name", self.scanner_if, "netns", s)
        for ns, ifname, ip4, ip6 in ((t, self.target_if, self.target_ip4, self.target_ip6),
                                     (s, self.scanner_if, self.scanner_ip4, self.scanner_ip6)):
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{ip4}/{self.prefix4}", "dev", ifname)
            _ip("-n", ns, "-6", "addr", "add", f"{ip6}/{self.prefix6}", "dev", ifname, "nodad")
            _ip("-n", ns, "link", "set", ifname, "up")
        for key, value in TARGET_SYSCTLS.items():
            self._sysctl_set(t, key, value)

    def _sysctl_set(self, ns: str, key: str, value: str) -> None:
        path = "/proc/sys/" + key.replace(".", "/")
        if key in OPTIONAL_SYSCTLS and self.run(ns, "test", "-e", path).returncode != 0:
            return
        res = self.run(ns, "sysctl", "-q", "-w", f"{key}={value}")
        if res.returncode != 0:
            raise LabError(f"sysctl {key}={value} in {ns} failed: {res.stderr.strip()}")

    def sysctl(self, ns: str, key: str) -> str:
        """Read a sysctl inside a namespace."""
        path = "/proc/sys/" + key.replace(".", "/")
        res = self.run(self._ns(ns), "cat", path, check=True)
        return res.stdout.strip()

    def close(self) -> None:
        """Kill what still runs in the namespaces and delete them. Idempotent."""
        if self._closed:
            return
        self._closed = True
        _open_labs.discard(self)
        for proc in self._procs:
            if proc.poll() is None:
                try:
                    proc.kill()
                except OSError:
                    pass
        for ns in (self.target_ns, self.scanner_ns):
            self._kill_ns_pids(ns)
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._procs.clear()
        existing = set(netns_list())
        errors = []
        for ns in (self.target_ns, self.scanner_ns):
            if ns in existing:
                res = _ip("netns", "del", ns, check=False)
                if res.returncode != 0:
                    errors.append(f"{ns}: {res.stderr.strip()}")
        if errors:
            raise LabError("could not delete namespace(s): " + "; ".join(errors))

    @staticmethod
    def _kill_ns_pids(ns: str) -> None:
        for _ in range(20):
            res = _ip("netns", "pids", ns, check=False)
            pids = [int(p) for p in res.stdout.split() if p.isdigit()]
            pids = [p for p in pids if p != os.getpid()]
            if res.returncode != 0 or not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)

    # -- running things ---------------------------------------------------

    def _ns(self, ns: str) -> str:
        """Accept a namespace name, or the aliases "target" / "scanner"."""
        return {"target": self.target_ns, "scanner": self.scanner_ns}.get(ns, ns)

    def run(self, ns: str, *argv: str, **kw) -> subprocess.CompletedProcess:
        """Run argv inside namespace ns; text output captured, no check, 120 s."""
        kw.setdefault("text", True)
        kw.setdefault("check", False)
        kw.setdefault("timeout", 120)
        if not any(k in kw for k in ("stdout", "stderr", "capture_output")):
            kw["capture_output"] = True
        return subprocess.run([IP, "netns", "exec", self._ns(ns), *map(str, argv)], **kw)

    def popen(self, ns: str, *argv: str, **kw) -> subprocess.Popen:
        """Start argv inside namespace ns; killed by close() if still running."""
        proc = subprocess.Popen([IP, "netns", "exec", self._ns(ns), *map(str, argv)], **kw)
        self._procs.append(proc)
        return proc

    def wait_reachable(self, timeout: float = 5.0) -> None:
        """Ping the target from the scanner over v4 and v6 until both answer."""
        deadline = time.monotonic() + timeout
        pending = {"IPv4": ("-4", self.target_ip4), "IPv6": ("-6", self.target_ip6)}
        last = ""
        while True:
            for name, (flag, addr) in list(pending.items()):
                res = self.run(self.scanner_ns, "ping", flag, "-n", "-c1", "-W1", addr,
                               timeout=10)
                if res.returncode == 0:
                    del pending[name]
                else:
                    last = (res.stdout + res.stderr).strip().splitlines()[-1:] or [""]
                    last = f"{name} {addr}: {last[0]}"
            if not pending:
                return
            if time.monotonic() >= deadline:
                raise LabError(f"{self!r} not reachable within {timeout} s ({last})")
            time.sleep(0.1)


class HostView:
    """One member of a FleetLab seen as a two-namespace Lab (what SentryProcess and the
    nmap helper need): its own namespace is the target, the lab's scanner scans it."""

    def __init__(self, fleet: "FleetLab", n: int) -> None:
        self.fleet, self.n = fleet, n
        self.target_ns = f"swf{n}-{fleet.tag}"
        self.scanner_ns = fleet.scanner_ns
        self.target_if = "swh0"
        self.target_ip4 = fleet.addr(n)
        self.scanner_ip4 = fleet.scanner_ip4
        self.target_ip6 = self.scanner_ip6 = None

    def run(self, ns, *argv, **kw):
        return self.fleet.run(self._ns(ns), *argv, **kw)

    def popen(self, ns, *argv, **kw):
        return self.fleet.popen(self._ns(ns), *argv, **kw)

    def _ns(self, ns):
        return {"target": self.target_ns, "scanner": self.scanner_ns}.get(ns, ns)


class FleetLab(Lab):
    """A bridge (in a namespace of its own) joining `hosts` sentry namespaces, a scanner
    and a service namespace (Redis): 198.18.X.1..N are the hosts, .100 the scanner, .200
    the service. IPv4 only. Nothing is created in the root namespace."""

    def __init__(self, hosts: int = 5) -> None:
        super().__init__()
        self.tag = f"{os.getpid()}-{self.index}"
        self.bridge_ns = f"swb-{self.tag}"
        self.scanner_ns = f"swfs-{self.tag}"
        self.service_ns = f"swfr-{self.tag}"
        self.target_ns = self.service_ns  # Lab.run's "target" alias: unused here
        self.scanner_ip4 = self.addr(100)
        self.service_ip4 = self.addr(200)
        self.hosts = [HostView(self, n) for n in range(1, hosts + 1)]

    def addr(self, n: int) -> str:
        return f"198.18.{self.subnet}.{n}"

    def namespaces(self) -> list[str]:
        return [self.bridge_ns, self.scanner_ns, self.service_ns] + [h.target_ns for h in self.hosts]

    def _build(self) -> None:
        b = self.bridge_ns
        for ns in self.namespaces():
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", b, "link", "add", "br0", "type", "bridge")
        _ip("-n", b, "link", "set", "br0", "up")
        ends = [(self.scanner_ns, "swh0", self.scanner_ip4), (self.service_ns, "swh0", self.service_ip4)]
        ends += [(h.target_ns, h.target_if, h.target_ip4) for h in self.hosts]
        for i, (ns, ifname, ip4) in enumerate(ends):
            port = f"p{i}"
            _ip("link", "add", port, "netns", b, "type", "veth", "peer", "name", ifname, "netns", ns)
            _ip("-n", b, "link", "set", port, "master", "br0")
            _ip("-n", b, "link", "set", port, "up")
            _ip("-n", ns, "addr", "add", f"{ip4}/24", "dev", ifname)
            _ip("-n", ns, "link", "set", ifname, "up")
        for h in self.hosts:
            for key, value in TARGET_SYSCTLS.items():
                self._sysctl_set(h.target_ns, key, value)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        _open_labs.discard(self)
        for proc in self._procs:
            if proc.poll() is None:
                try:
                    proc.kill()
                except OSError:
                    pass
        for ns in self.namespaces():
            self._kill_ns_pids(ns)
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._procs.clear()
        existing = set(netns_list())
        errors = [f"{ns}: {r.stderr.strip()}" for ns in self.namespaces() if ns in existing
                  for r in [_ip("netns", "del", ns, check=False)] if r.returncode != 0]
        if errors:
            raise LabError("could not delete namespace(s): " + "; ".join(errors))

    def wait_reachable(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for ip in [h.target_ip4 for h in self.hosts] + [self.service_ip4]:
            while self.run(self.scanner_ns, "ping", "-4", "-n", "-c1", "-W1", ip,
                           timeout=10).returncode != 0:
                if time.monotonic() >= deadline:
                    raise LabError(f"{ip} not reachable from the scanner within {timeout} s")
                time.sleep(0.1)


@atexit.register
def _close_leftover_labs() -> None:
    for lab in list(_open_labs):
        try:
            lab.close()
        except Exception:
            pass
