"""/proc/net tables of this network namespace, keyed by socket inode.

* inet(): the fallback when sock_diag is unavailable; same Sock tuples as sockdiag.
* unix(), raw(), packet(): what lsof shows for those sockets (lsof reads these files too).
Each parser takes the file's text so that it can be tested on canned input.
"""
from __future__ import annotations

import _socket as socket  # the C module: socket.py and its enums cost 2 ms to import

from .sockdiag import IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, TCP_OWNED_STATES

AF_INET, AF_INET6 = int(socket.AF_INET), int(socket.AF_INET6)
INET_FILES = (("tcp", AF_INET, IPPROTO_TCP), ("tcp6", AF_INET6, IPPROTO_TCP),
              ("udp", AF_INET, IPPROTO_UDP), ("udp6", AF_INET6, IPPROTO_UDP),
              ("udplite", AF_INET, IPPROTO_UDPLITE), ("udplite6", AF_INET6, IPPROTO_UDPLITE))

UNIX_TYPES = {1: "STREAM", 2: "DGRAM", 3: "RAW", 4: "RDM", 5: "SEQPACKET"}
UNIX_STATES = {0: "UNCONNECTED", 1: "UNCONNECTED", 2: "CONNECTING", 3: "CONNECTED",
               4: "DISCONNECTING"}
SO_ACCEPTCON = 0x10000
PACKET_TYPES = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 5: "SOCK_SEQPACKET",
                10: "SOCK_PACKET"}
PACKET_PROTOS = {0x0003: "ALL", 0x0800: "IP", 0x0806: "ARP", 0x86DD: "IPv6",
                 0x8035: "RARP", 0x0004: "802.2", 0x0001: "802.3"}


def read(name: str) -> str | None:
    try:
        with open("/proc/net/" + name, "rb") as f:
            return f.read().decode("utf-8", "surrogateescape")
    except OSError:
        return None


def _addr(hexaddr: str) -> bytes:
    """A /proc/net address (host-order 32-bit words in hex) as network-order bytes, 16 long."""
    raw = bytes.fromhex(hexaddr)
    out = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return out.ljust(16, b"\0")


def parse_inet(text: str, family: int, proto: int, table: dict) -> dict:
    """Lines of /proc/net/{tcp,udp,udplite}[6] into inode -> Sock."""
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 10:
            continue
        inode = int(f[9])
        state = int(f[3], 16)
        if not inode or (proto == IPPROTO_TCP and not TCP_OWNED_STATES & (1 << state)):
            continue
        laddr, lport = f[1].split(":")
        raddr, rport = f[2].split(":")
        wq, rq = f[4].split(":")
        table[inode] = (family, proto, state, _addr(laddr), int(lport, 16), _addr(raddr),
                        int(rport, 16), int(rq, 16), int(wq, 16))
    return table


def inet() -> dict:
    table: dict = {}
    for name, family, proto in INET_FILES:
        text = read(name)
        if text:
            parse_inet(text, family, proto, table)
    return table


def parse_unix(text: str) -> dict:
    """/proc/net/unix into inode -> (device, type number, name suffix parts).

    Value: (device "0x...", path or "", type name, state name)."""
    table = {}
    for line in text.splitlines()[1:]:
        f = line.split(None, 7)
        if len(f) < 7:
            continue
        try:
            inode = int(f[6])
            flags = int(f[3], 16)
            stype = int(f[4], 16)
            st = int(f[5], 16)
        except ValueError:
            continue
        path = f[7] if len(f) > 7 else ""
        state = "LISTEN" if flags & SO_ACCEPTCON else UNIX_STATES.get(st, "UNKNOWN")
        table[inode] = ("0x" + f[0].rstrip(":"), path, UNIX_TYPES.get(stype, str(stype)), state)
    return table


def unix() -> dict:
    text = read("unix")
    return parse_unix(text) if text else {}


def parse_raw(text: str, table: dict, kind: str) -> dict:
    """/proc/net/raw[6] into inode -> (kind, "local->remote st=XX")."""
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 10:
            continue
        try:
            inode = int(f[9])
        except ValueError:
            continue
        table[inode] = (kind, f"{f[1]}->{f[2]} st={f[3]}")
    return table


def raw() -> dict:
    table: dict = {}
    for name in ("raw", "raw6"):
        text = read(name)
        if text:
            parse_raw(text, table, name)
    return table


def parse_packet(text: str) -> dict:
    """/proc/net/packet into inode -> (protocol name, "type=SOCK_...")."""
    table = {}
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 9:
            continue
        try:
            stype = int(f[2])
            proto = int(f[3], 16)
            inode = int(f[8])
        except ValueError:
            continue
        pname = PACKET_PROTOS.get(proto, "%04x" % proto)
        table[inode] = (pname, "type=" + PACKET_TYPES.get(stype, str(stype)))
    return table


def packet() -> dict:
    text = read("packet")
    return parse_packet(text) if text else {}
