"""Raw-socket TCP scans: SYN (-sS), FIN (-sF), XMAS (-sX), NULL (-sN), ACK (-sA).

One raw IPPROTO_TCP socket sends the probes (the kernel adds the IP header) and
receives the answers through a classic BPF filter (from the target, to our
source port); a raw ICMP socket with its own filter gets the unreachables that
quote our probes. The try number of each probe is in its sequence number, so an
answer says which probe it answers. The kernel answers SYN/ACKs with RST, as it
does for nmap.

States as nmap: SYN: SYN/ACK open, RST closed, ICMP unreachable filtered,
nothing filtered. FIN/XMAS/NULL: RST closed, ICMP filtered, nothing
open|filtered. ACK: RST unfiltered, ICMP or nothing filtered.
"""

from __future__ import annotations

import random
import socket
import struct

from .. import net
from ..timing import Timing
from .engine import Engine

FLAGS = {"syn": 0x02, "fin": 0x01, "xmas": 0x29, "null": 0x00, "ack": 0x10}
NAMES = {"syn": "SYN Stealth Scan", "fin": "FIN Scan", "xmas": "XMAS Scan",
         "null": "NULL Scan", "ack": "ACK Scan"}
SILENT = {"syn": ("filtered", "no-response", 0), "ack": ("filtered", "no-response", 0),
          "fin": ("open|filtered", "no-response", 0), "xmas": ("open|filtered", "no-response", 0),
          "null": ("open|filtered", "no-response", 0)}
ICMP4_REASON = {0: "net-unreach", 1: "host-unreach", 2: "proto-unreach", 3: "port-unreach",
                9: "net-prohibited", 10: "host-prohibited", 13: "admin-prohibited"}
ICMP6_REASON = {0: "net-unreach", 1: "admin-prohibited", 3: "host-unreach",
                4: "port-unreach"}
TRY_STRIDE = 0x01000000


def icmp4_filter(target: str, proto: int, sport: int) -> list[tuple]:
    """Destination unreachables quoting one of our probes (inner IHL 5)."""
    return [(net.LDX_MSH, 0), (net.LD_B_IND, 0), (net.JEQ, 3, 0, net.DROP),
            (net.LD_W_IND, 24), (net.JEQ, net.ip4(target), 0, net.DROP),
            (net.LD_B_IND, 17), (net.JEQ, proto, 0, net.DROP),
            (net.LD_H_IND, 28), (net.JEQ, sport, net.ACCEPT, net.DROP)]


def icmp6_filter(proto: int, sport: int) -> list[tuple]:
    return [(net.LD_B_ABS, 0), (net.JEQ, 1, 0, net.DROP),
            (net.LD_B_ABS, 14), (net.JEQ, proto, 0, net.DROP),
            (net.LD_H_ABS, 48), (net.JEQ, sport, net.ACCEPT, net.DROP)]


def open_icmp(family: int, target: str, proto: int, sport: int) -> socket.socket:
    if family == socket.AF_INET:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        net.attach_bpf(s, icmp4_filter(target, proto, sport))
    else:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        net.attach_bpf(s, icmp6_filter(proto, sport))
    s.setblocking(False)
    net.big_buffers(s, 4 << 20)
    return s


def parse_icmp(data: bytes, n: int, family: int) -> tuple[int, int, int, int] | None:
    """(code, quoted source... dest port, quoted seq/4 bytes, ttl) of an unreachable."""
    if family == socket.AF_INET:
        ihl = (data[0] & 15) * 4
        inner = ihl + 8
        ihl2 = (data[inner] & 15) * 4
        l4 = inner + ihl2
        if n < l4 + 8:
            return None
        code = data[ihl + 1]
        dport = (data[l4 + 2] << 8) | data[l4 + 3]
        word = int.from_bytes(data[l4 + 4:l4 + 8], "big")
        return code, dport, word, data[8]
    if n < 56:
        return None
    return data[1], (data[50] << 8) | data[51], int.from_bytes(data[52:56], "big"), 0


class TcpRawScan(Engine):
    def __init__(self, target: str, family: int, ports: list[int], kind: str, timing: Timing,
                 progress: bool = True) -> None:
        self.what = NAMES[kind]
        super().__init__(ports, timing, progress)
        self.kind, self.family, self.target = kind, family, target
        self.no_response = SILENT[kind]
        self.sport = random.randint(40000, 59999)
        self.base = random.getrandbits(32)
        max_tries = timing.max_retries + 1
        self.seqs = [(self.base + t * TRY_STRIDE) & 0xFFFFFFFF for t in range(max_tries)]
        flags = FLAGS[kind]
        # the answer's ack (or for ACK probes: its seq) names the try
        adj = 1 if flags & 0x03 else 0
        if kind == "ack":
            self.acks = [(s + 1) & 0xFFFFFFFF for s in self.seqs]  # we send ack = seq+1
            self.answer_try = {a: t for t, a in enumerate(self.acks)}
        else:
            self.answer_try = {(s + adj) & 0xFFFFFFFF: t for t, s in enumerate(self.seqs)}
        self.quote_try = {s: t for t, s in enumerate(self.seqs)}
        self.wanted = bytearray(65536)
        for p in self.ports:
            self.wanted[p] = 1
        proto = socket.IPPROTO_TCP
        self.sock = socket.socket(family, socket.SOCK_RAW, proto)
        self.sock.setblocking(False)
        net.big_buffers(self.sock, 64 << 20, 4 << 20)
        if family == socket.AF_INET:
            net.attach_bpf(self.sock, [
                (net.LD_W_ABS, 12), (net.JEQ, net.ip4(target), 0, net.DROP),
                (net.LD_H_ABS, 6), (net.JSET, 0x1FFF, net.DROP, 0),
                (net.LDX_MSH, 0), (net.LD_H_IND, 2), (net.JEQ, self.sport, net.ACCEPT, net.DROP)])
            src = net.source_for(target, family)
            pseudo = socket.inet_aton(src) + socket.inet_aton(target) + struct.pack("!BBH", 0, 6, 20)
        else:
            self.sock.setsockopt(socket.IPPROTO_IPV6, net.IPV6_CHECKSUM, 16)
            net.attach_bpf(self.sock, [(net.LD_H_ABS, 2),
                                       (net.JEQ, self.sport, net.ACCEPT, net.DROP)])
            pseudo = None
        self.icmp = open_icmp(family, target, proto, self.sport)
        self.templates = []
        for t, seq in enumerate(self.seqs):
            ack = self.acks[t] if kind == "ack" else 0
            hdr = struct.pack("!HHIIBBHHH", self.sport, 0, seq, ack, 0x50, flags, 1024, 0, 0)
            base_sum = net.sum16(pseudo + hdr) if pseudo is not None else None
            self.templates.append((bytearray(hdr), base_sum))
        self.buf = bytearray(2048)
        self.dest = (target, 0) if family == socket.AF_INET else (target, 0, 0, 0)

    def fds(self) -> list[int]:
        return [self.sock.fileno(), self.icmp.fileno()]

    def close(self) -> None:
        self.sock.close()
        self.icmp.close()

    def send(self, batch: list[tuple[int, int]]) -> None:
        sendto, dest, templates = self.sock.sendto, self.dest, self.templates
        for port, tryno in batch:
            pkt, base_sum = templates[tryno]
            pkt[2] = port >> 8
            pkt[3] = port & 0xFF
            if base_sum is not None:
                c = base_sum + port
                c = (c & 0xFFFF) + (c >> 16)
                c = ~((c & 0xFFFF) + (c >> 16)) & 0xFFFF
                pkt[16] = c >> 8
                pkt[17] = c & 0xFF
            while True:
                try:
                    sendto(pkt, dest)
                    break
                except BlockingIOError:
                    self._wait_writable()
                except OSError:
                    break

    def _wait_writable(self) -> None:
        import select
        select.select([], [self.sock], [], 0.05)

    def drain(self) -> list[tuple[int, int, tuple]]:
        out = []
        buf, wanted = self.buf, self.wanted
        recv = self.sock.recvfrom_into
        v4 = self.family == socket.AF_INET
        kind = self.kind
        answer_try = self.answer_try
        while True:
            try:
                n, addr = recv(buf)
            except BlockingIOError:
                break
            except OSError:
                break
            if v4:
                off = (buf[0] & 15) * 4
                ttl = buf[8]
            else:
                if addr[0] != self.target:
                    continue
                off, ttl = 0, 0
            if n < off + 14:
                continue
            port = (buf[off] << 8) | buf[off + 1]
            if not wanted[port]:
                continue
            flags = buf[off + 13]
            if kind == "ack":
                word = int.from_bytes(buf[off + 4:off + 8], "big")
            else:
                word = int.from_bytes(buf[off + 8:off + 12], "big")
            tryno = answer_try.get(word, -1)
            if kind == "syn":
                if flags & 0x12 == 0x12:
                    out.append((port, tryno, ("open", "syn-ack", ttl)))
                elif flags & 0x04:
                    out.append((port, tryno, ("closed", "reset", ttl)))
                elif flags & 0x02:
                    out.append((port, tryno, ("open", "split-handshake-syn", ttl)))
            elif flags & 0x04:
                state = "unfiltered" if kind == "ack" else "closed"
                out.append((port, tryno, (state, "reset", ttl)))
        self._drain_icmp(out)
        return out

    def _drain_icmp(self, out: list) -> None:
        reasons = ICMP4_REASON if self.family == socket.AF_INET else ICMP6_REASON
        while True:
            try:
                n, addr = self.icmp.recvfrom_into(self.buf)
            except (BlockingIOError, OSError):
                return
            parsed = parse_icmp(self.buf, n, self.family)
            if parsed is None:
                continue
            code, port, seq, ttl = parsed
            if code in reasons and self.wanted[port]:
                out.append((port, self.quote_try.get(seq, -1), ("filtered", reasons[code], ttl)))
