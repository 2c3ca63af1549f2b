#!/usr/bin/env python3
"""psad 2.4 inside a lab's target namespace, for bench/evasion.py (not a test).

psad reads the kernel's iptables LOG lines from a syslog file. In a network namespace
other than the host's, the kernel writes no LOG line at all: net.netfilter.nf_log_all_netns
is 0 (the default, and a global switch: setting it would send every container's LOG rules
to the host's kernel log). So the LOG rule here is an NFLOG rule, whose packets reach
userspace over netlink inside the namespace, and `--helper nflog` writes each as the line
the kernel's LOG target would have written (nf_log_ipv4's format) into the file psad tails.
What psad sees is the same text; only the path it takes differs.

psad's settings are Debian's psad.conf with: its directories in a temp dir, ENABLE_AUTO_IDS
Y at AUTO_IDS_DANGER_LEVEL 1 (the default never blocks; level 1 is the fastest it can),
CHECK_INTERVAL 1 s (default 5), no mail, whois or DNS, EXPECT_TCP_OPTIONS N.
"""
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

GROUP = 5
PREFIX = "DROP "  # psad's FW_MSG_SEARCH


def _nflog(group, ifname, out_path):
    """NFLOG group -> kernel LOG-format lines in out_path (runs in the namespace)."""
    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
    nl.bind((0, 0))
    nl.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)

    def cfg(attrs):
        body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(int(group)))
        for typ, data in attrs:
            a = struct.pack("=HH", 4 + len(data), typ) + data
            body += a + b"\0" * (-len(a) % 4)
        # NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_CONFIG; NLM_F_REQUEST | NLM_F_ACK
        nl.send(struct.pack("=IHHII", 16 + len(body), (4 << 8) | 1, 1 | 4, 1, 0) + body)
        nl.recv(65536)
    cfg([(1, b"\x01")])                                         # NFULA_CFG_CMD: BIND
    cfg([(2, struct.pack(">IBB", 0xffff, 2, 0))])              # NFULA_CFG_MODE: copy packet
    host = socket.gethostname()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    t0 = time.monotonic()
    with open(out_path, "a") as fh:
        print("ready", flush=True)
        while True:
            data = nl.recv(1 << 20)
            off = 0
            while off + 16 <= len(data):
                length, typ = struct.unpack_from("=IH", data, off)
                if length < 16:
                    break
                if typ == (4 << 8) | 0:  # NFULNL_MSG_PACKET
                    attrs, a = {}, off + 20
                    while a + 4 <= off + length:
                        alen, atyp = struct.unpack_from("=HH", data, a)
                        if alen < 4:
                            break
                        attrs[atyp & 0x7fff] = data[a + 4:a + alen]
                        a += (alen + 3) & ~3
                    pkt = attrs.get(9)  # NFULA_PAYLOAD
                    prefix = attrs.get(10, b"").rstrip(b"\0").decode()
                    if pkt:
                        line = _log_line(pkt, prefix, ifname)
                        if line:
                            now = time.strftime("%b %e %H:%M:%S")
                            fh.write(f"{now} {host} kernel: [{time.monotonic() - t0:12.6f}] "
                                     f"{line}\n")
                            fh.flush()
                off += (length + 3) & ~3


def _tcp_udp(s, proto, l4):
    """nf_log's TCP / UDP part (shared by IPv4 and IPv6)."""
    if proto == 6:
        s += "PROTO=TCP "
        if len(l4) < 20:
            return s + f"INCOMPLETE [{len(l4)} bytes] "
        sp, dp, _seq, _ack, off, fl, win, _ck, urg = struct.unpack_from(">HHIIBBHHH", l4)
        s += f"SPT={sp} DPT={dp} WINDOW={win} RES=0x{(off & 0x0f) << 4 & 0x3c:02x} "
        for bit, name in ((0x80, "CWR"), (0x40, "ECE"), (0x20, "URG"), (0x10, "ACK"),
                          (0x08, "PSH"), (0x04, "RST"), (0x02, "SYN"), (0x01, "FIN")):
            if fl & bit:
                s += name + " "
        return s + f"URGP={urg} "
    s += "PROTO=UDP "
    if len(l4) < 8:
        return s + f"INCOMPLETE [{len(l4)} bytes] "
    sp, dp, ulen = struct.unpack_from(">HHH", l4)
    return s + f"SPT={sp} DPT={dp} LEN={ulen} "


def _log_line6(pkt, prefix, ifname):
    """The text nf_log_ipv6 writes for an IPv6 packet logged on input (no MAC): addresses
    in full (%pI6), as psad's IPv6 pattern wants them."""
    if len(pkt) < 40:
        return None
    word, plen, nh, hl = struct.unpack_from(">IHBB", pkt)

    def full(b):
        return ":".join(b[i:i + 2].hex() for i in range(0, 16, 2))
    s = (f"{prefix}IN={ifname} OUT= SRC={full(pkt[8:24])} DST={full(pkt[24:40])} "
         f"LEN={plen + 40} TC={(word >> 20) & 0xff} HOPLIMIT={hl} FLOWLBL={word & 0xfffff} ")
    off = 40
    while nh in (0, 43, 60, 44) and off + 8 <= len(pkt):  # walk what nf_log_ipv6 walks
        if nh == 44:
            fo = struct.unpack_from(">H", pkt, off + 2)[0]
            s += f"FRAG:{fo & 0xfff8} ID:{struct.unpack_from('>I', pkt, off + 4)[0]:08x} "
            if fo & 0xfff8:
                return s + f"PROTO={pkt[off]} "
            nh, off = pkt[off], off + 8
        else:
            nh, off = pkt[off], off + (pkt[off + 1] + 1) * 8
    if nh in (6, 17):
        return _tcp_udp(s, nh, pkt[off:])
    if nh == 58 and len(pkt) >= off + 2:
        return s + f"PROTO=ICMPv6 TYPE={pkt[off]} CODE={pkt[off + 1]} "
    return s + f"PROTO={nh} "


def _log_line(pkt, prefix, ifname):
    """The text nf_log_ipv4 writes for an IPv4 packet logged on input (no MAC)."""
    if len(pkt) >= 1 and pkt[0] >> 4 == 6:
        return _log_line6(pkt, prefix, ifname)
    if len(pkt) < 20 or pkt[0] >> 4 != 4:
        return None
    ihl = (pkt[0] & 15) * 4
    tot, ident, frag = struct.unpack_from(">HHH", pkt, 2)
    s = (f"{prefix}IN={ifname} OUT= SRC={socket.inet_ntoa(pkt[12:16])} "
         f"DST={socket.inet_ntoa(pkt[16:20])} LEN={tot} TOS=0x{pkt[1] & 0x1e:02X} "
         f"PREC=0x{pkt[1] & 0xe0:02X} TTL={pkt[8]} ID={ident} ")
    if frag & 0x8000:
        s += "CE "
    if frag & 0x4000:
        s += "DF "
    if frag & 0x2000:
        s += "MF "
    if frag & 0x1fff:
        s += f"FRAG:{frag & 0x1fff} "
    if ihl > 20:
        s += "OPT (" + pkt[20:ihl].hex().upper() + ") "
    proto, l4 = pkt[9], pkt[ihl:]
    if proto in (6, 17):
        if frag & 0x1fff:
            return s + ("PROTO=TCP " if proto == 6 else "PROTO=UDP ")
        return _tcp_udp(s, proto, l4)
    if proto == 1 and len(l4) >= 4:
        return s + f"PROTO=ICMP TYPE={l4[0]} CODE={l4[1]} "
    return s + f"PROTO={proto} "


if __name__ == "__main__" and len(sys.argv) > 2 and sys.argv[1] == "--helper":
    _nflog(*sys.argv[3:])
    sys.exit(0)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sentry as S  # noqa: E402


class Psad:
    """psad --no-daemon in the target namespace (private mount namespace for
    nothing: every path it writes is in the trial's directory)."""

    def __init__(self, t):
        self.t = t
        self.d = d = t.dir / "psad"
        for sub in ("log", "run", "fifo"):
            (d / sub).mkdir(parents=True)
        self.msgs = d / "messages"
        self.msgs.write_text("")
        over = {"HOSTNAME": "swbench", "ENABLE_AUTO_IDS": "Y", "AUTO_IDS_DANGER_LEVEL": "1",
                "CHECK_INTERVAL": "1", "ALERTING_METHODS": "noemail",
                "ENABLE_WHOIS_LOOKUPS": "N", "ENABLE_DNS_LOOKUPS": "N",
                "EXPECT_TCP_OPTIONS": "N", "ENABLE_FW_LOGGING_CHECK": "N",
                "IPT_SYSLOG_FILE": str(self.msgs), "ENABLE_SYSLOG_FILE": "Y",
                "AUTO_DETECT_JOURNALCTL": "N", "ENABLE_FW_MSG_READ_CMD": "N",
                "PSAD_DIR": str(d / "log"), "PSAD_RUN_DIR": str(d / "run"),
                "PSAD_FIFO_DIR": str(d / "fifo"), "ETC_HOSTS_DENY_FILE": str(d / "hosts.deny"),
                "IMPORT_OLD_SCANS": "N", "ENABLE_PSADWATCHD": "N"}
        text = Path("/etc/psad/psad.conf").read_text()
        for k, v in over.items():
            text, n = re.subn(rf"^{k}\s+[^;]*;", f"{k}    {v};", text, flags=re.M)
            if n != 1:
                raise S.BenchError(f"psad.conf has no single {k}")
        self.conf = d / "psad.conf"
        self.conf.write_text(text)
        self.proc = None

    def start(self):
        t = self.t
        # log every new inbound packet to NFLOG (the LOG target's path is closed here)
        rules = ["-A INPUT -i lo -j ACCEPT",
                 "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
                 f"-A INPUT -j NFLOG --nflog-group {GROUP} --nflog-prefix {PREFIX!r}"]
        # ip6tables too: psad reads IPv6 log lines (ENABLE_IPV6_DETECTION Y); ICMPv6
        # neighbour discovery passes (NFLOG does not stop a packet)
        for cmd in ("iptables", "ip6tables"):
            for r in rules:
                res = t.lab.run("target", "sh", "-c", f"{cmd} {r}")
                if res.returncode != 0:
                    raise S.BenchError(f"{cmd} {r}: {res.stderr.strip()}")
        p = t.lab.popen("target", S.PYTHON, str(Path(__file__).resolve()), "--helper", "nflog",
                        str(GROUP), t.lab.target_if, str(self.msgs), stdout=subprocess.PIPE,
                        stderr=open(self.d / "nflog.err", "w"), text=True)
        if p.stdout.readline().strip() != "ready":
            raise S.BenchError("nflog helper: " + (self.d / "nflog.err").read_text()[-300:])
        t.helpers["nflog"] = p
        self.out = open(self.d / "psad.out", "w")
        self.proc = t.lab.popen("target", "psad", "-c", str(self.conf), "--no-daemon",
                                stdout=self.out, stderr=subprocess.STDOUT)
        time.sleep(3)  # psad has no readiness signal; it sets up its chains first
        if self.proc.poll() is not None:
            raise S.BenchError("psad exited: " + (self.d / "psad.out").read_text()[-500:])

    def settle(self):
        time.sleep(4)  # CHECK_INTERVAL 1 s, then the auto-block

    def result(self, scanner, fakes):
        import ipaddress
        v6 = ":" in scanner
        # psad blocks IPv4 addresses only (ipt_block); the IPv6 chain is read all the same
        res = self.t.lab.run("target", "ip6tables" if v6 else "iptables", "-S", "PSAD_BLOCK_INPUT")
        chain = res.stdout
        if v6:  # psad names its directory after the address as logged: in full
            scanner = ipaddress.ip_address(scanner).exploded
            fakes = [ipaddress.ip_address(a).exploded for a in fakes]
        dl = self.d / "log" / scanner / "danger_level"
        return {"reported": dl.exists() or (self.d / "log" / scanner).exists(),
                "danger_level": dl.read_text().strip() if dl.exists() else None,
                "blocked": f"-s {scanner}/32" in chain or (v6 and self._in6(scanner, chain)),
                "innocents": sum(1 for a in fakes if f"-s {a}/32" in chain
                                 or (v6 and self._in6(a, chain))),
                "logged_lines": sum(1 for _ in open(self.msgs))}

    @staticmethod
    def _in6(addr, chain):
        import ipaddress
        return f"-s {ipaddress.ip_address(addr).compressed}/128" in chain

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
