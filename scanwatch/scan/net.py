"""Low-level helpers: checksums, classic BPF, routes and interfaces, limits."""

from __future__ import annotations

import ctypes
import ipaddress
import resource
import socket
import struct
from dataclasses import dataclass

SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
IPV6_CHECKSUM = 7
IP_RECVERR = 11
IPV6_RECVERR = 25

# classic BPF opcodes
LD_W_ABS, LD_H_ABS, LD_B_ABS = 0x20, 0x28, 0x30
LD_W_IND, LD_H_IND, LD_B_IND = 0x40, 0x48, 0x50
LDX_MSH = 0xB1
JEQ, JSET, JGE = 0x15, 0x45, 0x35
RET = 0x06
ACCEPT, DROP = "accept", "drop"


def checksum(data: bytes) -> int:
    """The Internet checksum of data."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def sum16(data: bytes) -> int:
    """Unfolded one's-complement sum of 16-bit words (for incremental checksums)."""
    if len(data) % 2:
        data += b"\0"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def attach_bpf(sock: socket.socket, program: list[tuple]) -> None:
    """Attach a classic BPF program. Instructions are (code, k) or (code, k, jt, jf)
    where jt/jf may be ACCEPT/DROP labels or relative offsets; the program gets a
    final `ret #0x40000` (accept) and `ret #0` (drop) appended."""
    n = len(program)
    accept_at, drop_at = n, n + 1
    raw = b""
    for i, ins in enumerate(program):
        code, k = ins[0], ins[1]
        jt = jf = 0
        if len(ins) == 4:
            jt, jf = (accept_at - i - 1 if v == ACCEPT else drop_at - i - 1 if v == DROP else v
                      for v in ins[2:])
        raw += struct.pack("HBBI", code, jt, jf, k & 0xFFFFFFFF)
    raw += struct.pack("HBBI", RET, 0, 0, 0x40000) + struct.pack("HBBI", RET, 0, 0, 0)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("HL", n + 2, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def ip4(addr: str) -> int:
    return int.from_bytes(socket.inet_aton(addr), "big")


def big_buffers(sock: socket.socket, rcv: int = 32 << 20, snd: int | None = None) -> None:
    for opt, fallback, size in ((SO_RCVBUFFORCE, socket.SO_RCVBUF, rcv),
                                (SO_SNDBUFFORCE, socket.SO_SNDBUF, snd)):
        if size is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, fallback, size)


def source_for(dst: str, family: int) -> str:
    """The local address the kernel would use toward dst (no packet is sent)."""
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((dst, 9))
        return s.getsockname()[0]


@dataclass
class Route:
    src: str
    ifname: str | None
    mac: str | None        # our MAC on that interface (None: not Ethernet)
    onlink: bool           # target in a directly connected subnet of ifname
    loopback: bool
    local: bool            # the target is one of our own addresses


def route_to(dst: str, family: int) -> Route:
    import psutil  # lazy: only the raw paths need interface details

    src = source_for(dst, family)
    fam = socket.AF_INET if family == socket.AF_INET else socket.AF_INET6
    addrs = psutil.net_if_addrs()
    ifname = mac = None
    onlink = False
    own = set()
    for name, entries in addrs.items():
        for e in entries:
            if e.family == fam:
                own.add(e.address.split("%")[0])
        for e in entries:
            if e.family == fam and e.address.split("%")[0] == src:
                ifname = name
                if e.netmask:
                    bits = bin(int(ipaddress.ip_address(e.netmask.split("/")[0]))).count("1")
                    subnet = ipaddress.ip_network(f"{src}/{bits}", strict=False)
                    onlink = ipaddress.ip_address(dst) in subnet
        if ifname == name:
            for e in entries:
                if e.family == psutil.AF_LINK and e.address and e.address != "00:00:00:00:00:00":
                    mac = e.address
    loop = ipaddress.ip_address(dst).is_loopback or ifname == "lo"
    return Route(src, ifname, None if loop else mac, onlink and not loop, loop, dst in own)


def raise_nofile(want: int = 1 << 16) -> int:
    """Raise RLIMIT_NOFILE toward want (hard limit, raised too when root); the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    for limits in ((want, max(hard, want)), (min(want, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            return limits[0]
        except (ValueError, OSError):
            continue
    return soft


def can_raw() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP).close()
        return True
    except PermissionError:
        return False
    except OSError:
        return False
