"""Helpers for the sentry's resilience tests (issue 6), not a test: a restartable daemon,
its kernel maps, nftables in the target namespace, hand-built frames, seeded installations."""
import ctypes
import hashlib
import ipaddress
import json
import os
import random
import re
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

from rawsend import checksum
from sentryproc import SCANWATCH, SentryProcess, nmap


ROOT = Path(__file__).resolve().parents[2]  # the repository
HISTORY_RE = re.compile(r"^(\d+) - \d\d/\d\d/\d{4} \d\d:\d\d:\d\d Host: (\S+)/(\S+) Port: (\d+) "
                        r"(TCP|UDP) Blocked$")
ADMIN_DENY = "# admin's own line\nsshd: 192.0.2.7\n"
ACTIVE = "is now active on"
RESTORED_RE = re.compile(r"restored (\d+) blocks from \S+ in ([\d.]+)s")
STATUS_WITHIN_S = 1.0  # issue 6: status answers within a second, even in a flood


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
    from scanwatch.sentry.kernel.bpfsys import _bpf
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
    from scanwatch.sentry.kernel.bpfsys import MapInfo, _bpf, obj_info
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
    from scanwatch.sentry.ignore import from_key
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


def nft_prefix_elems(lab, table="scanwatch"):
    """{prefix: (timeout, expires)} of set prefix6 (issue 14); {} when it is missing."""
    res = lab.run(lab.target_ns, "nft", "-j", "list", "set", "inet", table, "prefix6")
    out = {}
    for obj in json.loads(res.stdout)["nftables"] if res.returncode == 0 else ():
        for el in obj.get("set", {}).get("elem", []):
            e = el.get("elem", el) if isinstance(el, dict) else {"val": el}
            val = e.get("val", e)
            p = val.get("prefix") if isinstance(val, dict) else None
            key = f"{p['addr']}/{p['len']}" if p else str(ipaddress.ip_address(val))
            out[key] = (e.get("timeout"), e.get("expires", 0 if "timeout" in e else None))
    return out


def nft_all(lab, table="scanwatch"):
    return {**nft_elems(lab, 4, table), **nft_elems(lab, 6, table),
            **nft_prefix_elems(lab, table)}


def v6_block(addr, bits=64):
    """What an IPv6 source is blocked as under the default V6_PREFIX (issue 14): its /64."""
    return str(ipaddress.ip_network(f"{addr}/{bits}", strict=False))


def v6_deny(lab):
    """The hosts.deny line of the lab scanner's IPv6 prefix block: the target's own address
    shares the /64 and is never blocked, so it is excepted."""
    net = ipaddress.ip_network(f"{lab.scanner_ip6}/64", strict=False)
    return f"ALL: [{net.network_address}]/64 EXCEPT [{lab.target_ip6}]\n"


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
                     "offences": 1, "modes": ["stcp"]})
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


SEEDED_BLOCK = "203.0.113.9"


def seed_installation(lab, live):
    """What a running installation has in place: our nft table with a block (its counter
    non-zero), someone else's table, hosts.deny with an admin line and ours, a history
    line, blocked files, a state dir with the block. Nothing here may change when a
    start is refused."""
    live = Path(live)
    from scanwatch.sentry.respond.firewall import render_setup
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
