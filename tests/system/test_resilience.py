"""Issue 6: survive restarts, crashes, firewall reloads, floods and hostile input.

Every test runs the real daemon (`scanwatch run`) in a Lab's target namespace, real
nftables there and real packets from the scanner namespace. Each prints the figure it
reached (`pytest -s` shows them, prefixed `FIGURE`). Tests that expose a bug are marked
`xfail(strict=True, reason="BUG: ...")`.
"""
import ctypes
import hashlib
import ipaddress
import json
import os
import random
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from rawsend import checksum
from sentry import SCANWATCH, SentryProcess, connect, listen, nmap, wait_for

ROOT = Path(__file__).resolve().parents[2]
HISTORY_RE = re.compile(r"^(\d+) - \d\d/\d\d/\d{4} \d\d:\d\d:\d\d Host: (\S+)/(\S+) Port: (\d+) "
                        r"(TCP|UDP) Blocked$")
ADMIN_DENY = "# admin's own line\nsshd: 192.0.2.7\n"
ACTIVE = "is now active on"


def figure(name, value):
    print(f"\nFIGURE {name}: {value}", flush=True)


# --- the daemon, restartable on the same directory ------------------------------------------
class Sentry(SentryProcess):
    """`scanwatch run` in the target namespace with every path under `workdir`.

    Unlike SentryProcess it can be started again on the same directory (same state dir,
    hosts.deny, history): files that exist are kept, each run logs to its own file, and
    readiness is this run's "is now active" line (a daemon killed with -9 leaves its pid
    file behind)."""

    def __init__(self, lab, workdir, args=(), conf=None, ready_timeout=60):
        self.lab = lab
        self.dir = Path(workdir)
        self.ignore_file = self.dir / "ignore"
        if not self.ignore_file.exists():
            self.ignore_file.write_text("")
        self.paths = {"state": self.dir / "state", "run": self.dir / "run",
                      "hosts_deny": self.dir / "hosts.deny", "history": self.dir / "history",
                      "blocked": self.dir / "blocked"}
        if not self.paths["hosts_deny"].exists():
            self.paths["hosts_deny"].write_text(ADMIN_DENY)
        self.conf_path = self.dir / "scanwatch.conf"
        if conf is not None:
            self.conf_path.write_text(conf)
        argv = [*SCANWATCH, "run", *args, *path_args(self.dir)]
        if self.conf_path.exists():
            argv += ["-c", self.conf_path]
        runs = len(list(self.dir.glob("daemon-*.log")))
        self.log_path = self.dir / f"daemon-{runs + 1}.log"
        self.log_fh = open(self.log_path, "w")
        self.proc = lab.popen(lab.target_ns, *argv, stdout=self.log_fh, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid  # `ip netns exec` execs the command: this is the daemon
        deadline = time.monotonic() + ready_timeout
        while ACTIVE not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"scanwatch did not start:\n{self.log()}")
            time.sleep(0.05)

    def kill9(self):
        os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.log_fh.close()

    def request(self, message, timeout=5.0):
        """One raw control-socket request from this (root) process; the parsed reply."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(str(self.paths["run"] / "scanwatch.sock"))
            s.sendall(message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n")
            return json.loads(s.makefile("rb").readline())
        finally:
            s.close()

    def vmhwm_kb(self):
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")


def path_args(d):
    d = Path(d)
    return ["--state-dir", d / "state", "--run-dir", d / "run", "--hosts-deny", d / "hosts.deny",
            "--history-file", d / "history", "--blocked-file", d / "blocked",
            "--ignore-file", d / "ignore"]


@pytest.fixture
def workdir():
    d = Path(tempfile.mkdtemp(prefix="swres-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def web(lab):
    """An open TCP port on the target, to tell a block (connect fails) from no block."""
    p = listen(lab, 8080)
    yield 8080
    p.kill()
    p.wait()


# --- kernel objects: the daemon's own XDP program and maps -----------------------------------
BPF_MAP_GET_FD_BY_ID = 14


class _GetFd(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32),
                ("open_flags", ctypes.c_uint32)]


def daemon_bpf(pid):
    """{"prog": [ids], "map": [ids]} of the BPF objects a process holds (from fdinfo)."""
    out = {"prog": [], "map": []}
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            text = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue
        for kind in out:
            m = re.search(rf"^{kind}_id:\s+(\d+)$", text, re.M)
            if m:
                out[kind].append(int(m.group(1)))
    return out


class _Batch(ctypes.Structure):
    _fields_ = [("in_batch", ctypes.c_uint64), ("out_batch", ctypes.c_uint64),
                ("keys", ctypes.c_uint64), ("values", ctypes.c_uint64),
                ("count", ctypes.c_uint32), ("map_fd", ctypes.c_uint32),
                ("elem_flags", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


def _map_keys(fd, key_size, value_size, chunk=8192):
    """Every key of a hash map, by BPF_MAP_LOOKUP_BATCH (the test's own walk, so that
    reading a full map stays cheap whatever scanwatch's Map.items() costs)."""
    from scanwatch.bpfsys import _bpf
    keys = ctypes.create_string_buffer(key_size * chunk)
    values = ctypes.create_string_buffer(value_size * chunk)
    tok_in, tok_out = ctypes.create_string_buffer(max(key_size, 8)), ctypes.create_string_buffer(max(key_size, 8))
    out, first = [], True
    while True:
        attr = _Batch(0 if first else ctypes.addressof(tok_in), ctypes.addressof(tok_out),
                      ctypes.addressof(keys), ctypes.addressof(values), chunk, fd, 0, 0)
        try:
            _bpf(24, attr)  # BPF_MAP_LOOKUP_BATCH
            done = False
        except OSError as err:
            if err.errno != 2:  # ENOENT: the last batch
                raise
            done = True
        raw = keys.raw
        out += [raw[i * key_size:(i + 1) * key_size] for i in range(attr.count)]
        if done or attr.count == 0:
            return out
        ctypes.memmove(tok_in, tok_out, ctypes.sizeof(tok_in))
        first = False


def daemon_map(pid, name):
    """(entries, capacity, keys) of one of the daemon's BPF maps, read by map id."""
    from scanwatch.bpfsys import MapInfo, _bpf, obj_info
    for map_id in daemon_bpf(pid)["map"]:
        fd = _bpf(BPF_MAP_GET_FD_BY_ID, _GetFd(map_id, 0, 0))
        try:
            info = obj_info(fd, MapInfo())
            if info.name.decode() == name:
                keys = _map_keys(fd, info.key_size, info.value_size)
                return len(set(keys)), info.max_entries, keys
        finally:
            os.close(fd)
    raise AssertionError(f"pid {pid} holds no map {name!r}")


def kernel_blocked(pid):
    """Addresses in the daemon's XDP `blocked` and `kblocked` maps (expiry not checked)."""
    from scanwatch.ignore import from_key
    return {str(from_key(k)) for m in ("blocked", "kblocked") for k in daemon_map(pid, m)[2]}


def xdp_attached(lab, ifname=None):
    """Ids of the XDP programs attached to the target's veth end."""
    res = lab.run(lab.target_ns, "ip", "-d", "-j", "link", "show", "dev", ifname or lab.target_if)
    xdp = json.loads(res.stdout)[0].get("xdp")
    if not xdp:
        return []
    return [a["prog"]["id"] for a in xdp.get("attached", [])] or [xdp["prog"]["id"]]


def prog_exists(prog_id):
    return subprocess.run(["bpftool", "prog", "show", "id", str(prog_id)],
                          capture_output=True).returncode == 0


# --- nftables inside the target namespace ----------------------------------------------------
def nft_elems(lab, family, table="scanwatch"):
    """{address: (timeout, expires)} of set blockedN; {} when the set is missing."""
    res = lab.run(lab.target_ns, "nft", "-j", "list", "set", "inet", table, f"blocked{family}")
    if res.returncode != 0:
        return {}
    out = {}
    for obj in json.loads(res.stdout)["nftables"]:
        for el in obj.get("set", {}).get("elem", []):
            if isinstance(el, dict):
                e = el["elem"]
                out[str(ipaddress.ip_address(e["val"]))] = (e.get("timeout"), e.get("expires", 0))
            else:
                out[str(ipaddress.ip_address(el))] = (None, None)
    return out


def nft_all(lab, table="scanwatch"):
    return {**nft_elems(lab, 4, table), **nft_elems(lab, 6, table)}


def nft_ruleset(lab):
    return lab.run(lab.target_ns, "nft", "list", "ruleset").stdout


# --- hand-built frames, sent from the scanner namespace --------------------------------------
SENDER = r"""
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
src, dst = s.getsockname()[4], bytes.fromhex(sys.argv[2])
n = 0
for line in sys.stdin:
    ethertype, l3 = line.split()
    s.send(dst + src + bytes.fromhex(ethertype) + bytes.fromhex(l3))
    n += 1
print(n)
"""


def target_mac(lab):
    return lab.run(lab.target_ns, "cat",
                   f"/sys/class/net/{lab.target_if}/address").stdout.strip().replace(":", "")


def send_l3(lab, packets, mac=None):
    """Send IPv4/IPv6 packets (bytes, version from the first nibble) as Ethernet frames
    from the scanner's veth end to the target's MAC, unpadded."""
    lines = "".join(f"{'0800' if p[0] >> 4 == 4 else '86dd'} {p.hex()}\n" for p in packets)
    res = lab.run(lab.scanner_ns, sys.executable, "-c", SENDER, lab.scanner_if,
                  mac or target_mac(lab), input=lines, timeout=60)
    assert res.returncode == 0 and int(res.stdout) == len(packets), res.stderr


TCP_FLAGS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20}


def tcp(src, dst, dport, flags="S", sport=40000):
    """A 20-byte TCP header with a correct checksum (over the header alone)."""
    src, dst = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    f = sum(TCP_FLAGS[c] for c in flags)
    hdr = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, f, 1024, 0, 0)
    if src.version == 4:
        pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, 6, len(hdr))
    else:
        pseudo = src.packed + dst.packed + struct.pack("!IxxxB", len(hdr), 6)
    return hdr[:16] + struct.pack("!H", checksum(pseudo + hdr)) + hdr[18:]


def ipv4(src, dst, payload, proto=6, frag=0, options=b"", ident=1, total=None):
    """frag: the 16-bit flags+offset field (0x2000 = MF, low 13 bits = offset / 8)."""
    ihl = 5 + len(options) // 4
    hdr = struct.pack("!BBHHHBBH4s4s", 4 << 4 | ihl, 0,
                      total if total is not None else ihl * 4 + len(payload), ident, frag, 64,
                      proto, 0, ipaddress.IPv4Address(src).packed,
                      ipaddress.IPv4Address(dst).packed) + options
    return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:] + payload


def ipv6(src, dst, nexthdr, payload, plen=None):
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload) if plen is None else plen, nexthdr,
                       64, ipaddress.IPv6Address(src).packed,
                       ipaddress.IPv6Address(dst).packed) + payload


HOPOPTS, ROUTING, FRAGMENT, DSTOPTS = 0, 43, 44, 60


def ext_opts(nexthdr):
    """An 8-byte hop-by-hop or destination-options header holding one PadN option."""
    return struct.pack("!BB", nexthdr, 0) + b"\x01\x04" + b"\0" * 4


def ext_routing(nexthdr):
    """An 8-byte routing header, type 4 (segment routing) with segments left 0."""
    return struct.pack("!BBBBI", nexthdr, 0, 4, 0, 0)


def ext_frag(nexthdr, offset=0, more=False, ident=7):
    return struct.pack("!BBHI", nexthdr, 0, (offset // 8) << 3 | int(more), ident)


def history_rows(text):
    """(parsed rows, unparsable lines) of a history file."""
    rows, bad = [], []
    for line in text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"):
        if not line:
            continue
        m = HISTORY_RE.match(line)
        (rows if m else bad).append(m.groups() if m else line)
    return rows, bad


def scan_both(lab, sw):
    """nmap the target from the scanner's IPv4 and IPv6 addresses; wait until both are
    in the history file."""
    nmap(lab, "-sS", "-p", "1-40")
    nmap(lab, "-sS", "-p", "1-40", v6=True)
    for addr in (lab.scanner_ip4, lab.scanner_ip6):
        sw.wait_history(addr)


# --- 1. restart --------------------------------------------------------------------------------
def test_restart_keeps_blocks_with_their_remaining_time(lab, web, workdir):
    lab.wait_reachable()
    v4, v6 = lab.scanner_ip4, lab.scanner_ip6
    sw = Sentry(lab, workdir)
    try:
        scan_both(lab, sw)
        before = nft_all(lab)
        assert set(before) == {v4, v6}, before
        left_before = {b["addr"]: b["left"] for b in sw.status()["blocked"]}
        deny, history = sw.read("hosts_deny"), sw.read("history")
        assert deny.count(f"ALL: {v4}\n") == 1 and deny.count(f"ALL: [{v6}]\n") == 1, deny
        assert sw.stop() == 0
    finally:
        sw.stop()
    assert xdp_attached(lab) == []
    # The blocks must come back from the state dir, not from a table left in place.
    assert lab.run(lab.target_ns, "nft", "delete", "table", "inet", "scanwatch").returncode == 0
    assert nft_all(lab) == {} and connect(lab, lab.target_ip4, web), "nothing blocks while it is down"
    down = time.monotonic()
    sw2 = Sentry(lab, workdir)
    try:
        elapsed = time.monotonic() - down
        m = re.search(r"restored (\d+) blocks from \S+ in ([\d.]+)s", sw2.log())
        assert m and int(m.group(1)) == 2, sw2.log()
        after = nft_all(lab)
        assert set(after) == {v4, v6}, after
        for addr, (_timeout, expires) in after.items():
            # nft's `expires` is whole seconds, truncated; restore rounds up by one second
            assert before[addr][1] - elapsed - 2 <= expires <= before[addr][1], (addr, before, after)
        st = sw2.status()
        left_after = {b["addr"]: b["left"] for b in st["blocked"]}
        assert set(left_after) == {v4, v6}, st["blocked"]
        assert all(left_after[a] <= left_before[a] for a in left_after), (left_before, left_after)
        assert all(b["scan_type"] == "SYN/Normal" for b in st["blocked"])
        dropped = st["counters"]["dropped"]
        assert not connect(lab, lab.target_ip4, web) and not connect(lab, lab.target_ip6, web)
        assert sw2.status()["counters"]["dropped"] > dropped, "XDP did not drop the restored block"
        # Nothing is reported twice: the restored blocks are not new blocks.
        assert sw2.read("hosts_deny") == deny and sw2.read("history") == history
        figure("restart: restore time (daemon log)", f"{m.group(2)} s for 2 blocks; "
               f"remaining nft time {before[v4][1]} s before stop -> {after[v4][1]} s after "
               f"({elapsed:.1f} s down+start)")
    finally:
        sw2.stop()


# --- 2. kill -9 ----------------------------------------------------------------------------------
FLOOD_CONF = 'BLOCK_RATE="100000"\nHOSTS_DENY_MAX="100000"\n'


def spoofed_sources(n, base="100.64.0.0"):
    first = int(ipaddress.IPv4Address(base)) + 1
    return [str(ipaddress.IPv4Address(first + i + i // 250 * 6)) for i in range(n)]


def test_kill_9_loses_no_reported_block_and_the_new_daemon_takes_xdp_over(lab, workdir):
    lab.wait_reachable()
    seed = random.randrange(1 << 30)
    delay = random.Random(seed).uniform(0.0, 1.0)
    sources = spoofed_sources(300)
    sw = Sentry(lab, workdir, conf=FLOOD_CONF)
    old_prog = daemon_bpf(sw.pid)["prog"]
    assert len(old_prog) == 1 and xdp_attached(lab) == old_prog
    journal_path = sw.paths["state"] / "blocks.journal"
    # 300 sources each hit tripwire TCP port 1: 300 blocks, reported one by one. The kill
    # comes at a random moment once the first block is applied.
    send_l3(lab, [ipv4(a, lab.target_ip4, tcp(a, lab.target_ip4, 1)) for a in sources])
    wait_for(lambda: journal_path.stat().st_size > 0, 5, step=0.005, what="first block")
    time.sleep(delay)
    sw.kill9()
    log1 = sw.log()
    assert xdp_attached(lab) == old_prog, "the dead daemon's program stays attached until taken over"
    alerted = re.findall(r"attackalert: TCP SYN/Normal scan from host: \S+/(\S+) to TCP port: 1$",
                         log1, re.M)
    rows, bad = history_rows(sw.read("history"))
    assert bad == [], f"torn or malformed history lines: {bad}"
    history = [r[2] for r in rows]
    assert len(set(history)) == len(history), "an address was recorded twice"
    # Every line reported is in the history, but for the one report in flight at the kill.
    assert set(history) <= set(alerted)
    assert len(set(alerted) - set(history)) <= 1, sorted(set(alerted) - set(history))
    journaled = set()
    for line in journal_path.read_text().splitlines():
        try:
            journaled.add(json.loads(line)["entry"]["addr"])
        except ValueError:  # torn by the kill: state.py skips it too
            pass
    assert journaled and set(history) <= journaled
    # A kill in the middle of a journal append leaves a torn last line: simulate one.
    with open(sw.paths["state"] / "blocks.journal", "a") as fh:
        fh.write('{"op": "add", "entry": {"addr": "100.64.9')
    sw2 = Sentry(lab, workdir)
    try:
        new_prog = daemon_bpf(sw2.pid)["prog"]
        assert len(new_prog) == 1 and new_prog != old_prog
        assert xdp_attached(lab) == new_prog
        net = json.loads(lab.run(lab.target_ns, "bpftool", "-j", "net", "show", "dev",
                                 lab.target_if).stdout)[0]["xdp"]
        assert [x["id"] for x in net] == new_prog, net
        wait_for(lambda: not prog_exists(old_prog[0]), 5, what="old program freed")
        m = re.search(r"restored (\d+) blocks from \S+ in ([\d.]+)s", sw2.log())
        assert m and int(m.group(1)) == len(journaled), (len(journaled), sw2.log())
        in_nft, in_xdp = set(nft_elems(lab, 4)), kernel_blocked(sw2.pid)
        assert journaled <= in_nft and journaled <= in_xdp
        assert {b["addr"] for b in sw2.status()["blocked"]} == journaled
        # The new program drops a restored source.
        dropped = sw2.status()["counters"]["dropped"]
        a = sorted(journaled)[0]
        send_l3(lab, [ipv4(a, lab.target_ip4, tcp(a, lab.target_ip4, 8080))])
        wait_for(lambda: sw2.status()["counters"]["dropped"] > dropped, 3, what="drop")
        figure("kill -9", f"killed {delay:.2f}s after the first of 300 blocks (seed {seed}): "
               f"{len(alerted)} alerted, {len(history)} in history, {len(journaled)} journaled, "
               f"{m.group(1)} restored in {m.group(2)} s; XDP prog {old_prog[0]} -> {new_prog[0]}")
    finally:
        sw2.stop()


def test_torn_last_record_does_not_swallow_the_next_one(lab, workdir):
    """A crash mid-append (power loss; kill -9 during a long write) leaves a line without
    its newline; the next record must still be a line of its own."""
    lab.wait_reachable()
    good = "1795748737 - 11/27/2026 03:05:37 Host: 192.0.2.1/192.0.2.1 Port: 1 TCP Blocked\n"
    torn = "1795748738 - 11/27/2026 03:05:38 Host: 192.0.2.2/192.0"
    (workdir / "history").write_text(good + torn)
    (workdir / "state").mkdir(mode=0o700)
    (workdir / "state" / "events.jsonl").write_text('{"type": "scan"}\n{"type": "sc')
    sw = Sentry(lab, workdir)
    try:
        nmap(lab, "-sS", "-p", "1-40")
        events_path = sw.paths["state"] / "events.jsonl"
        wait_for(lambda: lab.scanner_ip4 in sw.read("history"), 5, what="history record")
        wait_for(lambda: lab.scanner_ip4 in events_path.read_text(), 5, what="JSON event")
        text = sw.read("history")
        rows, bad = history_rows(text)
        print(f"history after the restart: {text!r}")
        assert text.endswith("\n") and text.startswith(good)
        assert [r[2] for r in rows] == ["192.0.2.1", lab.scanner_ip4], (rows, bad)
        events = events_path.read_text().splitlines()
        assert json.loads(events[-1])["addr"] == lab.scanner_ip4
    finally:
        sw.stop()


# --- 3. restoring many blocks ------------------------------------------------------------------
def block_rows(n, now=None, expired=0):
    """Blocks for a blocks.json snapshot (model.BlockEntry fields as dicts):
    n live blocks, IPv4 and IPv6 alternately, expiring 10 min to 2 h from now, then
    `expired` blocks whose time is up (these must not come back)."""
    now = time.time() if now is None else now
    rng = random.Random(n)
    rows = []
    for i in range(n + expired):
        addr = (str(ipaddress.IPv4Address(0x0A000000 + i)) if i % 2 else
                str(ipaddress.IPv6Address((0x20010DB8 << 96) + (i << 16) + 1)))
        since = now - rng.uniform(1, 600)
        expires = now + rng.uniform(600, 7200) if i < n else now - rng.uniform(1, 600)
        rows.append({"addr": addr, "since": since, "expires": expires, "scan_type": "SYN/Normal",
                     "proto": "TCP", "port": 1, "mode": "stcp", "reason": "tripwire",
                     "ports": ["1/tcp"], "host": "", "evidence": "stealth", "level": 1,
                     "offences": 1})
    return rows


def write_snapshot(state_dir, rows):
    """rows as blocks.json in the format the daemon writes at stop (state.py, version 2:
    field names once, then one list per block)."""
    state_dir = Path(state_dir)
    state_dir.mkdir(mode=0o700, exist_ok=True)
    fields = list(rows[0]) if rows else []
    doc = {"format": "scanwatch-blocks", "version": 2, "fields": fields,
           "rows": [[r[f] for f in fields] for r in rows]}
    fd = os.open(state_dir / "blocks.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh)


def snapshot_addrs(state_dir):
    """Addresses in a version-2 blocks.json, read without scanwatch's own reader."""
    doc = json.loads((Path(state_dir) / "blocks.json").read_text())
    at = doc["fields"].index("addr")
    return [row[at] for row in doc["rows"]]


RESTORED_RE = re.compile(r"restored (\d+) blocks from \S+ in ([\d.]+)s")
RESTORE_N = 20000
RESTORE_GOAL_S = 2.0 * RESTORE_N / 100000  # the issue's goal, 100,000 in 2 s, at this size


@pytest.fixture(scope="class")
def restored():
    """One daemon started on a snapshot of RESTORE_N blocks (+100 expired ones)."""
    from lab import Lab
    d = Path(tempfile.mkdtemp(prefix="swres-"))
    try:
        with Lab() as lab:
            rows = block_rows(RESTORE_N, expired=100)
            write_snapshot(d / "state", rows)
            t0 = time.monotonic()
            sw = Sentry(lab, d)
            try:
                wall = time.monotonic() - t0
                m = RESTORED_RE.search(sw.log())
                yield {"lab": lab, "sw": sw, "rows": rows, "wall": wall,
                       "count": int(m.group(1)) if m else None,
                       "seconds": float(m.group(2)) if m else None}
            finally:
                sw.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)


class TestRestoreManyBlocks:
    def test_every_live_block_is_back_in_nft_xdp_and_status(self, restored):
        lab, sw, rows = restored["lab"], restored["sw"], restored["rows"]
        live = {r["addr"]: r["expires"] for r in rows[:RESTORE_N]}
        assert restored["count"] == RESTORE_N, sw.log()
        # A big set's dump can skip elements while the kernel resizes its hash: read again.
        for _ in range(5):
            t, now = time.monotonic(), time.time()
            elems = nft_all(lab)
            list_s = time.monotonic() - t
            if set(elems) == set(live):
                break
        assert set(elems) == set(live), f"{len(elems)} elements, {len(set(live) - set(elems))} missing"
        late = [a for a, (_t, exp) in elems.items() if exp > live[a] - now + 1]
        assert not late, f"{len(late)} blocks restored longer than they had left, e.g. {late[:3]}"
        n_xdp, cap, _ = daemon_map(sw.pid, "blocked")
        assert kernel_blocked(sw.pid) == set(live)
        st = sw.status()
        assert len(st["blocked"]) == RESTORE_N
        figure(f"restore {RESTORE_N}", f"{restored['seconds']:.2f} s (daemon log), start to active "
               f"{restored['wall']:.1f} s; nft {len(elems)} elements (listed in {list_s:.1f} s), "
               f"XDP map {n_xdp}/{cap}, status {len(st['blocked'])} blocked")

    def test_restore_meets_the_goal_rate(self, restored):
        assert restored["seconds"] is not None
        figure(f"restore {RESTORE_N}: goal", f"{restored['seconds']:.2f} s, goal {RESTORE_GOAL_S:.2f} s")
        assert restored["seconds"] <= RESTORE_GOAL_S


# --- 4. someone else flushes the ruleset or deletes our table ---------------------------------
RESTORE_WITHIN_S = 1.0  # the issue's goal
MONITOR_S = 0.25        # measured 0.015-0.034 s from the notification to the table back
POLL_SLACK_S = 0.2      # should the netlink monitor miss it, the fallback check runs every
                        # REFRESH_S=0.5 s from a loop polling the ring buffer 200 ms at a time


def test_flushed_ruleset_and_deleted_table_come_back_within_a_second(lab, web, workdir):
    """`nft flush ruleset`, `nft delete table`, and `nft flush chain` (the drop rules
    gone, the sets still there), each at a random moment: the daemon hears it from
    nftables' netlink notifications and puts everything back with the remaining time."""
    lab.wait_reachable()
    v4, v6 = lab.scanner_ip4, lab.scanner_ip6
    sw = Sentry(lab, workdir)

    def whole():
        rules = lab.run(lab.target_ns, "nft", "list", "chain", "inet", "scanwatch", "input").stdout
        return "@blocked4" in rules and "@blocked6" in rules and set(nft_all(lab)) == {v4, v6}

    try:
        scan_both(lab, sw)
        rng = random.Random()
        times = []
        trials = [cmd for _ in range(2) for cmd in (
            ["flush", "ruleset"], ["delete", "table", "inet", "scanwatch"],
            ["flush", "chain", "inet", "scanwatch", "input"])]
        for cmd in trials:
            time.sleep(rng.uniform(0, 1))  # a random phase against the fallback check
            before = nft_all(lab)
            assert whole()
            t0 = time.monotonic()
            assert lab.run(lab.target_ns, "nft", *cmd).returncode == 0
            t1 = time.monotonic()
            while not whole():
                assert time.monotonic() - t0 < 5, sw.log()
                time.sleep(0.005)
            times.append((" ".join(cmd[:2]), time.monotonic() - t1))
            after = nft_all(lab)
            elapsed = time.monotonic() - t0 + 1
            for a in (v4, v6):  # the remaining time, not a fresh BLOCK_TIMEOUT
                assert before[a][1] - elapsed - 1 <= after[a][1] <= before[a][1], (before, after)
        assert not connect(lab, lab.target_ip4, web), "the restored table does not drop"
        assert sw.log().count("was removed or changed by someone else; restored it with 2 "
                              "blocks") == len(trials)
        worst = max(t for _, t in times)
        figure("table restored after", ", ".join(f"{c}: {t:.3f} s" for c, t in times)
               + f"; worst {worst:.3f} s (goal {RESTORE_WITHIN_S} s)")
        assert worst <= RESTORE_WITHIN_S + POLL_SLACK_S
        # The netlink monitor, not the 0.5 s fallback poll, did it: with the poll alone
        # all six trials would fall under MONITOR_S about once in a hundred runs.
        assert worst <= MONITOR_S, times
    finally:
        sw.stop()


# --- 5. expiry and repeat offenders ------------------------------------------------------------
def test_blocks_expire_everywhere_and_a_repeat_offender_gets_twice_as_long(lab, web, workdir):
    lab.wait_reachable()
    v4 = lab.scanner_ip4
    sw = Sentry(lab, workdir, conf='BLOCK_TIMEOUT="3"\n')
    try:
        nmap(lab, "-sS", "-p", "1-40")
        sw.wait_history(v4)
        since = sw.status()["blocked"][0]["since"]
        (timeout, _), = nft_elems(lab, 4).values()
        assert timeout == 3, nft_elems(lab, 4)
        assert f"ALL: {v4}\n" in sw.read("hosts_deny")
        assert not connect(lab, lab.target_ip4, web, timeout=1.0)

        def lifted():
            return (not nft_elems(lab, 4) and f"ALL: {v4}" not in sw.read("hosts_deny")
                    and sw.status()["blocked"] == [] and v4 not in kernel_blocked(sw.pid))
        wait_for(lifted, 6, step=0.1, what="expiry in nft, hosts.deny, status and XDP")
        gone = time.time() - since
        assert sw.read("hosts_deny") == ADMIN_DENY
        assert connect(lab, lab.target_ip4, web), "still dropped after the block expired"
        assert f"adminalert: block of {v4} expired" in sw.log()
        # Caught again within REPEAT_WINDOW: offence 2, twice BLOCK_TIMEOUT.
        n_events = len(sw.events())
        nmap(lab, "-sS", "-p", "1-40")
        wait_for(lambda: [e for e in sw.events()[n_events:] if e.get("action") == "block"], 5,
                 what="second block")
        t1 = time.monotonic()
        (timeout2, _), = nft_elems(lab, 4).values()
        row, = sw.status()["blocked"]
        assert row["offences"] == 2 and timeout2 == 6, (row, timeout2)
        assert 4.5 < row["left"] <= 6
        # At 4 s (past the kernel's own BLOCK_TIMEOUT of 3 s) the source is still dropped
        # everywhere: userspace rewrote the XDP entry with the longer block.
        time.sleep(max(0.0, 4.0 - (time.monotonic() - t1)))
        assert v4 in nft_elems(lab, 4) and f"ALL: {v4}\n" in sw.read("hosts_deny")
        assert not connect(lab, lab.target_ip4, web, timeout=1.0), "XDP let the repeat offender in at 4 s"
        figure("expiry", f"BLOCK_TIMEOUT=3: lifted everywhere (nft, XDP, hosts.deny, status) "
               f"{gone:.1f} s after the block; repeat offence: nft timeout {timeout2} s, "
               f"offences {row['offences']}, still dropped at 4 s")
        assert 3.0 <= gone <= 4.5
    finally:
        sw.stop()


# --- 6. SIGHUP ---------------------------------------------------------------------------------
def test_sighup_reloads_config_and_ignore_file_and_a_broken_one_keeps_the_old(lab, web, workdir):
    lab.wait_reachable()
    v4, tgt = lab.scanner_ip4, lab.target_ip4
    mac = target_mac(lab)
    sw = Sentry(lab, workdir, conf='SCAN_TRIGGER="0"\n')
    conf, ign = sw.conf_path, sw.ignore_file

    def hup(expect):
        n = sw.log().count(expect)
        os.kill(sw.pid, signal.SIGHUP)
        wait_for(lambda: sw.log().count(expect) > n, 5, what=f"{expect!r} after SIGHUP")

    def hits(src, n):
        send_l3(lab, [ipv4(src, tgt, tcp(src, tgt, 1, sport=40000 + i)) for i in range(n)], mac)

    try:
        nmap(lab, "-sS", "-p", "1-40")
        sw.wait_history(v4)
        prog = xdp_attached(lab)
        conf.write_text('SCAN_TRIGGER="2"\n')
        hup("adminalert: configuration reloaded from")
        st = sw.status()
        assert st["scan_trigger"] == 2 and [b["addr"] for b in st["blocked"]] == [v4]
        assert xdp_attached(lab) == prog and v4 in nft_elems(lab, 4)
        assert not connect(lab, tgt, web, timeout=1.0), "a block was lost on reload"
        # The new trigger is in force in the kernel: two hits pass, the third reacts.
        tw = st["counters"]["tripwire"]
        hits("198.51.100.21", 2)
        wait_for(lambda: sw.status()["counters"]["tripwire"] >= tw + 2, 3, what="2 hits counted")
        time.sleep(0.3)
        assert "198.51.100.21" not in {b["addr"] for b in sw.status()["blocked"]}
        hits("198.51.100.21", 1)
        sw.wait_history("198.51.100.21")
        # The ignore file is re-read too.
        ign.write_text("# added while running\n198.51.100.22\n")
        hup("(1 ignore entries)")
        ignored = sw.status()["counters"]["ignored"]
        hits("198.51.100.22", 3)
        wait_for(lambda: sw.status()["counters"]["ignored"] >= ignored + 3, 3, what="ignored hits")
        # Broken files: one error line naming file and line; the old settings stay.
        conf.write_text('SCAN_TRIGGER="5"\nBLOCK_TCP="7"\n')
        hup("adminalert: reload failed, keeping the old configuration: error: ")
        assert re.search(rf"adminalert: reload failed, keeping the old configuration: error: "
                         rf"{re.escape(str(conf))}:2: BLOCK_TCP: '7' must be one of", sw.log()), sw.log()
        conf.write_text('SCAN_TRIGGER="5"\n')
        ign.write_text("198.51.100.22\n10.0.0.0/33\n")
        hup(f"keeping the old configuration: error: {ign}:2: ")
        st = sw.status()
        assert sw.proc.poll() is None and st["scan_trigger"] == 2, st["scan_trigger"]
        assert {b["addr"] for b in st["blocked"]} == {v4, "198.51.100.21"}
        assert xdp_attached(lab) == prog and set(nft_elems(lab, 4)) == {v4, "198.51.100.21"}
        ignored = st["counters"]["ignored"]
        hits("198.51.100.22", 3)  # still ignored: the old ignore list is kept
        wait_for(lambda: sw.status()["counters"]["ignored"] >= ignored + 3, 3, what="ignored hits")
        assert "198.51.100.22" not in {b["addr"] for b in sw.status()["blocked"]}
        errors = [l for l in sw.log().splitlines() if "reload failed" in l]
        figure("SIGHUP", f"SCAN_TRIGGER 0 -> 2 in force, ignore file re-read, blocks and XDP prog "
               f"{prog} kept; broken files logged: {errors}")
    finally:
        sw.stop()


# --- 7. spoofed flood --------------------------------------------------------------------------
FLOOD_S = 10
STATUS_WITHIN_S = 1.0
FLOOD_RATE, FLOOD_DENY_MAX = 120, 50  # BLOCK_RATE default; HOSTS_DENY_MAX below it, so it bites


def hping_flood(lab):
    return lab.popen(lab.scanner_ns, "hping3", "-n", "-q", "--rand-source", "--flood", "-S",
                     "-p", "1", lab.target_ip4, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                     text=True)


def stop_flood(proc):
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=10)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]


@pytest.fixture(scope="class")
def flooded():
    """`hping3 --rand-source --flood -S -p 1` (a tripwire) for FLOOD_S seconds against one
    daemon, measured while it runs, with a real IPv6 nmap scan in the middle of it; then a
    real IPv4 nmap scan; then SIGTERM under a second flood."""
    from lab import Lab
    d = Path(tempfile.mkdtemp(prefix="swres-"))
    r = {"sock_s": [], "cli_s": [], "cli_errors": []}

    def timed_status(sw, timeout):
        t = time.monotonic()
        try:
            reply = sw.request({"cmd": "status"}, timeout=timeout)
        except OSError:
            return float("inf"), None
        return time.monotonic() - t, reply

    try:
        with Lab() as lab:
            lab.wait_reachable()
            web_proc = listen(lab, 8080)
            sw = Sentry(lab, d, conf=f'BLOCK_RATE="{FLOOD_RATE}"\nHOSTS_DENY_MAX="{FLOOD_DENY_MAX}"\n')
            try:
                r["rss_before_kb"] = int(re.search(r"VmRSS:\s+(\d+)", Path(
                    f"/proc/{sw.pid}/status").read_text()).group(1))
                r["status_idle_s"] = timed_status(sw, 5)[0]
                flood = hping_flood(lab)
                t0 = time.monotonic()

                def by_socket():  # raw control-socket requests, back to back
                    while time.monotonic() - t0 < FLOOD_S - 3:
                        r["sock_s"].append(timed_status(sw, 3 * STATUS_WITHIN_S)[0])
                        time.sleep(0.2)

                def by_cli():  # `scanwatch status`, which gives up after 5 s
                    while time.monotonic() - t0 < FLOOD_S - 5:
                        t = time.monotonic()
                        res = sw.cli("status", "--json", "--run-dir", str(sw.paths["run"]),
                                     check=False)
                        r["cli_s"].append(time.monotonic() - t if res.returncode == 0
                                          else float("inf"))
                        if res.returncode:
                            r["cli_errors"].append((res.stdout + res.stderr).strip())
                        time.sleep(0.2)
                probes = [threading.Thread(target=f, daemon=True) for f in (by_socket, by_cli)]
                try:
                    time.sleep(1)
                    for th in probes:
                        th.start()
                    # A real scan (IPv6, the scanner's own address) in the middle of the
                    # flood, while the event ring overflows and BLOCK_RATE is spent.
                    time.sleep(max(0.0, 3 - (time.monotonic() - t0)))
                    nmap(lab, "-sS", "-p", "1-40", v6=True)
                    r["mid_scan_at"] = time.monotonic() - t0
                    time.sleep(max(0.0, FLOOD_S - 0.5 - (time.monotonic() - t0)))
                    r["log_during"] = sw.log().splitlines()
                    time.sleep(max(0.0, FLOOD_S - (time.monotonic() - t0)))
                finally:
                    out = stop_flood(flood)
                for th in probes:
                    th.join(timeout=FLOOD_S)
                r["alive"] = sw.proc.poll() is None
                m = re.search(r"(\d+) packets transmitted", out)
                r["sent"] = int(m.group(1)) if m else None
                # The maps as the flood left them (a walk during the flood counts churn).
                for name in ("sources", "blocked"):
                    r[name + "_map"] = daemon_map(sw.pid, name)[:2]
                time.sleep(1.5)  # the last summaries (written once a second)
                # The first answer may wait for requests the flood left queued; the second
                # one is what any status now costs.
                r["status_after_s"] = [timed_status(sw, 10)[0]]
                took, st = timed_status(sw, 10)
                r["status_after_s"].append(took)
                r["counters"] = st["counters"]
                r["capped_total"] = st["capped_total"]
                r["mid_scanner_listed"] = lab.scanner_ip6 in {b["addr"] for b in st["blocked"]}
                r["hwm_kb"] = sw.vmhwm_kb()
                r["log"] = sw.log().splitlines()
                r["mid_scanner_logged"] = f"from host: {lab.scanner_ip6}/" in sw.log()
                r["deny"] = [l for l in sw.read("hosts_deny").splitlines() if l.startswith("ALL: ")]
                r["deny_text"] = sw.read("hosts_deny")
                r["nft_addrs"] = set(nft_all(lab))
                r["nft"] = len(r["nft_addrs"])
                r["scanner_ip6"] = lab.scanner_ip6
                # A real scan from the scanner's own address right after the flood.
                r["web_before"] = connect(lab, lab.target_ip4, 8080)
                nmap(lab, "-sS", "-p", "1-40")
                r["web_after"] = connect(lab, lab.target_ip4, 8080, timeout=1.0)
                r["scanner_in_xdp"] = lab.scanner_ip4 in kernel_blocked(sw.pid)
                time.sleep(1.2)
                st = timed_status(sw, 10)[1]
                r["scanner_listed"] = lab.scanner_ip4 in {b["addr"] for b in st["blocked"]}
                r["scanner_logged"] = f"from host: {lab.scanner_ip4}/" in sw.log()
                # SIGTERM while a flood runs.
                flood = hping_flood(lab)
                try:
                    time.sleep(1.5)
                    t = time.monotonic()
                    sw.proc.send_signal(signal.SIGTERM)
                    try:
                        sw.proc.wait(timeout=2.5)
                        r["sigterm_s"] = time.monotonic() - t
                    except subprocess.TimeoutExpired:
                        r["sigterm_s"] = float("inf")
                finally:
                    stop_flood(flood)
            finally:
                sw.stop()
                web_proc.kill()
                web_proc.wait()
            yield r
    finally:
        shutil.rmtree(d, ignore_errors=True)


class TestSpoofedFlood:
    def test_figures(self, flooded):
        r, c = flooded, flooded["counters"]
        med = sorted(r["cli_s"])[len(r["cli_s"]) // 2]
        figure("flood", f"hping3 {FLOOD_S} s: {r['sent']} packets sent, XDP saw {c['packets']}, "
               f"dropped {c['dropped']}, kernel blocks {c['kernel_blocks']}, events lost "
               f"{c['events_lost']}")
        figure("flood: status answers", f"idle {r['status_idle_s']:.3f} s; during the flood: socket "
               f"{[round(x, 2) for x in r['sock_s']]} s, CLI {[round(x, 2) for x in r['cli_s']]} s "
               f"(median {med:.2f} s; inf = no answer; goal {STATUS_WITHIN_S} s) "
               f"{r['cli_errors'][:1]}; after it (source map full) "
               f"{[round(x, 2) for x in r['status_after_s']]} s")
        figure("flood: memory and maps", f"VmRSS before {r['rss_before_kb'] / 1024:.1f} MB, "
               f"VmHWM after {r['hwm_kb'] / 1024:.1f} MB; sources {r['sources_map'][0]}/"
               f"{r['sources_map'][1]}, blocked {r['blocked_map'][0]}/{r['blocked_map'][1]}")
        capped = [l for l in r["log"] if "block rate cap" in l]
        figure("flood: caps", f"nft {r['nft']} elements (BLOCK_RATE {FLOOD_RATE}/min), hosts.deny "
               f"{len(r['deny'])} lines (HOSTS_DENY_MAX {FLOOD_DENY_MAX}), log {len(r['log'])} "
               f"lines ({len(r['log_during'])} during the flood), {len(capped)} cap summaries")
        figure("flood: real scan during it", f"IPv6 nmap at {r['mid_scan_at']:.1f} s: listed in "
               f"status {r['mid_scanner_listed']}, logged {r['mid_scanner_logged']}")
        figure("flood: then", f"real nmap scan: XDP-blocked {r['scanner_in_xdp']}, listed in status "
               f"{r['scanner_listed']}, logged {r['scanner_logged']}; SIGTERM under a flood: "
               f"exit after {r['sigterm_s']:.2f} s")
        assert r["alive"] and c["kernel_blocks"] > 10 * FLOOD_RATE, "the flood did not reach the caps"

    def test_memory_and_maps_stay_bounded(self, flooded):
        r = flooded
        assert r["hwm_kb"] < 80 * 1024  # 57 MB measured; 126 MB when status copied whole maps
        assert r["sources_map"][0] <= r["sources_map"][1]
        assert r["blocked_map"][0] <= r["blocked_map"][1]
        assert r["sources_map"][0] > r["sources_map"][1] // 2, "the flood did not fill the map"

    def test_blocks_hosts_deny_and_log_are_capped(self, flooded):
        r = flooded
        alerts = [l for l in r["log"] if "attackalert: TCP SYN/Normal scan" in l
                  and r["scanner_ip6"] not in l]
        # BLOCK_RATE spoofed sources in full; the real scanner of the middle of the flood
        # on top, from the second budget (proven sources).
        spoofed = r["nft_addrs"] - {r["scanner_ip6"]}
        assert len(spoofed) == FLOOD_RATE and len(alerts) == FLOOD_RATE
        assert r["scanner_ip6"] in r["nft_addrs"]
        assert len(r["deny"]) == FLOOD_DENY_MAX and r["deny_text"].startswith(ADMIN_DENY)
        assert any(f"HOSTS_DENY_MAX={FLOOD_DENY_MAX}" in l for l in r["log"])
        capped = [int(re.search(r"reached: (\d+) more", l).group(1))
                  for l in r["log"] if "block rate cap (BLOCK_RATE=120/min) reached" in l]
        assert capped and sum(capped) > 1000
        assert sum(capped) == r["capped_total"], "status and the summaries disagree"
        assert len(r["log"]) < 8 * FLOOD_RATE + 100, "one log line per packet?"

    def test_a_real_scan_right_after_the_flood_is_still_blocked(self, flooded):
        r = flooded
        assert r["web_before"], "the scanner could not connect before its scan"
        assert r["scanner_in_xdp"] and not r["web_after"]

    def test_a_real_scan_during_the_flood_is_reported(self, flooded):
        """The flood overflows the event ring and spends BLOCK_RATE; the scanner keeps
        probing after the kernel blocked it, which the kernel reports on its own ring."""
        assert flooded["mid_scan_at"] < FLOOD_S - 1, "the scan did not run during the flood"
        assert flooded["mid_scanner_listed"] and flooded["mid_scanner_logged"]

    def test_a_real_scan_right_after_the_flood_is_reported(self, flooded):
        assert flooded["scanner_listed"] and flooded["scanner_logged"]

    def test_status_answers_within_a_second_during_the_flood(self, flooded):
        assert max(flooded["sock_s"]) < STATUS_WITHIN_S
        assert max(flooded["cli_s"]) < STATUS_WITHIN_S

    def test_status_answers_within_a_second_after_the_flood(self, flooded):
        assert flooded["status_idle_s"] < STATUS_WITHIN_S  # before the flood it does
        assert min(flooded["status_after_s"]) < STATUS_WITHIN_S

    def test_periodic_work_and_sigterm_keep_working_during_the_flood(self, flooded):
        during = [l for l in flooded["log_during"] if "block rate cap" in l]
        assert len(during) >= FLOOD_S - 3, f"{len(during)} cap summaries during {FLOOD_S} s"
        assert flooded["sigterm_s"] < 2.0


# --- 8. malformed traffic ----------------------------------------------------------------------
def test_malformed_fragmented_and_optioned_packets_are_never_misclassified(lab, workdir):
    lab.wait_reachable()
    t4, t6 = lab.target_ip4, lab.target_ip6
    sw = Sentry(lab, workdir)
    try:
        before = sw.status()["counters"]
        s = {k: f"198.51.100.{40 + i}" for i, k in enumerate("ABCDEFGH")}
        s6 = {k: f"2001:db8::{0x40 + i:x}" for i, k in enumerate("GHIJK")}
        malformed = [
            ipv4(s["A"], t4, tcp(s["A"], t4, 1)[:10]),                    # TCP header cut at 10 bytes
            ipv4(s["B"], t4, tcp(s["B"], t4, 1))[:12],                    # IPv4 header cut at 12 bytes
            bytes([0x43]) + ipv4(s["B"], t4, tcp(s["B"], t4, 1))[1:],     # IHL 3 (< 20 bytes)
            ipv6(s6["I"], t6, HOPOPTS, ext_opts(6) + tcp(s6["I"], t6, 1)[:10]),
            ipv6(s6["J"], t6, HOPOPTS, ext_opts(6)[:4]),                  # extension header cut
        ]
        probes = [
            # RFC 1858 tiny first fragment (ports, no flags): a probe of its own
            ipv4(s["E"], t4, tcp(s["E"], t4, 1)[:8], frag=0x2000),
            # first fragment (MF, offset 0) holding a whole SYN header: classified as usual
            ipv4(s["C"], t4, tcp(s["C"], t4, 1, "S") + b"x" * 8, frag=0x2000, ident=9),
            # later fragment whose payload looks like a flagless TCP header: not a NULL scan
            ipv4(s["D"], t4, tcp(s["D"], t4, 1, ""), frag=0x0001, ident=9),
            # IP options (record route) on a FIN probe
            ipv4(s["F"], t4, tcp(s["F"], t4, 1, "F"),
                 options=bytes([7, 7, 4]) + b"\0" * 4 + b"\0"),
            # XMAS behind hop-by-hop, destination options, routing and fragment headers
            ipv6(s6["G"], t6, HOPOPTS, ext_opts(DSTOPTS) + ext_opts(ROUTING) + ext_routing(FRAGMENT)
                 + ext_frag(6) + tcp(s6["G"], t6, 1, "FPU")),
            # later IPv6 fragment whose payload looks like a flagless TCP header
            ipv6(s6["H"], t6, FRAGMENT, ext_frag(6, offset=8, more=False) + tcp(s6["H"], t6, 1, "")),
        ]
        send_l3(lab, malformed + probes)
        wait_for(lambda: len([e for e in sw.events() if e.get("action") == "block"]) >= 4, 5,
                 what="4 blocks")
        sw.wait_history(s["F"])
        time.sleep(0.5)
        st = sw.status()
        c = st["counters"]
        blocks = {e["addr"]: e for e in sw.events() if e.get("action") == "block"}
        log = sw.log()
        delta = {k: c[k] - before[k] for k in c}
        figure("malformed", f"counters delta {({k: v for k, v in delta.items() if v})}; blocks "
               f"{ {a: (e['scan_type'], e['ip_options']) for a, e in blocks.items()} }")
        assert sw.proc.poll() is None
        assert delta["malformed"] == len(malformed), delta
        assert set(blocks) == {s["C"], s["E"], s["F"], s6["G"]}, blocks
        assert blocks[s["E"]]["scan_type"] == "Tiny Fragment" and blocks[s["E"]]["fragmented"]
        assert blocks[s["C"]]["scan_type"] == "SYN/Normal" and not blocks[s["C"]]["ip_options"]
        assert blocks[s["F"]]["scan_type"] == "FIN" and blocks[s["F"]]["ip_options"]
        assert blocks[s6["G"]]["scan_type"] == "XMAS"
        assert {k: delta[k] for k in st["packets"]} == {
            "SYN/Normal": 1, "FIN": 1, "NULL": 0, "XMAS": 1, "Unknown Type": 0, "UDP": 0,
            "ACK/Window": 0, "Maimon": 0, "Tiny Fragment": 1}, delta
        assert (f"attackalert: Packet from host: {s['F']}/{s['F']} to TCP port: 1 has IP options "
                f"set (detection avoidance technique).") in log
        assert f"attackalert: TCP FIN scan from host: {s['F']}/{s['F']} to TCP port: 1" in log
        assert f"attackalert: TCP XMAS scan from host: {s6['G']}/{s6['G']} to TCP port: 1" in log
        assert not any(a in log for a in (s["A"], s["B"], s["D"], s6["H"], s6["I"], s6["J"]))
    finally:
        sw.stop()


def test_truncated_tcp_header_in_a_padded_frame_is_malformed_not_a_null_scan(lab, workdir):
    lab.wait_reachable()
    t4, t6 = lab.target_ip4, lab.target_ip6
    sw = Sentry(lab, workdir)
    try:
        before = sw.status()["counters"]
        a4, a6 = "198.51.100.60", "2001:db8::60"
        pad = lambda p: p + b"\0" * (46 - len(p))  # Ethernet's minimum: 60 bytes a frame
        send_l3(lab, [pad(ipv4(a4, t4, tcp(a4, t4, 1)[:10])),
                      ipv6(a6, t6, 6, tcp(a6, t6, 1)[:10] + b"\0" * 10, plen=10)])
        time.sleep(0.5)
        c = sw.status()["counters"]
        figure("padded truncated TCP", f"malformed +{c['malformed'] - before['malformed']}, "
               f"NULL +{c['NULL'] - before['NULL']}, blocks "
               f"{[e['addr'] for e in sw.events() if e.get('action') == 'block']}")
        assert c["NULL"] == before["NULL"] and c["malformed"] - before["malformed"] == 2
    finally:
        sw.stop()


SNIFF_TCP = r"""
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86dd))
s.bind((sys.argv[1], 0))
s.settimeout(0.2)
print("ready", flush=True)
end, n = time.time() + float(sys.argv[2]), 0
while time.time() < end:
    try:
        f = s.recv(4096)
    except OSError:
        continue
    if f[14 + 6] == 6 and f[14 + 40 + 13] & 0x04:  # TCP with RST, from the target's stack
        n += 1
print(n)
"""


def test_a_scan_behind_five_ipv6_extension_headers_is_still_seen(lab, workdir):
    lab.wait_reachable()
    s6, t6 = lab.scanner_ip6, lab.target_ip6
    sw = Sentry(lab, workdir)
    try:
        chain = [HOPOPTS, DSTOPTS, DSTOPTS, DSTOPTS, DSTOPTS]
        hdrs = b"".join(ext_opts(chain[i + 1] if i + 1 < len(chain) else 6)
                        for i in range(len(chain)))
        sniff = lab.popen(lab.scanner_ns, sys.executable, "-c", SNIFF_TCP, lab.scanner_if, "2",
                          stdout=subprocess.PIPE, text=True)
        assert sniff.stdout.readline().strip() == "ready"
        send_l3(lab, [ipv6(s6, t6, HOPOPTS, hdrs + tcp(s6, t6, port, sport=42000 + port))
                      for port in range(1, 41)])
        resets = int(sniff.communicate(timeout=10)[0])
        st = sw.status()
        figure("5 IPv6 extension headers", f"40 SYN probes (ports 1-40, tripwires 1, 11, 15): the "
               f"target's stack answered {resets} with RST; scanwatch counted "
               f"{st['packets']['SYN/Normal']} SYN, blocked {[b['addr'] for b in st['blocked']]}")
        # Port 1 is a tripwire: the first probe is caught and dropped, and so is the rest.
        assert [b["addr"] for b in st["blocked"]] == [s6], st
        assert st["packets"]["SYN/Normal"] >= 1 and resets == 0
    finally:
        sw.stop()


# --- 9. hostile input ----------------------------------------------------------------------------
SEEDED_BLOCK = "203.0.113.9"


def seed_installation(lab, live):
    """What a running installation has in place: our nft table with a block (its counter
    non-zero), someone else's table, hosts.deny with an admin line and ours, a history
    line, blocked files, a state dir with the block. Nothing here may change when a
    start is refused."""
    live = Path(live)
    from scanwatch.firewall import render_setup
    script = (render_setup("scanwatch")
              + f"add element inet scanwatch blocked4 {{ {SEEDED_BLOCK} timeout 1h }}\n"
              + "add table inet other\n"
              + "add chain inet other c { type filter hook input priority 0; policy accept; }\n"
              + "add rule inet other c tcp dport 9 accept\n")
    res = lab.run(lab.target_ns, "nft", "-f", "-", input=script)
    assert res.returncode == 0, res.stderr
    # One packet from the blocked address: the drop rule's counter is now 1.
    send_l3(lab, [ipv4(SEEDED_BLOCK, lab.target_ip4, tcp(SEEDED_BLOCK, lab.target_ip4, 8080))])
    assert "counter packets 1 " in nft_ruleset(lab)
    (live / "run").mkdir(parents=True)
    (live / "hosts.deny").write_text(ADMIN_DENY + f"ALL: {SEEDED_BLOCK}\n")
    line = f"1795748737 - 11/27/2026 03:05:37 Host: {SEEDED_BLOCK}/{SEEDED_BLOCK} Port: 1 TCP Blocked\n"
    (live / "history").write_text(line)
    (live / "blocked.stcp").write_text(line)
    (live / "blocked.sudp").write_text("")
    (live / "ignore").write_text("# nothing\n")
    rows = block_rows(0)
    now = time.time()
    rows.append({"addr": SEEDED_BLOCK, "since": now - 60, "expires": now + 3540,
                 "scan_type": "SYN/Normal", "proto": "TCP", "port": 1, "mode": "stcp",
                 "reason": "tripwire", "ports": ["1/tcp"], "host": "", "evidence": "stealth",
                 "level": 1, "offences": 1})
    write_snapshot(live / "state", rows)
    (live / "state" / "blocks.journal").write_text("")
    (live / "state" / "hostsdeny.json").write_text(json.dumps(
        {"version": 1, "hosts_deny": str(live / "hosts.deny"),
         "lines": {SEEDED_BLOCK: f"ALL: {SEEDED_BLOCK}"}, "joined": []}))


def installation(lab, live):
    """Everything seed_installation put in place, comparable byte for byte."""
    files = {}
    for p in sorted(Path(live).rglob("*")):
        st = os.lstat(p)
        if stat.S_ISREG(st.st_mode):
            files[str(p)] = (oct(st.st_mode), hashlib.sha256(p.read_bytes()).hexdigest())
        else:
            files[str(p)] = (oct(st.st_mode), os.readlink(p) if stat.S_ISLNK(st.st_mode) else "")
    ruleset = re.sub(r" expires \S+", "", nft_ruleset(lab))  # the one thing that ticks
    return {"files": files, "nft": ruleset, "xdp": xdp_attached(lab)}


def refused_start(lab, live, *args, timeout=60):
    """`scanwatch run ARGS` with the installation's paths; (exit status, stdout, stderr)."""
    live = Path(live)
    argv = [*SCANWATCH, "run", *args, "--state-dir", live / "state", "--run-dir", live / "run",
            "--hosts-deny", live / "hosts.deny", "--history-file", live / "history",
            "--blocked-file", live / "blocked"]
    if "--ignore-file" not in args:
        argv += ["--ignore-file", live / "ignore"]
    try:
        res = lab.run(lab.target_ns, *argv, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "", f"(no answer in {timeout} s)"
    return res.returncode, res.stdout, res.stderr


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


# --- 10. symlinks planted in the state dir ----------------------------------------------------
VICTIM = b"victim's own bytes\n"


def plant(state, name, victim, exists=True):
    """state/name -> victim (a file outside the state dir, with VICTIM in it if exists)."""
    state.mkdir(mode=0o700, exist_ok=True)
    if exists:
        victim.write_bytes(VICTIM)
    os.symlink(victim, state / name)


def block_and_stop(lab, workdir):
    sw = Sentry(lab, workdir)
    try:
        nmap(lab, "-sS", "-p", "1-40")
        sw.wait_history(lab.scanner_ip4)
        assert sw.stop() == 0
    finally:
        sw.stop()
    return sw


def test_a_planted_temp_file_symlink_is_not_followed(lab, workdir):
    """blocks.json.tmp points elsewhere before the start; the daemon blocks, records and
    stops (rewriting the snapshot through that temp name twice); the victim is unchanged
    and the state files are regular files, 0600, in a 0700 directory."""
    lab.wait_reachable()
    state = workdir / "state"
    victim = workdir / "victim-tmp"
    plant(state, "blocks.json.tmp", victim)
    sw = block_and_stop(lab, workdir)
    assert victim.read_bytes() == VICTIM
    modes = {p.name: oct(stat.S_IMODE(os.lstat(p).st_mode)) for p in state.iterdir()}
    figure("state files", f"{modes}, dir {oct(stat.S_IMODE(os.stat(state).st_mode))}")
    for p in state.iterdir():
        st = os.lstat(p)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, (p, modes)
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    assert f"ALL: {lab.scanner_ip4}\n" in sw.read("hosts_deny")
    assert snapshot_addrs(state) == [lab.scanner_ip4]


def test_a_planted_hosts_deny_state_symlink_is_not_followed(lab, workdir):
    lab.wait_reachable()
    victim = workdir / "victim-hostsdeny.json"
    plant(workdir / "state", "hostsdeny.json", victim)
    sw = Sentry(lab, workdir)
    try:
        nmap(lab, "-sS", "-p", "1-40")
        wait_for(lambda: "attackalert: Host" in sw.log(), 5, what="block")
        time.sleep(1)
        errors = [l for l in sw.log().splitlines() if "error" in l.lower()]
        figure("hostsdeny.json -> victim", f"victim unchanged {victim.read_bytes() == VICTIM}; "
               f"errors: {errors}")
        assert victim.read_bytes() == VICTIM
        assert f"ALL: {lab.scanner_ip4}\n" in sw.read("hosts_deny") and not errors
    finally:
        sw.stop()


@pytest.mark.parametrize("name", ["blocks.json", "blocks.journal"])
def test_a_planted_block_table_symlink_is_refused_not_read(lab, workdir, name):
    lab.wait_reachable()
    victim = workdir / f"victim-{name}"
    plant(workdir / "state", name, victim)
    rc, out, err = refused_start(lab, workdir)
    figure(f"{name} -> victim", f"exit {rc}: {err.strip()!r}")
    assert rc not in (0, None) and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {workdir / 'state' / name}: ") and "symbolic link" in err
    assert victim.read_bytes() == VICTIM and (workdir / "state" / name).is_symlink()


def test_a_planted_events_log_symlink_is_not_followed(lab, workdir):
    lab.wait_reachable()
    victim = workdir / "victim-events"
    plant(workdir / "state", "events.jsonl", victim)
    block_and_stop(lab, workdir)
    figure("events.jsonl -> victim", f"victim now {len(victim.read_bytes())} bytes")
    assert victim.read_bytes() == VICTIM


def test_a_planted_lock_symlink_does_not_create_its_target(lab, workdir):
    lab.wait_reachable()
    victim = workdir / "created-through-a-symlink"
    plant(workdir / "state", "hostsdeny.json.lock", victim, exists=False)
    block_and_stop(lab, workdir)
    figure("hostsdeny.json.lock -> missing file", f"created: {victim.exists()}")
    assert not victim.exists()


def test_a_journal_swapped_for_a_symlink_at_runtime_is_refused_and_the_block_still_reported(
        lab, workdir):
    lab.wait_reachable()
    victim = workdir / "victim-journal"
    sw = Sentry(lab, workdir)
    try:
        journal = sw.paths["state"] / "blocks.journal"
        assert not journal.is_symlink()
        if journal.exists():  # no journal yet when nothing was ever blocked
            journal.unlink()
        plant(sw.paths["state"], "blocks.journal", victim)
        nmap(lab, "-sS", "-p", "1-40")
        wait_for(lambda: lab.scanner_ip4 in nft_elems(lab, 4), 5, what="nft block")
        try:
            sw.wait_history(lab.scanner_ip4, timeout=3)
            reported = True
        except AssertionError:
            reported = False
        figure("journal swapped at runtime", f"victim unchanged {victim.read_bytes() == VICTIM}, "
               f"block reported {reported}; log: "
               f"{[l for l in sw.log().splitlines() if 'error' in l][:1]}")
        assert victim.read_bytes() == VICTIM
        assert reported
    finally:
        sw.stop()
