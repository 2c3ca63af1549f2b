"""Return-routability challenge (issue 13): one TCP SYN-ACK to a source that triggered.

Its ack number is a keyed cookie. A live host's stack answers a SYN-ACK that belongs to
no connection with a RST whose seq is that ack (RFC 9293, 3.10.7.1/3.10.7.2); the XDP
program checks incoming RSTs against the `cookies` map and reports a match on `answers`.
An address that was forged, with nothing behind it, never answers. The packet comes from
a port of our choice, so a scanner's view of the scanned ports is unchanged.

Raw sockets need CAP_NET_RAW. The packet goes only to the address that triggered.
"""
import hashlib
import ipaddress
import os
import socket
import struct
import time

SYN_ACK = 0x12
WINDOW = 1024


def cookie(secret, src, dst, sport, dport):
    """32-bit keyed hash of the 4-tuple: unguessable without the secret made at start."""
    h = hashlib.blake2b(digest_size=4, key=secret)
    h.update(ipaddress.ip_address(src).packed)
    h.update(ipaddress.ip_address(dst).packed)
    h.update(struct.pack("!HH", sport, dport))
    return int.from_bytes(h.digest(), "big")


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def syn_ack(local, remote, sport, dport, seq, ack):
    """A 20-byte TCP SYN-ACK from local:sport to remote:dport with its checksum."""
    local, remote = ipaddress.ip_address(local), ipaddress.ip_address(remote)
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, SYN_ACK, WINDOW, 0, 0)
    if local.version == 4:
        pseudo = local.packed + remote.packed + struct.pack("!BBH", 0, socket.IPPROTO_TCP,
                                                            len(hdr))
    else:
        pseudo = local.packed + remote.packed + struct.pack("!IxxxB", len(hdr),
                                                            socket.IPPROTO_TCP)
    csum = checksum(pseudo + hdr)
    return hdr[:16] + struct.pack("!H", csum) + hdr[18:]


class RateLimit:
    """A token bucket: `rate` challenges a second, bursts of up to `rate`."""

    def __init__(self, rate, clock=time.monotonic):
        self.rate, self.clock = rate, clock
        self.tokens, self.at = float(rate), clock()

    def take(self):
        now = self.clock()
        self.tokens = min(float(self.rate), self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.rate > 0 and self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Challenger:
    """Sends challenges and remembers nothing but its secret: the kernel holds the
    expected cookie per source (written through `expect(addr, cookie)`)."""

    def __init__(self, rate, expect, clock=time.monotonic, secret=None):
        self.secret = secret or os.urandom(16)
        self.limit = RateLimit(rate, clock)
        # A second bucket for sources that kept probing after their block: a spoofed flood
        # spends the first, and a real scanner inside it must still be asked.
        self.priority = RateLimit(rate, clock)
        self.expect = expect
        # Our port: fixed for this run, drawn from the secret, above the usual services.
        self.sport = 40000 + int.from_bytes(self.secret[:2], "big") % 20000
        self.socks = {}
        self.sent = self.limited = self.failed = 0

    def _sock(self, family):
        s = self.socks.get(family)
        if s is None:
            s = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_TCP)
            self.socks[family] = s
        return s

    @staticmethod
    def local_address(remote):
        """The address this host would send from (a connected UDP socket sends nothing)."""
        remote = ipaddress.ip_address(remote)
        fam = socket.AF_INET if remote.version == 4 else socket.AF_INET6
        with socket.socket(fam, socket.SOCK_DGRAM) as s:
            s.connect((str(remote), 9))
            return s.getsockname()[0]

    def set_rate(self, rate):
        self.limit.rate = self.priority.rate = rate

    def challenge(self, addr, priority=False):
        """Send one SYN-ACK to addr; the cookie, or None (rate limit, no route)."""
        if not self.limit.take() and not (priority and self.priority.take()):
            self.limited += 1
            return None
        remote = ipaddress.ip_address(addr)
        if getattr(remote, "ipv4_mapped", None):
            remote = remote.ipv4_mapped
        try:
            local = self.local_address(remote)
            dport = 1024 + cookie(self.secret, local, remote, 0, 0) % 64000
            ack = cookie(self.secret, remote, local, dport, self.sport)
            seq = int.from_bytes(os.urandom(4), "big")
            pkt = syn_ack(local, remote, self.sport, dport, seq, ack)
            self.expect(str(remote), ack)
            fam = socket.AF_INET if remote.version == 4 else socket.AF_INET6
            self._sock(fam).sendto(pkt, (str(remote), 0))
        except OSError:
            self.failed += 1
            return None
        self.sent += 1
        return ack

    def close(self):
        for s in self.socks.values():
            s.close()
        self.socks = {}
