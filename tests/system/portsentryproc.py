"""Debian's portsentry 1.2, run for real in a Lab's target namespace (a helper, not a test).

Each mode (-stcp, -sudp) is its own process, as Debian runs them. They run in a private
mount namespace where the compiled-in /etc/portsentry/portsentry.conf is our file and
/dev/log is a datagram socket this process reads, so nothing of the host is touched.
"""
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

PORTSENTRY = "/usr/sbin/portsentry"
COMPILED_CONF = "/etc/portsentry/portsentry.conf"
_PID = re.compile(r"portsentry\[(\d+)\]: (.*)")


class Portsentry:
    def __init__(self, lab, *, modes=("stcp", "sudp"), tcp_ports, udp_ports, block=False):
        self.lab, self.modes = lab, modes
        self.dir = Path(tempfile.mkdtemp(prefix="swtest-ps-"))
        d = self.dir
        (d / "ignore").write_text("127.0.0.1/32\n0.0.0.0\n")
        for sub in ("up", "work"):
            (d / sub).mkdir()
        self.conf = d / "portsentry.conf"
        self.conf.write_text(
            f'TCP_PORTS="{tcp_ports}"\nUDP_PORTS="{udp_ports}"\n'
            f'IGNORE_FILE="{d}/ignore"\nHISTORY_FILE="{d}/history"\nBLOCKED_FILE="{d}/blocked"\n'
            f'RESOLVE_HOST="0"\nBLOCK_TCP="{int(block)}"\nBLOCK_UDP="{int(block)}"\n'
            'SCAN_TRIGGER="0"\n')
        self.messages, self.pids = [], {}
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(d / "log.sock"))
        os.chmod(d / "log.sock", 0o666)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            for mode in modes:
                self._start(mode)
        except BaseException:
            self.stop()
            raise

    def _read(self):
        while not self._stop.is_set():
            try:
                data = self._sock.recv(1 << 16)
            except socket.timeout:
                continue
            except OSError:
                return
            m = _PID.search(data.decode(errors="replace"))
            if m:
                self.messages.append((int(m.group(1)), m.group(2).rstrip("\n\0")))

    def _start(self, mode):
        d = self.dir
        sh = (f"mount -t overlay overlay -o lowerdir=/dev,upperdir={d}/up,workdir={d}/work /dev"
              f" && touch /dev/log && mount --bind {d}/log.sock /dev/log"
              f" && mount --bind {self.conf} {COMPILED_CONF}"
              f" && exec {PORTSENTRY} -{mode}")
        res = self.lab.run(self.lab.target_ns, "unshare", "-m", "--propagation", "private",
                           "sh", "-c", sh, timeout=30)
        if res.returncode != 0:
            raise RuntimeError(f"portsentry -{mode} did not start: {res.stderr.strip()}")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for pid, text in list(self.messages):
                if "PortSentry is now active" in text and pid not in self.pids.values():
                    self.pids[mode] = pid
                    return
                if "adminalert: ERROR" in text:
                    raise RuntimeError(f"portsentry -{mode}: {text}")
            time.sleep(0.05)
        raise RuntimeError(f"portsentry -{mode} never said it is active: {self.messages}")

    def lines(self):
        """The syslog messages, without the `portsentry[pid]: ` prefix."""
        return [text for _pid, text in self.messages]

    def read(self, name):
        path = self.dir / name
        return path.read_text() if path.exists() else ""

    def stop(self):
        for pid in self.pids.values():
            try:
                with open(f"/proc/{pid}/comm") as fh:
                    if fh.read().strip() != "portsentry":
                        continue
                os.kill(pid, signal.SIGTERM)
            except (FileNotFoundError, ProcessLookupError):
                continue
            deadline = time.monotonic() + 5
            while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                time.sleep(0.05)
            if os.path.exists(f"/proc/{pid}"):
                subprocess.run(["kill", "-9", str(pid)], check=False)
        self.pids.clear()
        self._stop.set()
        self._reader.join(timeout=2)
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
