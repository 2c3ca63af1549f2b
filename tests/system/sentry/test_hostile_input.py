"""Hostile configuration, ignore files and state dirs are refused before anything changes;
the control socket answers malformed requests readably (issue 6)."""
import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from sentryproc import SCANWATCH
from resilience import (ROOT, STATUS_WITHIN_S, Sentry, figure, installation, refused_start,
                        seed_installation)


@pytest.fixture(scope="class")
def installed():
    from lab import Lab
    d = Path(tempfile.mkdtemp(prefix="swres-"))
    try:
        with Lab() as lab:
            lab.wait_reachable()
            seed_installation(lab, d / "live")
            (d / "in").mkdir()
            yield lab, d / "live", d / "in", installation(lab, d / "live")
    finally:
        shutil.rmtree(d, ignore_errors=True)


BAD_VALUES = [  # (text of line 2 of the config, what the error must say)
    ('SCAN_TRIGGER="abc"', "SCAN_TRIGGER: 'abc' is not a whole number"),
    ('SCAN_TRIGGER="-1"', "SCAN_TRIGGER: '-1' is not a whole number"),
    ('BLOCK_TCP="3"', "BLOCK_TCP: '3' must be one of 0, 1, 2"),
    ('BLOCK_UDP="yes"', "BLOCK_UDP: 'yes' is not a whole number"),
    ('TCP_PORTS="1,70000"', "TCP_PORTS: '70000' is outside 1-65535"),
    ('UDP_PORTS="5-2"', "UDP_PORTS: '5-2' is outside 1-65535"),
    ('TCP_PORTS="1,http"', "TCP_PORTS: 'http' is not a port or a-b range"),
    ('NFT_TABLE="bad-name!"', "NFT_TABLE: 'bad-name!' is not a valid nftables table name"),
    ('LOG_FORMAT="xml"', "LOG_FORMAT: 'xml' must be portsentry or portsentry2"),
    ('BLOCK_TIMEOUT="1e3"', "BLOCK_TIMEOUT: '1e3' is not a whole number"),
    ('BLOCK_TIMEOUT_MAX="99999999999"', "BLOCK_TIMEOUT_MAX: '99999999999' is not a whole number"),
    ('MAX_BLOCKED="4194305"', "MAX_BLOCKED: '4194305' is above the maximum 4194304"),
    ('SWEEP_WINDOW="86401"', "SWEEP_WINDOW: '86401' is above the maximum 86400"),
    ('RESOLVE_HOST="2"', "RESOLVE_HOST: '2' must be one of 0, 1"),
    ('KERNEL_BLOCK=""', "KERNEL_BLOCK: '' is not a whole number"),
    ('HISTORY_FILE="a\0b"', None),  # a NUL byte: the whole file is refused, no line
    ('SCAN_TRIGGER "0"', 'expected KEY="value", got \'SCAN_TRIGGER "0"\''),
    ('KILL_HOSTS_DENY="ALL: $TARGET$', "KILL_HOSTS_DENY: unterminated quote"),
    ('BLOCK_TCP="1" and more', "BLOCK_TCP: unexpected text after the value: 'and more'"),
    ('MAX_SOURCES="0"', "MAX_SOURCES: '0' is below the minimum 1"),
    ('MAX_BLOCKED="0"', "MAX_BLOCKED: '0' is below the minimum 1"),
    ('INTERFACES="nosuch0"', "INTERFACES: no such interface: nosuch0"),
]


class TestHostileInput:
    def check_refused(self, installed, args, where, says=None, code=2):
        lab, live, _inp, baseline = installed
        rc, out, err = refused_start(lab, live, *args)
        lines = err.splitlines()
        figure("refused", f"{' '.join(map(str, args))}: exit {rc}, stderr {err.strip()!r}")
        assert rc == code and out == "", (rc, out, err)
        assert len(lines) == 1 and lines[0].startswith(f"error: {where}"), lines
        if says:
            assert says in lines[0], lines
        assert installation(lab, live) == baseline, "a refused start changed something"

    @pytest.mark.parametrize("line,says", BAD_VALUES)
    def test_bad_value(self, installed, line, says):
        conf = installed[2] / "bad.conf"
        conf.write_bytes(b"# scanwatch.conf\n" + line.encode() + b"\nSCAN_TRIGGER=\"0\"\n")
        where = f"{conf}: " if "\0" in line else f"{conf}:2: "
        self.check_refused(installed, ["-c", conf], where, says)

    def test_config_is_a_directory(self, installed):
        d = installed[2] / "conf.d"
        d.mkdir(exist_ok=True)
        self.check_refused(installed, ["-c", d], f"{d}: ", "is a directory")

    def test_config_missing_or_unopenable(self, installed):
        self.check_refused(installed, ["-c", installed[2] / "nosuch.conf"],
                           f"{installed[2] / 'nosuch.conf'}: ", "No such file or directory")
        sock_path = installed[2] / "socket.conf"  # a socket: open() fails even for root
        s = socket.socket(socket.AF_UNIX)
        try:
            s.bind(str(sock_path))
            self.check_refused(installed, ["-c", sock_path], f"{sock_path}: ",
                               "is not a regular file")
        finally:
            s.close()

    def test_config_that_is_a_fifo_is_refused_not_waited_on(self, installed):
        fifo = installed[2] / "fifo.conf"
        if not fifo.exists():
            os.mkfifo(fifo)
        lab, live, _inp, baseline = installed
        rc, out, err = refused_start(lab, live, "-c", fifo, timeout=5)
        figure("refused", f"-c FIFO: exit {rc}, stderr {err.strip()!r}")
        assert rc == 2 and err.startswith(f"error: {fifo}: ")

    def test_binary_and_huge_configs(self, installed):
        inp = installed[2]
        nul = inp / "nul.conf"
        nul.write_bytes(b"# x\n\x7fELF\x02\x01\x01\0\0\0" + bytes(range(256)))
        self.check_refused(installed, ["-c", nul], f"{nul}: ", "contains NUL bytes")
        latin = inp / "latin1.conf"
        latin.write_bytes(b'# x\n# y\nKILL_HOSTS_DENY="ALL: \xe9$TARGET$"\n')
        self.check_refused(installed, ["-c", latin], f"{latin}:3: ", "not valid UTF-8")
        huge = inp / "huge.conf"
        with open(huge, "w") as fh:  # 10 MB of comments: valid lines, just too many
            fh.write(("# " + "x" * 97 + "\n") * 100000)
        self.check_refused(installed, ["-c", huge], f"{huge}: ", "larger than")

    def test_empty_config_means_the_defaults(self, installed):
        lab, _live, inp, _b = installed
        empty = inp / "empty.conf"
        empty.write_text("")
        ok = lab.run(lab.target_ns, *SCANWATCH, "config", "check", "-c", empty)
        assert ok.returncode == 0 and "OK" in ok.stdout, ok.stderr
        shown = lab.run(lab.target_ns, *SCANWATCH, "config", "show", "-c", empty)
        default = lab.run(lab.target_ns, *SCANWATCH, "config", "show")
        assert shown.returncode == 0 and shown.stdout == default.stdout and shown.stdout

    def test_ignore_file_with_a_bad_cidr(self, installed):
        ign = installed[2] / "bad.ignore"
        ign.write_text("# ours\n192.0.2.0/24\n10.0.0.0/33\n")
        self.check_refused(installed, ["--ignore-file", ign], f"{ign}:3: ",
                           "'10.0.0.0/33' is not an IPv4/IPv6 address or CIDR")


def mount_tmpfs(path, size="1m"):
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                   check=True, capture_output=True)


def umount(path):
    for args in (["umount", str(path)], ["umount", "-l", str(path)]):
        if subprocess.run(args, capture_output=True).returncode == 0:
            return


@pytest.fixture
def seeded_tmpfs_state(lab, workdir):
    """An installation whose state dir is a tmpfs (mounted on a temp dir, always
    unmounted): the test makes it read-only or full."""
    seed_installation(lab, workdir)
    state = workdir / "state"
    saved = {p.name: p.read_bytes() for p in state.iterdir()}
    shutil.rmtree(state)
    mount_tmpfs(state, size="64k")
    try:
        for name, data in saved.items():
            fd = os.open(state / name, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        yield state
    finally:
        umount(state)


def test_read_only_state_dir_is_refused_without_changing_anything(lab, workdir, seeded_tmpfs_state):
    subprocess.run(["mount", "-o", "remount,ro", str(seeded_tmpfs_state)], check=True)
    assert_refused_unchanged(lab, workdir, seeded_tmpfs_state, "read-only state dir",
                             "Read-only file system")


def test_full_state_dir_is_refused_without_changing_anything(lab, workdir, seeded_tmpfs_state):
    fd = os.open(seeded_tmpfs_state / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    assert_refused_unchanged(lab, workdir, seeded_tmpfs_state, "full state dir",
                             "No space left on device")


def assert_refused_unchanged(lab, workdir, state, label, reason):
    """A start refused with one `error: STATE...: reason` line, and nothing changed."""
    baseline = installation(lab, workdir)
    rc, out, err = refused_start(lab, workdir)
    after = installation(lab, workdir)
    files = set(baseline["files"]) | set(after["files"])
    changed = sorted(k for k in files if baseline["files"].get(k) != after["files"].get(k))
    figure(label, f"exit {rc}, stderr {err.strip()!r}; changed: {changed}"
           f"{' + nft' if after['nft'] != baseline['nft'] else ''}")
    assert rc not in (0, None) and out == "" and len(err.splitlines()) == 1, (rc, out, err)
    assert err.startswith(f"error: {state}") and reason in err
    assert after == baseline


# --- the control socket ------------------------------------------------------------------------
@pytest.fixture(scope="class")
def controlled():
    from lab import Lab
    d = Path(tempfile.mkdtemp(prefix="swres-"))
    try:
        with Lab() as lab:
            # A CONTROL_GROUP that does not exist: the socket is root's alone (0600).
            sw = Sentry(lab, d, conf='CONTROL_GROUP="swres_nogroup"\n')
            try:
                yield sw
            finally:
                sw.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def raw_exchange(path, data, timeout=5.0):
    """Send bytes on the control socket, half-close, read the reply line."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:  # the daemon may stop reading a huge line and close early
            pass
        return s.makefile("rb").readline()
    finally:
        s.close()


class TestControlSocket:
    def test_socket_is_root_only(self, controlled):
        st = os.stat(controlled.paths["run"] / "scanwatch.sock")
        figure("control socket mode", oct(stat.S_IMODE(st.st_mode)))
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0

    @pytest.mark.parametrize("data", [
        b"\x00\xff\xfe garbage \x80\n", b"[1, 2]\n", b'"status"\n', b"{\n", b"null\n",
        b'{"cmd": 5}\n', b'{"cmd": "unblock"}\n', b'{"cmd": "unblock", "addr": "not-an-ip"}\n',
        b'{"cmd": "unblock", "addr": ["x"]}\n', b'{"cmd": "status"' + b" " * 100000 + b"}\n",
        b"\n", b"",
    ], ids=["garbage", "list", "string", "truncated", "null", "cmd-int", "no-addr", "bad-addr",
            "addr-list", "huge-line", "empty-line", "nothing"])
    def test_malformed_request_gets_an_error_and_the_daemon_keeps_answering(self, controlled, data):
        path = controlled.paths["run"] / "scanwatch.sock"
        reply = raw_exchange(path, data)
        figure("malformed request", f"{data[:40]!r}{'...' if len(data) > 40 else ''} -> {reply[:120]!r}")
        assert reply.endswith(b"\n") and "error" in json.loads(reply), reply
        err = json.loads(reply)["error"]
        assert "has no attribute" not in err and err != "'addr'", "Python internals leak: " + err
        assert controlled.proc.poll() is None
        assert controlled.request({"cmd": "ping"})["ok"]
        assert controlled.request({"cmd": "status"})["running"]

    def test_status_as_an_unprivileged_user_says_it_needs_root(self, controlled):
        run = controlled.paths["run"]
        for p in (controlled.dir, run):  # traversable, as /run/scanwatch (0755) is
            os.chmod(p, 0o755)
        res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              *SCANWATCH, "status", "--run-dir", str(run)],
                             capture_output=True, text=True, timeout=30, cwd="/",
                             env=dict(os.environ, PYTHONPATH=str(ROOT)))
        figure("status as nobody", f"exit {res.returncode}: {res.stderr.strip()!r}")
        assert res.returncode != 0 and res.stdout == ""
        assert len(res.stderr.splitlines()) == 1 and res.stderr.startswith("error: ")
        assert "needs root" in res.stderr

    def test_a_silent_client_does_not_hold_up_others(self, controlled):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(controlled.paths["run"] / "scanwatch.sock"))
            time.sleep(0.2)
            t = time.monotonic()
            try:
                controlled.request({"cmd": "status"}, timeout=10)
            finally:
                took = time.monotonic() - t
                figure("status behind a silent client", f"{took:.2f} s")
        finally:
            s.close()
        assert took < STATUS_WITHIN_S
