"""TCP connect scan (-sT): non-blocking connect() and one epoll loop.

No privileges needed. Each probe is a non-blocking socket; the kernel's answer
usually arrives while connect() runs (the loopback/veth path is synchronous),
so SO_ERROR is read at once and only the still-pending sockets go to epoll.
Sockets that get no answer within the RTT-based timeout are closed and
retried (nmap's allowance: two tries unless retries show drops). Open ports
are closed with RST (SO_LINGER 0), as nmap does, leaving no TIME_WAIT behind.

A connect that lands on itself (loopback, source port == destination port, the
TCP simultaneous open) is not an open port: it is reported closed.
"""

from __future__ import annotations

import _socket
import errno
import select
import socket
import struct
import time
from collections import deque

from .net import raise_nofile
from .timing import Progress, Rtt, Timing

LINGER0 = struct.pack("ii", 1, 0)
FILTERED = {errno.EHOSTUNREACH: "host-unreach", errno.ENETUNREACH: "net-unreach",
            errno.EACCES: "admin-prohibited", errno.EPERM: "admin-prohibited",
            errno.ENETDOWN: "net-unreach", errno.EHOSTDOWN: "host-unreach",
            errno.ETIMEDOUT: "no-response"}
NO_RESPONSE = ("filtered", "no-response", 0)
CLOSED = ("closed", "conn-refused", 0)
new_socket = _socket.socket   # the C type: no Python-level __init__ per probe


class ConnectScan:
    what = "Connect Scan"

    def __init__(self, target: str, family: int, ports: list[int], timing: Timing,
                 progress: bool = True) -> None:
        self.target, self.family, self.ports, self.timing = target, family, list(ports), timing
        self.rtt = Rtt(timing)
        self.results: dict[int, tuple] = {}
        self.packets_sent = 0
        self.drops = 0
        self.progress = Progress(self.what, len(self.ports)) if progress else None
        limit = raise_nofile(1 << 16)
        self.max_open = max(16, min(limit - 64, 8192 if timing.level >= 3 else 256))
        if timing.scan_delay or timing.cwnd_max == 1:
            self.max_open = 1

    def _verdict(self, sock, port: int, err: int) -> tuple | None:
        """The result of a finished connect, None while it is still pending."""
        if err == 0:
            try:
                local = sock.getsockname()
                peer = sock.getpeername()
            except OSError:
                return CLOSED
            if local[0] == peer[0] and local[1] == peer[1]:
                return CLOSED   # connected to itself
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
            except OSError:
                pass
            return ("open", "syn-ack", 0)
        if err == errno.ECONNREFUSED:
            return CLOSED
        if err in FILTERED:
            return ("filtered", FILTERED[err], 0)
        if err in (errno.EINPROGRESS, errno.EALREADY):
            return None
        return ("filtered", "no-response", 0)

    def run(self) -> dict[int, tuple]:
        t = self.timing
        results = self.results
        todo = deque(self.ports)
        resend: deque[int] = deque()
        tries: dict[int, int] = {}
        pending: dict[int, tuple] = {}          # fd -> (sock, port, sent_at)
        order: deque[tuple[float, int, int]] = deque()   # (sent_at, fd, port)
        ep = select.epoll()
        family, target = self.family, self.target
        total = len(set(self.ports))
        gap = max(t.scan_delay, 1.0 / t.max_rate if t.max_rate else 0.0)
        next_send = 0.0
        max_ok_try = 0
        started = time.monotonic()
        EPOLLOUT, EPOLL_ERR = select.EPOLLOUT, select.EPOLLERR | select.EPOLLHUP
        STREAM = socket.SOCK_STREAM | socket.SOCK_NONBLOCK
        v4 = family == socket.AF_INET
        sock = None
        try:
            while len(results) < total:
                now = time.monotonic()
                if t.host_timeout and now - started > t.host_timeout:
                    break
                allowed = 1 + min(t.max_retries, max(1, max_ok_try + 1))
                expire = now - self.rtt.timeout
                while order and order[0][0] <= expire:
                    _, fd, port = order.popleft()
                    entry = pending.get(fd)
                    if entry is None or entry[1] != port:
                        continue
                    del pending[fd]
                    ep.unregister(fd)
                    soft = entry[0].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    entry[0].close()
                    if port in results:
                        continue
                    if soft in FILTERED or soft == errno.ECONNREFUSED:
                        results[port] = self._verdict(None, port, soft)
                        continue
                    if tries[port] < allowed:
                        resend.append(port)
                    else:
                        results[port] = NO_RESPONSE
                sent = 0
                if (todo or resend) and now >= next_send:
                    room = self.max_open - len(pending)
                    limit = min(room, 1 if gap else 512)
                    while sent < limit and (resend or todo):
                        port = resend.popleft() if resend else todo.popleft()
                        if port in results:
                            continue
                        tryno = tries.get(port, 0)
                        tries[port] = tryno + 1
                        if sock is None:
                            sock = new_socket(family, STREAM)
                        dest = (target, port) if v4 else (target, port, 0, 0)
                        err = sock.connect_ex(dest)
                        if err == errno.EINPROGRESS:
                            # a second connect() reports what already happened (refused,
                            # connected) and makes a refused socket reusable
                            err = sock.connect_ex(dest)
                        sent += 1
                        if err == errno.ECONNREFUSED:
                            results[port] = CLOSED
                            if sent == 1:   # answered within connect(): one RTT sample
                                self.rtt.sample(time.monotonic() - now)
                            continue
                        if err in (errno.EAGAIN, errno.EADDRNOTAVAIL, errno.EMFILE,
                                   errno.ENFILE):
                            tries[port] = tryno
                            resend.appendleft(port)
                            sock.close()
                            sock = None
                            break
                        if err in (errno.EALREADY, errno.EINPROGRESS):
                            # an ICMP error that came while connect() held the socket is
                            # only a "soft" error: SO_ERROR reports it, epoll does not
                            soft = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                            if soft in FILTERED or soft == errno.ECONNREFUSED:
                                results[port] = self._verdict(sock, port, soft)
                                sock.close()
                                sock = None
                                continue
                            fd = sock.fileno()
                            pending[fd] = (sock, port, now)
                            order.append((now, fd, port))
                            ep.register(fd, EPOLLOUT)
                        else:
                            results[port] = self._verdict(sock, port, err) or NO_RESPONSE
                            sock.close()
                        sock = None
                    self.packets_sent += sent
                    if gap:
                        next_send = now + gap
                if pending:
                    if sent and (todo or resend) and len(pending) < self.max_open:
                        wait = 0
                    else:
                        wake = order[0][0] + self.rtt.timeout if order else now + 0.05
                        if gap and (todo or resend):
                            wake = min(wake, next_send)
                        wait = max(0.0, min(wake - time.monotonic(), 0.5))
                    events = ep.poll(wait)
                    now = time.monotonic()
                    for fd, ev in events:
                        entry = pending.pop(fd, None)
                        if entry is None:
                            continue
                        psock, port, sent_at = entry
                        err = psock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        verdict = self._verdict(psock, port, err)
                        if verdict is None and not ev & EPOLL_ERR:
                            pending[fd] = entry
                            continue
                        ep.unregister(fd)
                        psock.close()
                        self.rtt.sample(now - sent_at)
                        if tries[port] > 1:
                            max_ok_try = max(max_ok_try, tries[port] - 1)
                            self.drops += 1
                        if port not in results:
                            results[port] = verdict or NO_RESPONSE
                elif not sent and gap:
                    time.sleep(max(0.0, next_send - time.monotonic()))
                if self.progress:
                    self.progress.update(len(results))
        finally:
            if sock is not None:
                sock.close()
            for entry in pending.values():
                entry[0].close()
            ep.close()
        for port in self.ports:
            results.setdefault(port, NO_RESPONSE)
        return results
