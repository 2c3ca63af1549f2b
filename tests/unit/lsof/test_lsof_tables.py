"""The socket tables: the sock_diag decoder on canned netlink bytes, the /proc/net parsers
on canned text (both must agree), /proc/locks, /etc/services, and -i address matching."""
import errno
import struct

import pytest

from scanwatch.lsof import names, nettables, proc, sockdiag
from scanwatch.lsof.options import parse_inet
from scanwatch.lsof.select import inet_matches

LO4 = bytes([127, 0, 0, 1]).ljust(16, b"\0")
LO6 = bytes(15) + b"\1"
ANY = bytes(16)


def diag_msg(family, state, src, sport, dst, dport, inode, rq=0, wq=0, attrs=b"", seq=1):
    """One SOCK_DIAG_BY_FAMILY answer: nlmsghdr + inet_diag_msg + attributes."""
    body = struct.pack("<BBBB", family, state, 0, 0)            # family, state, timer, retrans
    body += struct.pack(">HH", sport, dport) + src + dst         # inet_diag_sockid ...
    body += struct.pack("<III", 1, 0xAAAA, 0xBBBB)               # ... if, cookie
    body += struct.pack("<IIIII", 0, rq, wq, 0, inode)           # expires, queues, uid, inode
    assert len(body) == 72
    body += attrs
    return struct.pack("=IHHII", 16 + len(body), 20, 2, seq, 0) + body


def done(seq=1):
    return struct.pack("=IHHII", 20, 3, 2, seq, 0) + b"\0\0\0\0"


def error(code, seq=1):
    return struct.pack("=IHHIIi", 36, 2, 0, seq, 0, -code) + bytes(16)


ATTR = struct.pack("=HHB3x", 5, 8, 0)   # INET_DIAG_SHUTDOWN, padded to 8


def test_request_layout():
    req = sockdiag.request(10, 6, 0x0FFF, seq=7)
    length, mtype, flags, seq, pid = struct.unpack_from("=IHHII", req)
    assert (length, mtype, flags, seq, pid) == (72, 20, 0x301, 7, 0) and len(req) == 72
    family, proto, ext, pad, states = struct.unpack_from("=BBBBI", req, 16)
    assert (family, proto, ext, states) == (10, 6, 0, 0x0FFF)
    assert req[24:] == bytes(48)


def test_owned_states_exclude_time_wait_new_syn_recv_and_bound_only():
    s = sockdiag.TCP_OWNED_STATES
    assert not s & (1 << 6) and not s & (1 << 12) and not s & (1 << 13)
    assert all(s & (1 << n) for n in (1, 2, 3, 4, 5, 7, 8, 9, 10, 11))


def test_parse_uniform_buffer_with_done():
    msgs = [diag_msg(2, 10, LO4, 33049, ANY, 0, 155484, wq=128, attrs=ATTR),
            diag_msg(2, 1, LO4, 35104, LO4, 33049, 155488, rq=5, wq=7, attrs=ATTR),
            diag_msg(2, 1, LO4, 9, LO4, 10, 0, attrs=ATTR)]       # inode 0: skipped
    table = {}
    assert sockdiag.parse(b"".join(msgs) + done(), table, 6) is True
    assert table == {155484: (2, 6, 10, LO4, 33049, ANY, 0, 0, 0),   # listener: QS 0
                     155488: (2, 6, 1, LO4, 35104, LO4, 33049, 5, 7)}


def test_parse_uniform_buffer_without_done():
    table = {}
    data = b"".join(diag_msg(10, 7, ANY, p, ANY, 0, 1000 + p) for p in range(1, 40))
    assert sockdiag.parse(data, table, 17) is False
    assert len(table) == 39 and table[1005] == (10, 17, 7, ANY, 5, ANY, 0, 0, 0)


def test_parse_mixed_lengths_falls_back_to_one_by_one():
    data = (diag_msg(10, 1, LO6, 59392, LO6, 49157, 155490) +
            diag_msg(10, 10, LO6, 49157, ANY, 0, 155485, attrs=ATTR + ATTR) + done())
    table = {}
    assert sockdiag.parse(data, table, 6) is True
    assert table[155490] == (10, 6, 1, LO6, 59392, LO6, 49157, 0, 0)
    assert table[155485][4] == 49157


def test_parse_error_message():
    with pytest.raises(OSError) as exc:
        sockdiag.parse(error(errno.ENOENT), {}, 136)
    assert exc.value.errno == errno.ENOENT
    assert sockdiag.parse(error(0), {}, 6) is True   # an ACK ends the dump


def test_parse_rejects_a_broken_length():
    with pytest.raises(OSError):
        sockdiag.parse(struct.pack("=IHHII", 8, 20, 0, 0, 0), {}, 6)


TAIL = " 00:00000000 00000000     0        0 "   # tr tm->when retrnsmt uid timeout
PROC_TCP = "".join([
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
    "timeout inode\n",
    "   0: 0100007F:8119 00000000:0000 0A 00000000:00000000" + TAIL + "155484 1 0 100 0 0\n",
    "   1: 0100007F:8920 0100007F:8119 01 00000007:00000005" + TAIL + "155488 1 0 20 4 30\n",
    "   2: 0100007F:1F90 0100007F:A000 06 00000000:00000000 03:00000BB8 00000000     0"
    "        0 0 3 0000000000000000\n",   # TIME_WAIT: no inode, no owner
])
PROC_TCP6 = "".join([
    "  sl  local_address                         remote_address                        st "
    "tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n",
    "   0: 00000000000000000000000001000000:C005 00000000000000000000000000000000:0000 0A "
    "00000000:00000000" + TAIL + "155485 1 0 100 0 0\n",
    "   1: 0000000000000000FFFF00000100007F:A31F 0000000000000000FFFF00000100007F:EBBC 01 "
    "00000000:00000000" + TAIL + "312597 1 0 20 4 30\n",
])


def test_proc_net_parsers_agree_with_the_decoder():
    table = {}
    nettables.parse_inet(PROC_TCP, 2, 6, table)
    nettables.parse_inet(PROC_TCP6, 10, 6, table)
    assert table[155484] == (2, 6, 10, LO4, 33049, ANY, 0, 0, 0)
    assert table[155488] == (2, 6, 1, LO4, 35104, LO4, 33049, 5, 7)
    assert 0 not in table  # TIME_WAIT has no inode, no owner
    assert table[155485] == (10, 6, 10, LO6, 49157, ANY, 0, 0, 0)
    mapped = bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1])
    assert table[312597] == (10, 6, 1, mapped, 41759, mapped, 60348, 0, 0)
    decoded = {}
    sockdiag.parse(diag_msg(2, 1, LO4, 35104, LO4, 33049, 155488, rq=5, wq=7), decoded, 6)
    assert decoded[155488] == table[155488]


PROC_UNIX = """\
Num       RefCount Protocol Flags    Type St Inode Path
00000000e3d23f14: 00000003 00000000 00000000 0001 03 155495
000000005b7bf712: 00000002 00000000 00010000 0001 01 155497 /tmp/lsx/sock 31044
00000000976616ff: 00000002 00000000 00000000 0002 01 155498
00000000f58e1de8: 00000002 00000000 00010000 0001 01 312607 @abstract-name
00000000d9d74174: 00000003 00000000 00000000 0005 03 340776
"""


def test_unix_table():
    t = nettables.parse_unix(PROC_UNIX)
    assert t[155495] == ("0x00000000e3d23f14", "", "STREAM", "CONNECTED")
    assert t[155497] == ("0x000000005b7bf712", "/tmp/lsx/sock 31044", "STREAM", "LISTEN")
    assert t[155498][2:] == ("DGRAM", "UNCONNECTED")
    assert t[312607][1] == "@abstract-name"
    assert t[340776][2] == "SEQPACKET"


def test_raw_and_packet_tables():
    raw = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
           "timeout inode ref pointer drops\n"
           "   1: 00000000:0001 00000000:0000 07 00000000:00000000 00:00000000 00000000     0"
           "        0 312586 2 0000000000000000 0\n")
    assert nettables.parse_raw(raw, {}, "raw") == {
        312586: ("raw", "00000000:0001->00000000:0000 st=07")}
    packet = ("sk               RefCnt Type Proto  Iface R Rmem   User   Inode\n"
              "0000000000000000 3      3    0003   0     1 0      0      312590\n"
              "0000000000000000 3      2    0800   0     1 0      0      312591\n")
    assert nettables.parse_packet(packet) == {312590: ("ALL", "type=SOCK_RAW"),
                                              312591: ("IP", "type=SOCK_DGRAM")}


def test_locks():
    text = ("1: POSIX  ADVISORY  WRITE 3703 fe:00:2171749 0 EOF\n"
            "2: POSIX  ADVISORY  WRITE 3703 fe:00:2171700 0 0\n"
            "3: FLOCK  ADVISORY  WRITE 3703 fe:00:2171129 0 EOF\n"
            "3: -> FLOCK  ADVISORY  WRITE 99 fe:00:2171129 0 EOF\n"
            "4: POSIX  ADVISORY  READ 12 00:1a:77 10 20\n"
            "5: OFDLCK ADVISORY  READ -1 fe:00:5 0 EOF\n")
    t = proc.parse_locks(text)
    assert t[(3703, 254, 0, 2171749)] == "W" and t[(3703, 254, 0, 2171700)] == "w"
    assert t[(3703, 254, 0, 2171129)] == "W" and (99, 254, 0, 2171129) not in t
    assert t[(12, 0, 0x1A, 77)] == "r" and t[(-1, 254, 0, 5)] == "R"


def test_services_first_entry_wins():
    t = names.parse_services("ssh\t\t22/tcp\n# x\nfoo 22/tcp alias\ndomain 53/udp # dns\n"
                             "bad line\nhttp 80/tcp www\n")
    assert t == {(22, "tcp"): "ssh", (53, "udp"): "domain", (80, "tcp"): "http"}


def sock(family, proto, laddr, lport, raddr=ANY, rport=0):
    return (family, proto, 1, laddr, lport, raddr, rport, 0, 0)


def test_inet_matching():
    conn = sock(2, 6, LO4, 60369, bytes([127, 0, 0, 2]).ljust(16, b"\0"), 60545)
    assert inet_matches(parse_inet("@127.0.0.2:60545"), conn)
    assert not inet_matches(parse_inet("@127.0.0.2:60369"), conn)   # same side only
    assert inet_matches(parse_inet(":60369"), conn)
    assert inet_matches(parse_inet("TCP:1-60369"), conn)
    assert not inet_matches(parse_inet("UDP:60369"), conn)
    assert not inet_matches(parse_inet("6"), conn)
    mapped = sock(10, 17, bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1]), 44887)
    assert inet_matches(parse_inet("4UDP"), mapped)               # v4-mapped counts as v4
    assert inet_matches(parse_inet("@127.0.0.1"), mapped)
    assert not inet_matches(parse_inet("UDP"), sock(2, 136, LO4, 1))   # UDP-Lite is not UDP
    assert inet_matches(parse_inet("UDPLITE"), sock(2, 136, LO4, 1))
    assert inet_matches(parse_inet("@[::1]"), sock(10, 6, LO6, 5))
