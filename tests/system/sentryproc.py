"""Runs a real `scanwatch run` inside a Lab's target namespace (a helper, not a test)."""
import ipaddress
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCANWATCH = [sys.executable, "-c", "from scanwatch.cli import main; main()"]


class SentryProcess:
    """`scanwatch run` with every path in a temp dir; use as a context manager."""

    def __init__(self, lab, args=(), conf=None, ignore=(), ready_timeout=60, wrap=(), env=None):
        self.lab = lab
        self.dir = Path(tempfile.mkdtemp(prefix="swtest-"))
        self.ignore_file = self.dir / "ignore"
        self.ignore_file.write_text("".join(f"{a}\n" for a in ignore))
        self.paths = {"state": self.dir / "state", "run": self.dir / "run",
                      "hosts_deny": self.dir / "hosts.deny", "history": self.dir / "history",
                      "blocked": self.dir / "blocked"}
        self.paths["hosts_deny"].write_text("# admin's own line\nsshd: 192.0.2.7\n")
        argv = [*SCANWATCH, "run", *args,
                "--state-dir", self.paths["state"], "--run-dir", self.paths["run"],
                "--hosts-deny", self.paths["hosts_deny"], "--history-file", self.paths["history"],
                "--blocked-file", self.paths["blocked"], "--ignore-file", self.ignore_file]
        if conf is not None:
            cpath = self.dir / "scanwatch.conf"
            cpath.write_text(conf)
            argv += ["-c", cpath]
        self.log_path = self.dir / "daemon.log"
        self.log_fh = open(self.log_path, "w")
        # wrap: a command prefix (e.g. unshare for a private mount namespace); env: extra
        # environment variables (e.g. what systemd sets for a unit)
        self.proc = lab.popen(lab.target_ns, *wrap, *argv, stdout=self.log_fh,
                              stderr=subprocess.STDOUT, env=dict(os.environ, **(env or {})))
        pid = self.paths["run"] / "scanwatch.pid"
        deadline = time.monotonic() + ready_timeout
        while not pid.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"scanwatch did not start:\n{self.log()}")
            time.sleep(0.1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def cli(self, *args, check=True):
        res = self.lab.run(self.lab.target_ns, *SCANWATCH, *args, timeout=30)
        if check and res.returncode != 0:
            raise AssertionError(f"scanwatch {' '.join(args)} failed: {res.stderr}")
        return res

    def status(self):
        return json.loads(self.cli("status", "--json", "--run-dir", self.paths["run"]).stdout)

    def log(self):
        if not self.log_fh.closed:
            self.log_fh.flush()
        return self.log_path.read_text()

    def wait_log(self, needle, timeout=5):
        deadline = time.monotonic() + timeout
        while needle not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not logged in {timeout}s:\n{self.log()}")
            time.sleep(0.05)

    def wait_history(self, addr, timeout=5):
        """The history line is the last thing a report writes: after it, every record of
        that block (log lines, hosts.deny, blocked file, JSON event) is on disk."""
        needle = f"/{addr} Port: "
        deadline = time.monotonic() + timeout
        while needle not in self.read("history"):
            if time.monotonic() > deadline:
                raise AssertionError(f"no history line for {addr} in {timeout}s:\n{self.log()}")
            time.sleep(0.05)
        deadline = time.monotonic() + timeout
        while not any(e.get("addr") == addr and e.get("action") in ("block", "alert", "run")
                      for e in self.events()):
            if time.monotonic() > deadline:
                raise AssertionError(f"no JSON event for {addr} in {timeout}s")
            time.sleep(0.05)

    def wait_block_event(self, timeout=5):
        """Wait for a block's JSON event, the last record its report writes; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events() if e.get("action") == "block"]
            if found:
                return found[-1]
            if time.monotonic() > deadline:
                raise AssertionError(f"no block reported in {timeout}s:\n{self.log()}")
            time.sleep(0.05)

    def events(self):
        path = self.paths["state"] / "events.jsonl"
        out = []
        for line in path.read_text().splitlines() if path.exists() else ():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line still being written
        return out

    def read(self, name):
        path = self.paths[name]
        return path.read_text() if path.exists() else ""

    def nft_set(self, family=4, table="scanwatch"):
        res = self.lab.run(self.lab.target_ns, "nft", "-j", "list", "set", "inet", table,
                           f"blocked{family}")
        if res.returncode != 0:
            return []
        out = []
        for item in json.loads(res.stdout)["nftables"]:
            for el in item.get("set", {}).get("elem", []):
                out.append(el["elem"]["val"] if isinstance(el, dict) else el)
        return out

    def nft_blocked(self, table="scanwatch"):
        """Every element of blocked4, blocked6 and prefix6 (issue 14), as text."""
        out = [str(a) for f in (4, 6) for a in self.nft_set(f, table)]
        res = self.lab.run(self.lab.target_ns, "nft", "-j", "list", "set", "inet", table,
                           "prefix6")
        for item in json.loads(res.stdout)["nftables"] if res.returncode == 0 else ():
            for el in item.get("set", {}).get("elem", []):
                val = el.get("elem", el).get("val", el) if isinstance(el, dict) else el
                p = val.get("prefix") if isinstance(val, dict) else None
                out.append(f"{p['addr']}/{p['len']}" if p else str(val))
        return out

    def stop(self):
        """SIGTERM; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_fh.close()
        return self.proc.returncode


def block_key(addr, v6_prefix=64):
    """What a source is blocked as: its address, or an IPv6 one's /64 under the default
    V6_PREFIX (issue 14)."""
    ip = ipaddress.ip_address(addr)
    if ip.version == 6 and v6_prefix < 128:
        return str(ipaddress.ip_network(f"{ip}/{v6_prefix}", strict=False))
    return str(ip)


def deny_target(lab, addr):
    """$TARGET$ of a source's hosts.deny line: an IPv6 source's /64 in brackets, naming the
    target's own address (in the lab's /64, never blocked) after EXCEPT."""
    key = block_key(addr)
    if "/" not in key:
        return key
    net = ipaddress.ip_network(key)
    spared = f" EXCEPT [{lab.target_ip6}]" if ipaddress.ip_address(lab.target_ip6) in net else ""
    return f"[{net.network_address}]/{net.prefixlen}{spared}"


def wait_for(pred, timeout=5.0, what="condition", step=0.05):
    """pred()'s first true value, polled every `step` seconds; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true within {timeout}s")
        time.sleep(step)


def nmap(lab, *args, v6=False, timeout=120):
    target = lab.target_ip6 if v6 else lab.target_ip4
    argv = ["nmap", "-n", "-Pn", "-T5", "--max-retries", "0", *(("-6",) if v6 else ()), *args,
            "-oG", "-", target]
    res = lab.run(lab.scanner_ns, *argv, timeout=timeout)
    assert res.returncode == 0, res.stderr
    return res.stdout


def listen(lab, port, proto="tcp", host="::"):
    """A real listener in the target namespace; returns the Popen (kill it when done)."""
    code = ("import socket,sys,time\n"
            f"s=socket.socket(socket.AF_INET6, socket.SOCK_{'STREAM' if proto == 'tcp' else 'DGRAM'})\n"
            "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n"
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(('{host}', {port}))\n"
            + ("s.listen(64)\nprint('ready', flush=True)\n"
               "while True:\n c,_=s.accept(); c.sendall(b'hello\\n'); c.close()\n"
               if proto == "tcp" else "print('ready', flush=True)\ntime.sleep(3600)\n"))
    p = lab.popen(lab.target_ns, sys.executable, "-c", code, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def connect(lab, addr, port, timeout=2.0):
    """Try a TCP connect from the scanner namespace; True when it succeeds."""
    code = ("import socket,sys\n"
            f"try:\n socket.create_connection(('{addr}', {port}), timeout={timeout}).close()\n"
            "except OSError:\n sys.exit(1)\n")
    return lab.run(lab.scanner_ns, sys.executable, "-c", code, timeout=timeout + 10).returncode == 0


def env_ok():
    return os.geteuid() == 0


def listen_many(lab, ports):
    """One process holding TCP listeners on many ports of the target; kill it when done."""
    code = ("import socket,time\nsocks=[]\n"
            f"for p in {list(ports)!r}:\n"
            " s=socket.socket(socket.AF_INET6); s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n"
            " s.bind(('::', p)); s.listen(8); socks.append(s)\n"
            "print('ready', flush=True)\ntime.sleep(3600)\n")
    p = lab.popen(lab.target_ns, sys.executable, "-c", code, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p
