"""Host discovery (the ping phase, and -sn), as nmap does it.

As root: targets on a directly connected Ethernet subnet get an ARP request
(nmap's ARP ping); others get ICMP echo, TCP SYN to 443, TCP ACK to 80 and an
ICMP timestamp request, or only the -P types asked for. Any answer from the
target (echo/timestamp reply, SYN/ACK, RST, an unreachable it sends itself)
means up. Without root: TCP connect() to 80 and 443, where "refused" is an
answer too. Our own addresses are up without probes. Each silent target is
probed twice before it is called down.
"""

from __future__ import annotations

import errno
import random
import select
import socket
import struct
import time
from dataclasses import dataclass

from . import net
from .probes.payloads import port_list

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800


@dataclass
class Found:
    up: bool = False
    reason: str = "no-response"
    ttl: int = 0
    rtt: float | None = None
    mac: str | None = None


def _icmp(kind: int, ident: int, seq: int, payload: bytes) -> bytes:
    hdr = struct.pack("!BBHHH", kind, 0, 0, ident, seq) + payload
    return hdr[:2] + struct.pack("!H", net.checksum(hdr)) + hdr[4:]


class Discovery:
    def __init__(self, targets: list, opts, timing, privileged: bool) -> None:
        self.targets = targets
        self.opts, self.timing, self.privileged = opts, timing, privileged
        self.found: dict[str, Found] = {t.addr: Found() for t in targets}
        self.sent_at: dict[str, float] = {}
        self.ident = random.randint(1, 0xFFFE)
        self.sport = random.randint(40000, 59999)
        self.routes: dict[str, net.Route] = {}

    # -- driver ----------------------------------------------------------------
    def run(self) -> dict[str, Found]:
        pending = []
        for t in self.targets:
            try:
                route = net.route_to(t.addr, t.family)
            except OSError:
                continue        # no route: down
            self.routes[t.addr] = route
            if route.local:
                self.found[t.addr] = Found(True, "localhost-response", 0, None)
            else:
                pending.append(t)
        if not pending:
            return self.found
        if not self.privileged:
            self._connect_ping(pending)
            return self.found
        arp = [t for t in pending if t.family == socket.AF_INET and self.opts.arp_ping
               and self.routes[t.addr].onlink and self.routes[t.addr].mac]
        rest = [t for t in pending if t not in arp]
        if arp:
            self._arp_ping(arp)
        if rest:
            self._ip_ping(rest)
        return self.found

    def _rounds(self, targets, send, drain, socks, tries: int = 2) -> None:
        """Send to every silent target, collect answers; twice (nmap's retry)."""
        first = self.timing.initial_rtt
        poll = select.poll()
        for s in socks:
            poll.register(s.fileno(), select.POLLIN)
        for attempt in range(tries):
            todo = [t for t in targets if not self.found[t.addr].up]
            if not todo:
                return
            for t in todo:
                self.sent_at.setdefault(t.addr, time.monotonic())
                send(t)
            rtts = [f.rtt for f in self.found.values() if f.up and f.rtt]
            wait = (min(max(4 * max(rtts), self.timing.min_rtt), first) if rtts
                    else max(first / 2, self.timing.min_rtt))
            end = time.monotonic() + wait
            while time.monotonic() < end:
                if all(self.found[t.addr].up for t in todo):
                    break
                if poll.poll(max(0.0, end - time.monotonic()) * 1000):
                    drain()

    def _mark(self, addr: str, reason: str, ttl: int = 0, mac: str | None = None) -> None:
        f = self.found.get(addr)
        if f is None or f.up:
            return
        sent = self.sent_at.get(addr)
        self.found[addr] = Found(True, reason, ttl,
                                 time.monotonic() - sent if sent else None, mac)

    # -- ARP ---------------------------------------------------------------------
    def _arp_ping(self, targets) -> None:
        by_if: dict[str, list] = {}
        for t in targets:
            by_if.setdefault(self.routes[t.addr].ifname, []).append(t)
        for ifname, group in by_if.items():
            route = self.routes[group[0].addr]
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
            try:
                s.bind((ifname, ETH_P_ARP))
                s.setblocking(False)
                mymac = bytes.fromhex(route.mac.replace(":", ""))
                src = socket.inet_aton(route.src)

                def send(t, s=s, mymac=mymac, src=src, ifname=ifname):
                    frame = (b"\xff" * 6 + mymac + struct.pack("!H", ETH_P_ARP) +
                             struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, 1) + mymac + src +
                             b"\0" * 6 + socket.inet_aton(t.addr))
                    try:
                        s.send(frame.ljust(60, b"\0"))
                    except OSError:
                        pass

                def drain(s=s):
                    while True:
                        try:
                            data = s.recv(128)
                        except (BlockingIOError, OSError):
                            return
                        if len(data) >= 42 and data[12:14] == b"\x08\x06" and \
                                data[20:22] == b"\x00\x02":
                            mac = ":".join(f"{b:02X}" for b in data[22:28])
                            self._mark(socket.inet_ntoa(data[28:32]), "arp-response", 0, mac)

                self._rounds(group, send, drain, [s], tries=3)
            finally:
                s.close()

    # -- ICMP and TCP over IP ----------------------------------------------------------
    def _ip_ping(self, targets) -> None:
        types = self.opts.ping_types or {"E", "S", "A", "P"}
        socks = []
        fam_targets = {}
        for t in targets:
            fam_targets.setdefault(t.family, []).append(t)
        for family, group in fam_targets.items():
            v4 = family == socket.AF_INET
            icmp = socket.socket(family, socket.SOCK_RAW,
                                 socket.IPPROTO_ICMP if v4 else socket.IPPROTO_ICMPV6)
            tcp = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_TCP)
            for s in (icmp, tcp):
                s.setblocking(False)
            if v4:
                net.attach_bpf(tcp, [(net.LDX_MSH, 0), (net.LD_H_IND, 2),
                                     (net.JEQ, self.sport, net.ACCEPT, net.DROP)])
            else:
                tcp.setsockopt(socket.IPPROTO_IPV6, net.IPV6_CHECKSUM, 16)
                net.attach_bpf(tcp, [(net.LD_H_ABS, 2),
                                     (net.JEQ, self.sport, net.ACCEPT, net.DROP)])
            socks += [icmp, tcp]
            syn_ports = _ports(self.opts.ping_ports.get("S"), [443])
            ack_ports = _ports(self.opts.ping_ports.get("A"), [80])

            def send(t, icmp=icmp, tcp=tcp, v4=v4):
                dest = (t.addr, 0) if v4 else (t.addr, 0, 0, 0)
                try:
                    if "E" in types:
                        icmp.sendto(_icmp(8 if v4 else 128, self.ident, 1, b"\0" * 8), dest)
                    if "P" in types and v4:
                        icmp.sendto(_icmp(13, self.ident, 2, b"\0" * 12), dest)
                    src = self.routes[t.addr].src
                    for flags, plist in ((0x02, syn_ports if "S" in types else []),
                                         (0x10, ack_ports if "A" in types else [])):
                        for port in plist:
                            tcp.sendto(_tcp(src, t.addr, self.sport, port, flags, v4), dest)
                except OSError:
                    pass

            def drain(icmp=icmp, tcp=tcp, v4=v4):
                for s in (icmp, tcp):
                    while True:
                        try:
                            data, addr = s.recvfrom(2048)
                        except (BlockingIOError, OSError):
                            break
                        self._answer(s is icmp, data, addr[0], v4)

            self._rounds(group, send, drain, [icmp, tcp])
        for s in socks:
            s.close()

    def _answer(self, is_icmp: bool, data: bytes, src: str, v4: bool) -> None:
        ttl = data[8] if v4 and len(data) > 8 else 0
        off = (data[0] & 15) * 4 if v4 else 0
        if not is_icmp:
            if len(data) >= off + 14:
                flags = data[off + 13]
                self._mark(src, "syn-ack" if flags & 0x12 == 0x12 else "reset", ttl)
            return
        if len(data) < off + 8:
            return
        kind = data[off]
        ident = struct.unpack("!H", data[off + 4:off + 6])[0]
        if kind in ((0, 14) if v4 else (129,)) and ident == self.ident:
            self._mark(src, {0: "echo-reply", 14: "timestamp-reply", 129: "echo-reply"}[kind],
                       ttl)
        elif kind == (3 if v4 else 1):
            # an unreachable from the target itself about one of our probes: it is up
            reason = {3: "port-unreach"}.get(data[off + 1], "host-unreach") if v4 else \
                {4: "port-unreach"}.get(data[off + 1], "host-unreach")
            if src in self.found:
                self._mark(src, reason, ttl)

    # -- unprivileged -----------------------------------------------------------------
    def _connect_ping(self, targets) -> None:
        for attempt in range(2):
            todo = [t for t in targets if not self.found[t.addr].up]
            if not todo:
                return
            socks = {}
            ep = select.epoll()
            for t in todo:
                for port in (80, 443):
                    s = socket.socket(t.family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
                    start = time.monotonic()
                    err = s.connect_ex((t.addr, port))
                    if err in (0, errno.ECONNREFUSED):
                        self.sent_at[t.addr] = start
                        self._mark(t.addr, "syn-ack" if err == 0 else "conn-refused")
                        s.close()
                        continue
                    if err != errno.EINPROGRESS:
                        s.close()
                        continue
                    self.sent_at.setdefault(t.addr, start)
                    socks[s.fileno()] = (s, t.addr)
                    ep.register(s.fileno(), select.EPOLLOUT)
            end = time.monotonic() + max(self.timing.initial_rtt / 2, self.timing.min_rtt)
            while socks and time.monotonic() < end:
                for fd, _ in ep.poll(max(0.0, end - time.monotonic())):
                    s, addr = socks.pop(fd)
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err in (0, errno.ECONNREFUSED):
                        self._mark(addr, "syn-ack" if err == 0 else "conn-refused")
                    ep.unregister(fd)
                    s.close()
            for s, _ in socks.values():
                s.close()
            ep.close()


def _ports(spec: str | None, default: list[int]) -> list[int]:
    return (port_list(spec) if spec else []) or default


def _tcp(src: str, dst: str, sport: int, dport: int, flags: int, v4: bool) -> bytes:
    seq = random.getrandbits(32)
    ack = random.getrandbits(32) if flags & 0x10 else 0
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 1024, 0, 0)
    if not v4:
        return hdr     # the kernel fills the checksum (IPV6_CHECKSUM)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, 20)
    csum = net.checksum(pseudo + hdr)
    return hdr[:16] + struct.pack("!H", csum) + hdr[18:]


def arp_cache_mac(addr: str) -> str | None:
    """The target's MAC from the kernel's neighbour table (after any traffic)."""
    try:
        with open("/proc/net/arp") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields and fields[0] == addr and fields[3] != "00:00:00:00:00:00":
                    return fields[3].upper()
    except (OSError, StopIteration, IndexError):
        pass
    return None


def mac_vendor(mac: str, path: str = "/usr/share/nmap/nmap-mac-prefixes") -> str | None:
    prefix = mac.replace(":", "").upper()[:6]
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(prefix):
                    return line[6:].strip() or None
    except OSError:
        pass
    return None
