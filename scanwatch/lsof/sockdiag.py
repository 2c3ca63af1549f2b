"""A lean NETLINK_SOCK_DIAG reader: every TCP, UDP and UDP-Lite socket of this network
namespace, keyed by inode, from one dump per family and protocol.

No attributes are requested (ext = 0), so each answer is a bare struct inet_diag_msg
(plus the few attributes the kernel always adds, skipped by length). Decoding is one
Struct.unpack_from per socket. Entries are Sock tuples:
    (family, proto, state, local_addr16, local_port, remote_addr16, remote_port, rq, wq)
with addresses as 16 raw bytes (IPv4 in the first four) and ports as host integers; the
send queue of a listener is 0, as in /proc/net/tcp (sock_diag gives its backlog limit).
"""
from __future__ import annotations

import errno
import _socket as socket  # the C module: socket.py and its enums cost 2 ms to import
import struct

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3

IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_UDPLITE = 136
PROTO_NAMES = {IPPROTO_TCP: "TCP", IPPROTO_UDP: "UDP", IPPROTO_UDPLITE: "UDPLITE"}

TCP_TIME_WAIT = 6
TCP_NEW_SYN_RECV = 12
TCP_BOUND_INACTIVE = 13
# Sockets in TIME_WAIT and NEW_SYN_RECV belong to no process; bound-only sockets (which
# newer kernels dump on request) are not in /proc/net/tcp, so lsof does not know them.
TCP_OWNED_STATES = 0xFFFF & ~((1 << TCP_TIME_WAIT) | (1 << TCP_NEW_SYN_RECV)
                              | (1 << TCP_BOUND_INACTIVE))

_HDR = struct.Struct("=IHHII")              # nlmsghdr
_REQ = struct.Struct("=BBBBI48x")           # inet_diag_req_v2 (sockid left zero)
# inet_diag_msg: family, state, timer, retrans, sport, dport, src, dst, if, cookie,
# expires, rqueue, wqueue, uid, inode
_MSG = struct.Struct("<BBxx2s2s16s16s16xII4xI")
_MSG_OFF = _HDR.size
_MSG_END = _HDR.size + 72


class DiagUnavailable(OSError):
    """sock_diag cannot be used here (no netlink, no inet_diag)."""


def request(family: int, proto: int, states: int, seq: int = 1) -> bytes:
    """The bytes of one SOCK_DIAG_BY_FAMILY dump request."""
    body = _REQ.pack(family, proto, 0, 0, states)
    return _HDR.pack(_HDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP,
                     seq, 0) + body


_uniform_structs: dict = {}


def _uniform(length: int) -> struct.Struct:
    """A Struct for a whole message of `length` bytes: header, inet_diag_msg, padding."""
    st = _uniform_structs.get(length)
    if st is None:
        st = _uniform_structs[length] = struct.Struct(
            f"<IH10xBBxxBBBB16s16s16xII4xI{length - _MSG_END}x")
    return st


def parse(data, table: dict, proto: int) -> bool:
    """Decode a buffer of netlink messages into table (inode -> Sock).

    Returns True when the dump's NLMSG_DONE was seen. Raises OSError for NLMSG_ERROR.
    A buffer of equally long answers (the usual case: the kernel adds the same attributes
    to every socket of a dump) is decoded with one iter_unpack."""
    end = len(data)
    if end >= _MSG_END:
        length, mtype = _HDR.unpack_from(data, 0)[:2]
        if mtype == SOCK_DIAG_BY_FAMILY and length >= _MSG_END and not length & 3:
            body = end - end % length
            tail = end - body
            if tail == 0 or (tail == 20 and _HDR.unpack_from(data, body)[1] == NLMSG_DONE):
                if _parse_uniform(data[:body], length, table, proto):
                    if tail:
                        return True
                    return False
    return _parse_each(data, table, proto)


def _parse_uniform(data, length: int, table: dict, proto: int) -> bool:
    items = _uniform(length).iter_unpack(data)
    decoded = []
    for ln, mt, fam, state, s1, s2, d1, d2, src, dst, rq, wq, inode in items:
        if ln != length or mt != SOCK_DIAG_BY_FAMILY:
            return False
        if inode:
            decoded.append((inode, (fam, proto, state, src, s1 << 8 | s2, dst, d1 << 8 | d2,
                                    rq, wq if state != 10 else 0)))
    table.update(decoded)
    return True


def _parse_each(data, table: dict, proto: int) -> bool:
    unpack_hdr = _HDR.unpack_from
    unpack_msg = _MSG.unpack_from
    from_bytes = int.from_bytes
    off, end = 0, len(data)
    while off + 16 <= end:
        length, mtype = unpack_hdr(data, off)[:2]
        if length < 16:
            raise OSError(errno.EPROTO, "bad netlink message length")
        if mtype == NLMSG_DONE:
            return True
        if mtype == NLMSG_ERROR:
            code = -int.from_bytes(data[off + 16:off + 20], "little", signed=True)
            if code:
                raise OSError(code, "sock_diag: " + errno.errorcode.get(code, str(code)))
            return True
        if length >= _MSG_END:
            fam, state, sport, dport, src, dst, rq, wq, inode = unpack_msg(data, off + _MSG_OFF)
            if inode:
                table[inode] = (fam, proto, state, src, from_bytes(sport, "big"), dst,
                                from_bytes(dport, "big"), rq, wq if state != 10 else 0)
        off += (length + 3) & ~3
    return False


def _dump(sock, buf, view, family: int, proto: int, states: int, table: dict, seq: int):
    sock.send(request(family, proto, states, seq))
    while True:
        n = sock.recv_into(buf)
        if n <= 0:
            return
        if parse(view[:n], table, proto):
            return


def dump(protos=(IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE),
         families=(socket.AF_INET, socket.AF_INET6)) -> dict:
    """inode -> Sock for the given protocols and families of this network namespace.

    A protocol the kernel has no diag module for is skipped; DiagUnavailable when netlink
    sock_diag cannot be used at all."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                             NETLINK_SOCK_DIAG)
    except OSError as exc:
        raise DiagUnavailable(exc.errno, f"netlink sock_diag: {exc.strerror}") from None
    table: dict = {}
    buf = bytearray(1 << 16)
    view = memoryview(buf)
    answered = 0
    try:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        except OSError:
            pass
        seq = 0
        for proto in protos:
            states = TCP_OWNED_STATES if proto == IPPROTO_TCP else 0xFFFFFFFF
            for family in families:
                seq += 1
                try:
                    _dump(sock, buf, view, family, proto, states, table, seq)
                    answered += 1
                except OSError as exc:
                    if exc.errno not in (errno.ENOENT, errno.EOPNOTSUPP, errno.EINVAL,
                                         errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT):
                        raise DiagUnavailable(exc.errno, f"sock_diag: {exc.strerror}") from None
    finally:
        sock.close()
    if not answered:
        raise DiagUnavailable(errno.ENOENT, "sock_diag answered no inet dump")
    return table
