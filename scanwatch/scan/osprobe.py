"""The probes of nmap's OS detection (IPv4), sent on raw sockets, and their answers.

As documented for nmap ("TCP/IP Fingerprinting Methods Supported by Nmap"):
six SYNs to an open port 100 ms apart with six option sets (SEQ/OPS/WIN/T1),
an ECN SYN, T2-T4 to the open port, T5-T7 to a closed one, a UDP probe with
300 'C's to a closed UDP port (U1) and two ICMP echoes (IE). Each TCP probe has
its own source port, so an answer names its probe.
"""

from __future__ import annotations

import random
import select
import socket
import struct
import time
from dataclasses import dataclass, field

from . import net

TS = (0xFFFFFFFF, 0)
# (window, options) of the six sequence probes
SEQ_PROBES = [
    (1, [("W", 10), ("N",), ("M", 1460), ("T",), ("S",)]),
    (63, [("M", 1400), ("W", 0), ("S",), ("T",), ("L",)]),
    (4, [("T",), ("N",), ("N",), ("W", 5), ("N",), ("M", 640)]),
    (4, [("S",), ("T",), ("W", 10), ("L",)]),
    (16, [("M", 536), ("S",), ("T",), ("W", 10), ("L",)]),
    (512, [("M", 265), ("S",), ("T",)]),
]
T_OPTS = [("W", 10), ("N",), ("M", 265), ("T",), ("S",)]
# name: (flags, window, DF, to open port, options)
T_PROBES = {
    "T2": (0x00, 128, True, True, T_OPTS),
    "T3": (0x2B, 256, False, True, T_OPTS),          # SYN FIN URG PSH
    "T4": (0x10, 1024, True, True, T_OPTS),
    "T5": (0x02, 31337, False, False, T_OPTS),
    "T6": (0x10, 32768, True, False, T_OPTS),
    "T7": (0x29, 65535, False, False, [("W", 15)] + T_OPTS[1:]),  # FIN PSH URG
}
ECN_OPTS = [("W", 10), ("N",), ("M", 1460), ("S",), ("N",), ("N",)]
U1_ID = 0x1042
U1_DATA = b"C" * 300


def tcp_options(opts) -> bytes:
    out = b""
    for o in opts:
        kind = o[0]
        if kind == "N":
            out += b"\x01"
        elif kind == "L":
            out += b"\x00"
        elif kind == "M":
            out += struct.pack("!BBH", 2, 4, o[1])
        elif kind == "W":
            out += struct.pack("!BBB", 3, 3, o[1])
        elif kind == "S":
            out += b"\x04\x02"
        elif kind == "T":
            out += struct.pack("!BBII", 8, 10, *TS)
    while len(out) % 4:
        out += b"\x00"
    return out


def ip_header(src: str, dst: str, proto: int, payload_len: int, ident: int, df: bool,
              ttl: int = 64, tos: int = 0) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + payload_len, ident,
                      0x4000 if df else 0, ttl, proto, 0, socket.inet_aton(src),
                      socket.inet_aton(dst))
    return hdr[:10] + struct.pack("!H", net.checksum(hdr)) + hdr[12:]


def tcp_packet(src, dst, sport, dport, seq, ack, flags, window, opts, df, ident,
               urgent=0, reserved=0) -> bytes:
    options = tcp_options(opts)
    off = (20 + len(options)) // 4
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (off << 4) | reserved, flags,
                      window, 0, urgent) + options
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(hdr))
    hdr = hdr[:16] + struct.pack("!H", net.checksum(pseudo + hdr)) + hdr[18:]
    return ip_header(src, dst, 6, len(hdr), ident, df) + hdr


@dataclass
class Answers:
    seq: dict[int, tuple[float, bytes]] = field(default_factory=dict)    # probe i -> (t, pkt)
    seq_sent: dict[int, float] = field(default_factory=dict)
    tcp: dict[str, bytes] = field(default_factory=dict)                 # ECN, T2..T7
    probes: dict[str, tuple[int, int]] = field(default_factory=dict)    # name -> (seq, ack)
    u1: bytes | None = None
    u1_sent: bytes = b""
    ie: dict[int, bytes] = field(default_factory=dict)                  # 1, 2 -> reply
    open_port: int = 0
    closed_port: int = 0
    closed_udp: int = 0


def send_probes(target: str, open_port: int, closed_port: int, closed_udp: int,
                timeout: float = 0.3) -> Answers:
    src = net.source_for(target, socket.AF_INET)
    base = random.randint(40000, 59000)
    names = [f"SEQ{i}" for i in range(6)] + ["ECN", *T_PROBES]
    sport = {name: base + i for i, name in enumerate(names)}
    by_port = {p: n for n, p in sport.items()}
    ans = Answers(open_port=open_port, closed_port=closed_port, closed_udp=closed_udp)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    dst = net.ip4(target)
    net.attach_bpf(tcp, [(net.LD_W_ABS, 12), (net.JEQ, dst, 0, net.DROP), (net.LDX_MSH, 0),
                         (net.LD_H_IND, 2), (net.JGE, base, 0, net.DROP),
                         (net.JGE, base + len(names), net.DROP, net.ACCEPT)])
    net.attach_bpf(icmp, [(net.LD_W_ABS, 12), (net.JEQ, dst, net.ACCEPT, net.DROP)])
    for s in (tcp, icmp):
        s.setblocking(False)
    ident = random.randint(1, 0xFFFF)
    icmp_id = random.randint(1, 0xFFFF)

    def collect(until: float) -> None:
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return
            ready, _, _ = select.select([tcp, icmp], [], [], left)
            for s in ready:
                while True:
                    try:
                        pkt = s.recv(4096)
                    except BlockingIOError:
                        break
                    if s is tcp:
                        ihl = (pkt[0] & 15) * 4
                        name = by_port.get(struct.unpack("!H", pkt[ihl + 2:ihl + 4])[0])
                        if name and name.startswith("SEQ"):
                            ans.seq.setdefault(int(name[3:]), (time.monotonic(), pkt))
                        elif name:
                            ans.tcp.setdefault(name, pkt)
                    else:
                        _icmp_answer(pkt, ans, icmp_id, closed_udp)

    def send_tcp(name, dport, flags, window, opts, df, urgent=0, reserved=0):
        seq = random.getrandbits(32)
        ack = random.getrandbits(32) if flags & 0x10 else 0
        ans.probes[name] = (seq, ack)
        raw.sendto(tcp_packet(src, target, sport[name], dport, seq, ack, flags, window, opts,
                              df, (ident + len(ans.probes)) & 0xFFFF, urgent, reserved),
                   (target, 0))

    try:
        for i, (window, opts) in enumerate(SEQ_PROBES):
            ans.seq_sent[i] = time.monotonic()
            send_tcp(f"SEQ{i}", open_port, 0x02, window, opts, False)
            collect(time.monotonic() + 0.1)
        for attempt in range(2):
            if "ECN" not in ans.tcp:
                send_tcp("ECN", open_port, 0xC2, 3, ECN_OPTS, False, urgent=0xF7F5, reserved=8)
            for name, (flags, window, df, to_open, opts) in T_PROBES.items():
                if name not in ans.tcp:
                    send_tcp(name, open_port if to_open else closed_port, flags, window, opts,
                             df)
            if ans.u1 is None:
                udp = struct.pack("!HHHH", sport["SEQ0"], closed_udp, 8 + len(U1_DATA), 0)
                pseudo = (socket.inet_aton(src) + socket.inet_aton(target) +
                          struct.pack("!BBH", 0, 17, len(udp) + len(U1_DATA)))
                csum = net.checksum(pseudo + udp + U1_DATA) or 0xFFFF
                udp = udp[:6] + struct.pack("!H", csum) + U1_DATA
                ans.u1_sent = ip_header(src, target, 17, len(udp), U1_ID, False) + udp
                raw.sendto(ans.u1_sent, (target, 0))
            for n, (tos, code, size, df) in ((1, (0, 9, 120, True)), (2, (4, 0, 150, False))):
                if n not in ans.ie:
                    body = struct.pack("!BBHHH", 8, code, 0, icmp_id + n - 1, 295 + n - 1)
                    body += b"\0" * size
                    body = body[:2] + struct.pack("!H", net.checksum(body)) + body[4:]
                    raw.sendto(ip_header(src, target, 1, len(body), random.randint(1, 0xFFFF),
                                         df, tos=tos) + body, (target, 0))
            collect(time.monotonic() + timeout)
    finally:
        for s in (raw, tcp, icmp):
            s.close()
    return ans


def _icmp_answer(pkt: bytes, ans: Answers, icmp_id: int, closed_udp: int) -> None:
    ihl = (pkt[0] & 15) * 4
    if len(pkt) < ihl + 8:
        return
    kind, code = pkt[ihl], pkt[ihl + 1]
    if kind == 0:
        ident = struct.unpack("!H", pkt[ihl + 4:ihl + 6])[0]
        n = ident - icmp_id + 1
        if n in (1, 2):
            ans.ie.setdefault(n, pkt)
    elif kind == 3 and code == 3:
        inner = ihl + 8
        if len(pkt) >= inner + 28 and pkt[inner + 9] == 17:
            ihl2 = (pkt[inner] & 15) * 4
            dport = struct.unpack("!H", pkt[inner + ihl2 + 2:inner + ihl2 + 4])[0]
            if dport == closed_udp and ans.u1 is None:
                ans.u1 = pkt
