"""scanwatch lsof against lsof and ss, on the same load, runs alternated.

Creates a network namespace (lo only), enters it (setns), forks a few hundred processes
there that hold thousands of sockets (TCP listeners and established pairs on IPv4 and IPv6,
UDP, UNIX) plus regular files and pipes, then for each case:
  1. checks that `scanwatch lsof` prints exactly what lsof prints (byte for byte, except the
     full listing, whose other processes come and go: there the load's lines are compared),
  2. times lsof, ss (for the socket cases) and scanwatch lsof alternately, >= 5 runs each,
and prints min / median per tool and the ratio of medians to lsof.
Everything runs as root; the namespace and every process are removed at the end.

Run: .venv/bin/python bench/lsof.py [--quick] [--procs N] [--runs N]
"""
from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCANWATCH = os.path.join(ROOT, ".venv", "bin", "scanwatch")
CLONE_NEWNET = 0x40000000


# --- the load ---------------------------------------------------------------------------

def _child(index: int, files_dir: str, ready_w: int, hold_r: int, pairs: int,
           listeners: int, udps: int) -> None:
    """One load process: its own sockets, files and a pipe; lives until hold_r closes."""
    keep = []
    for n in range(listeners):
        fam, host = (socket.AF_INET, "127.0.0.1") if n % 2 == 0 else (socket.AF_INET6, "::1")
        lst = socket.socket(fam, socket.SOCK_STREAM)
        lst.bind((host, 0))
        lst.listen(64)
        keep.append(lst)
        for _ in range(pairs // max(listeners, 1)):
            cli = socket.create_connection(lst.getsockname()[:2])
            srv, _ = lst.accept()
            keep += [cli, srv]
    for n in range(udps):
        fam, host = (socket.AF_INET, "127.0.0.1") if n % 2 == 0 else (socket.AF_INET6, "::")
        u = socket.socket(fam, socket.SOCK_DGRAM)
        u.bind((host, 0))
        keep.append(u)
    keep += list(socket.socketpair())
    path = os.path.join(files_dir, f"f{index}")
    keep.append(open(path, "w"))
    # a file every load process opens read-only; not /etc/hosts: a debootstrapped Debian
    # (make e2e's roots) has none
    keep.append(open(os.path.abspath(__file__)))
    keep += list(os.pipe())
    os.write(ready_w, b"x")
    os.close(ready_w)
    try:
        os.read(hold_r, 1)  # EOF when the bench ends (or dies)
    finally:
        os._exit(0)


class Load:
    """N forked processes in the current network namespace."""

    def __init__(self, procs: int, pairs: int = 8, listeners: int = 4, udps: int = 4):
        self.procs, self.pairs, self.listeners, self.udps = procs, pairs, listeners, udps
        self.pids: list[int] = []
        self.dir = tempfile.mkdtemp(prefix="swlsof-bench-")
        self._hold_w = None

    def start(self) -> "Load":
        hold_r, self._hold_w = os.pipe()
        for i in range(self.procs):
            ready_r, ready_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(ready_r)
                    os.close(self._hold_w)
                    _child(i, self.dir, ready_w, hold_r, self.pairs, self.listeners, self.udps)
                finally:
                    os._exit(1)
            os.close(ready_w)
            ok = os.read(ready_r, 1)
            os.close(ready_r)
            self.pids.append(pid)
            if not ok:
                raise RuntimeError(f"load process {i} failed to start")
        os.close(hold_r)
        return self

    def stop(self) -> None:
        if self._hold_w is not None:
            os.close(self._hold_w)
            self._hold_w = None
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in self.pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.pids = []
        shutil.rmtree(self.dir, ignore_errors=True)


class Namespace:
    """A fresh network namespace with lo up, entered by this process."""

    def __init__(self):
        self.name = f"swlsof-bench-{os.getpid()}"
        self._old = None

    def __enter__(self):
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        try:
            subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
            libc = ctypes.CDLL(None, use_errno=True)
            self._old = os.open("/proc/self/ns/net", os.O_RDONLY)
            fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            ctypes.CDLL(None).setns(self._old, CLONE_NEWNET)
            os.close(self._old)
            self._old = None
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


# --- measuring --------------------------------------------------------------------------

def run(argv: list[str]) -> tuple[float, bytes, int]:
    t0 = time.perf_counter()
    res = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0, res.stdout, res.returncode


def load_lines(out: bytes, pids: set) -> list[str]:
    """Lines of the load's processes, blanks collapsed (column widths depend on others)."""
    keep = []
    for line in out.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) > 1 and parts[1].isdigit() and int(parts[1]) in pids:
            keep.append(" ".join(parts))
    return sorted(keep)


def verify(name: str, args: list[str], pids: set, exact: bool) -> str:
    _, theirs, rc1 = run(["lsof", *args])
    _, ours, rc2 = run([SCANWATCH, "lsof", *args])
    if exact:
        same = theirs == ours and rc1 == rc2
        how = "byte-identical"
    else:
        a, b = load_lines(theirs, pids), load_lines(ours, pids)
        same = a == b and bool(a)
        how = f"identical on the load's {len(a)} lines"
    if not same:
        raise SystemExit(f"{name}: scanwatch lsof differs from lsof (lsof rc {rc1}, ours "
                         f"rc {rc2}); fix that before timing")
    return how


def measure(cases, runs: int) -> list:
    results = []
    for name, args, ss_args in cases:
        tools = [("lsof", ["lsof", *args]), ("scanwatch", [SCANWATCH, "lsof", *args])]
        if ss_args:
            tools.append(("ss", ["ss", *ss_args]))
        times: dict = {t: [] for t, _ in tools}
        for _ in range(runs):
            for tool, argv in tools:  # alternate: one run of each, in turn
                times[tool].append(run(argv)[0])
        results.append((name, args, times))
    return results


def report(results, verified: dict, sockets: int, procs: int) -> None:
    print(f"\nload: {procs} processes, {sockets} inet sockets in the bench namespace; "
          f"{os.cpu_count()} CPUs; times in ms (min / median), runs alternated")
    print("| case | lsof | ss | scanwatch lsof | scanwatch/lsof | scanwatch/ss | output |")
    print("|---|---|---|---|---|---|---|")
    for name, args, times in results:
        cell = {t: f"{min(v) * 1e3:.0f} / {statistics.median(v) * 1e3:.0f}"
                for t, v in times.items()}
        med = {t: statistics.median(v) for t, v in times.items()}
        vs_ss = f"{med['scanwatch'] / med['ss']:.2f}x" if "ss" in med else "-"
        print(f"| `{' '.join(args)}` | {cell['lsof']} | {cell.get('ss', '-')} | "
              f"{cell['scanwatch']} | {med['scanwatch'] / med['lsof']:.2f}x | {vs_ss} | "
              f"{verified[name]} |")
    print("ratios are of medians; ss (-tuanp) answers the socket cases only, in its own "
          "format")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small load, 5 runs")
    ap.add_argument("--procs", type=int, help="load processes (default 300, quick 60)")
    ap.add_argument("--runs", type=int, help="runs per tool and case (default 9, quick 5)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/lsof.py needs root (network namespace, every process's /proc)")
        return 2
    procs = a.procs or (60 if a.quick else 300)
    runs = max(5, a.runs or (5 if a.quick else 9))
    _compile()
    startup = sorted(run([SCANWATCH, "lsof", "-h"])[0] for _ in range(max(runs, 9)))
    print(f"start-up (`scanwatch lsof -h`): min {startup[0] * 1e3:.0f} ms, "
          f"median {statistics.median(startup) * 1e3:.0f} ms")
    with Namespace():
        load = Load(procs)
        try:
            t0 = time.perf_counter()
            load.start()
            sockets = int(subprocess.run(["ss", "-Htuan"], capture_output=True,
                                         text=True).stdout.count("\n"))
            print(f"load ready in {time.perf_counter() - t0:.1f} s")
            pid = load.pids[len(load.pids) // 2]
            port = _a_port(pid)  # a port that load process listens on
            pids = set(load.pids)
            cases = [("inet", ["-n", "-P", "-i"], ["-tuanp"]),
                     ("port", ["-n", "-P", "-i", f":{port}"], ["-tuanp", f"sport = :{port}"]),
                     ("pid", ["-p", str(pid)], None),
                     ("terse", ["-t", "-i"], ["-tuanp"]),
                     ("full", ["-n", "-P"], None)]
            verified = {name: verify(name, args, pids, exact=(name != "full"))
                        for name, args, _ in cases}
            results = measure(cases, runs)
            report(results, verified, sockets, procs)
        finally:
            load.stop()
    return 0


def _compile() -> None:
    """Bytecode for the modules `scanwatch lsof` imports, as an installed package has it
    (pip compiles at install). Where PYTHONDONTWRITEBYTECODE is set (as in some sandboxes)
    Python would otherwise recompile them on every run."""
    code = ("import sys, io; from scanwatch import cli; sys.stdout = io.StringIO()\n"
            "try:\n    cli.main(['lsof', '-n', '-P', '-i', '-U', '-p', '1'])\n"
            "except SystemExit:\n    pass\n"
            "print('\\n'.join(m.__file__ for n, m in list(sys.modules.items())\n"
            "                 if n.startswith('scanwatch') and getattr(m, '__file__', None)),"
            " file=sys.stderr)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    paths = [p for p in res.stderr.splitlines() if p.endswith(".py")]
    if paths:
        subprocess.run([sys.executable, "-m", "compileall", "-q", *paths],
                       stdout=subprocess.DEVNULL, check=False)


def _a_port(pid: int) -> int:
    out = subprocess.run(["ss", "-Htlnp"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if f"pid={pid}," in line:
            return int(line.split()[3].rsplit(":", 1)[1])
    raise SystemExit(f"no listener of load process {pid} found")


if __name__ == "__main__":
    sys.exit(main())
