"""UDP scan (-sU), accurate against targets that rate-limit their ICMP.

Probes leave from one ordinary UDP socket (nmap's payloads for known ports,
else empty). Answers come back the ordinary way: a datagram means open; with
IP_RECVERR the kernel queues each ICMP error with the destination port of the
probe it quotes: port unreachable means closed, other unreachables filtered.

Linux answers at most ~1 ICMP error a second per destination (after a burst
of 6), so silence from a port is not proof of open|filtered. Phase 1 probes
every port once. Then every silent port is re-probed in rounds, each round
ending with a probe to a port already known closed (the canary). ICMP tokens
are spent in arrival order and the round is short, so when the canary is
answered, every silent port of the round was answered too if it could be: its
silence is real. When the canary is not answered the target is rate-limiting:
the next round waits for the next token (the estimated interval after the last
ICMP seen), and each such round still settles the first closed port in it. A
port is open|filtered after a round with an answered canary (two probes in
all, as nmap without drops); without any ICMP to use as canary, one plain
retransmission, as nmap.
"""

from __future__ import annotations

import errno
import random
import socket
import struct
import time

from .. import net
from ..timing import Timing
from . import payloads
from .engine import Engine

IP_RECVTTL = 12
IP_TTL = 2
IPV6_RECVHOPLIMIT = 51
IPV6_HOPLIMIT = 52
MSG_ERRQUEUE = 0x2000
ICMP4 = {0: "net-unreach", 1: "host-unreach", 2: "proto-unreach", 9: "net-prohibited",
         10: "host-prohibited", 13: "admin-prohibited"}
ICMP6 = {0: "net-unreach", 1: "admin-prohibited", 3: "host-unreach"}
INTERVAL = 1.0      # Linux's default icmp_ratelimit (ms -> s); doubled when proven wrong
MARGIN = 0.03


class UdpScan(Engine):
    what = "UDP Scan"
    no_response = ("open|filtered", "no-response", 0)

    def __init__(self, target: str, family: int, ports: list[int], timing: Timing,
                 progress: bool = True) -> None:
        super().__init__(ports, timing, progress)
        self.target, self.family = target, family
        v4 = family == socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind(("0.0.0.0" if v4 else "::", random.randint(40000, 59999)))
        if v4:
            self.sock.setsockopt(socket.IPPROTO_IP, net.IP_RECVERR, 1)
            self.sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        else:
            self.sock.setsockopt(socket.IPPROTO_IPV6, net.IPV6_RECVERR, 1)
            self.sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
        self.sock.setblocking(False)
        net.big_buffers(self.sock, 16 << 20, 4 << 20)
        self.payloads = payloads.load()
        self.wanted = set(self.ports)
        self.last_icmp = 0.0
        self.canary: int | None = None
        self.canary_at = 0.0
        self.rounds = 0

    def fds(self) -> list[int]:
        return [self.sock.fileno()]

    def close(self) -> None:
        self.sock.close()

    def allowed_tries(self) -> int:
        return 1        # phase 1: one probe each; verify() decides the silent ones

    # -- I/O -----------------------------------------------------------------------
    def send(self, batch) -> None:
        sendto, target, pl = self.sock.sendto, self.target, self.payloads
        v4 = self.family == socket.AF_INET
        for port, _ in batch:
            dest = (target, port) if v4 else (target, port, 0, 0)
            data = pl.get(port, b"")
            for _ in range(4):
                try:
                    sendto(data, dest)
                    break
                except (ConnectionRefusedError, ConnectionResetError):
                    continue        # a queued ICMP error surfaced here; send again
                except BlockingIOError:
                    self._poll.poll(10)
                except OSError as exc:
                    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EPERM,
                                     errno.EACCES):
                        continue
                    break

    def drain(self) -> list[tuple[int, int, tuple]]:
        out = []
        now = time.monotonic()
        recvmsg = self.sock.recvmsg
        while True:
            try:
                data, anc, flags, addr = recvmsg(2048, 256)
            except (ConnectionRefusedError, ConnectionResetError):
                continue        # a pending ICMP error reported once; the data is next
            except OSError:
                break
            if addr and addr[0] == self.target and addr[1] in self.wanted:
                out.append((addr[1], -1, ("open", "udp-response", _ttl(anc))))
        while True:
            try:
                data, anc, flags, addr = recvmsg(512, 512, MSG_ERRQUEUE)
            except BlockingIOError:
                break
            except OSError:
                break
            got = self._icmp(anc, addr)
            if got is None:
                continue
            port, result = got
            self.last_icmp = now
            if port == self.canary:
                self.canary_at = now
            out.append((port, -1, result))
        return out

    def _icmp(self, anc, addr):
        if not addr or addr[1] not in self.wanted:
            return None
        ttl = _ttl(anc)
        for level, kind, data in anc:
            if (level, kind) not in ((socket.IPPROTO_IP, net.IP_RECVERR),
                                     (socket.IPPROTO_IPV6, net.IPV6_RECVERR)) or len(data) < 16:
                continue
            _, origin, typ, code = struct.unpack_from("=IBBB", data)
            if origin == 2 and typ == 3:        # ICMP destination unreachable
                if code == 3:
                    return addr[1], ("closed", "port-unreach", ttl)
                if code in ICMP4:
                    return addr[1], ("filtered", ICMP4[code], ttl)
            elif origin == 3 and typ == 1:      # ICMPv6 destination unreachable
                if code == 4:
                    return addr[1], ("closed", "port-unreach", ttl)
                if code in ICMP6:
                    return addr[1], ("filtered", ICMP6[code], ttl)
        return None

    # -- phase 2 -----------------------------------------------------------------------
    def run(self) -> dict[int, tuple]:
        super().run()
        if self.timing.max_retries >= 1:
            self.verify()
        return self.results

    def _closed(self) -> list[int]:
        return [p for p, r in self.results.items() if r[1] == "port-unreach"]

    def _silent(self) -> list[int]:
        return [p for p in self.ports if self.results.get(p, self.no_response)[1] == "no-response"]

    def _round(self, ports: list[int], canary: int | None, wait: float) -> bool:
        """Probe ports (then the canary); True when the canary was answered."""
        start = time.monotonic()
        for i in range(0, len(ports), 256):
            self.send([(p, 1) for p in ports[i:i + 256]])
        self.packets_sent += len(ports)
        if canary is not None:
            self.send([(canary, 1)])
            self.packets_sent += 1
        end = start + wait
        grace = None
        while True:
            now = time.monotonic()
            if now >= end or (grace is not None and now >= grace):
                break
            if self._poll.poll(max(0.0, min(end, grace or end) - now) * 1000):
                self.apply(self.drain(), time.monotonic())
            if canary is not None and self.canary_at >= start and grace is None:
                # the answers to earlier probes arrive first; allow for reordering
                srtt = self.rtt.srtt or 0.001
                grace = time.monotonic() + min(max(2 * srtt, 0.005), 0.1)
        self.rounds += 1
        return canary is not None and self.canary_at >= start

    def verify(self) -> None:
        silent = self._silent()
        if not silent:
            return
        closed = self._closed()
        limited = False
        if not closed:
            # no ICMP to calibrate with: nmap's plain retransmission, and once more
            # after a rate-limit interval in case the target's ICMP tokens were spent
            self._round(silent, None, self.rtt.timeout)
            if self.last_icmp == 0.0 and self._silent():
                time.sleep(INTERVAL + MARGIN)
                self._round(self._silent(), None, self.rtt.timeout)
            closed = self._closed()
            if not closed or not self._silent():
                return
            limited = True          # that answer spent a token: go on with a canary
        self.canary = closed[len(closed) // 2]
        interval, idle = INTERVAL, 0
        started = time.monotonic()
        while True:
            todo = self._silent()
            if not todo:
                return
            if self.timing.host_timeout and time.monotonic() - started > self.timing.host_timeout:
                return
            if limited:
                ready = self.last_icmp + interval + MARGIN
                delay = ready - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            icmp_before = self.last_icmp
            if self._round(todo, self.canary, max(self.rtt.timeout, 0.05)):
                return          # the canary spoke after every silent port: they are silent
            limited = True
            if self.last_icmp == icmp_before:
                idle += 1       # nothing at all came back although a token was due
                if idle >= 2:
                    interval *= 2
                    idle = 0
                if interval > 8 * INTERVAL:
                    return      # the target went quiet; the rest stays open|filtered
            else:
                idle = 0
            if self.progress:
                self.progress.update(len(self.ports) - len(todo))


def _ttl(anc) -> int:
    for level, kind, data in anc:
        if (level, kind) in ((socket.IPPROTO_IP, IP_TTL), (socket.IPPROTO_IPV6, IPV6_HOPLIMIT)) \
                and len(data) >= 4:
            return struct.unpack("=i", data[:4])[0]
    return 0
