"""lsof's columns and escaping, checked against lines lsof 4.95 printed on this system."""
import pytest

from scanwatch.lsof import files as F
from scanwatch.lsof import output
from scanwatch.lsof.options import parse

LO4 = bytes([127, 0, 0, 1]).ljust(16, b"\0")
LO6 = bytes(15) + b"\1"
MAPPED_LO = bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1])
ANY = bytes(16)


def render(rows, tasks=False):
    """output.render over rows given whole (13 cells), grouped as the lister groups them."""
    groups = []
    for r in rows:
        head, cells = r[:5], r[5:]
        if groups and groups[-1][0] == head:
            groups[-1][1].append(cells)
        else:
            groups.append((head, [cells]))
    return output.render(groups, tasks=tasks)


def row(cmd="python3", pid="31044", user="root", fd="3", mode="u", lock=" ", ftype="IPv4",
        dev="155484", size="0t0", node="TCP", name="127.0.0.1:33049 (LISTEN)", tid="",
        task=""):
    return (cmd, pid, tid, task, user, fd, mode, lock, ftype, dev, size, node, name)


def test_inet_listing_layout_is_lsofs():
    text = render([
        row(),
        row(fd="12", dev="155492", node="UDP", name="127.0.0.1:44071 "),
        row(fd="13", ftype="IPv6", dev="155493", node="UDP", name="*:56429 "),
    ])
    assert text == (
        "COMMAND   PID USER   FD   TYPE DEVICE SIZE/OFF NODE NAME\n"
        "python3 31044 root    3u  IPv4 155484      0t0  TCP 127.0.0.1:33049 (LISTEN)\n"
        "python3 31044 root   12u  IPv4 155492      0t0  UDP 127.0.0.1:44071 \n"
        "python3 31044 root   13u  IPv6 155493      0t0  UDP *:56429 \n")


def test_full_listing_layout_is_lsofs():
    text = render([
        row(fd="cwd", mode=" ", ftype="DIR", dev="254,0", size="4096", node="2171537",
            name="/tmp/lsx"),
        row(fd="15", ftype="unix", dev="0x00000000e3d23f14", node="155495",
            name="type=STREAM (CONNECTED)"),
        row(fd="11", mode="w", lock="W", ftype="REG", dev="254,0", size="3", node="2171129",
            name="/tmp/lsx/lockme"),
        row(fd="*345", ftype="IPv4"),
    ])
    assert text.splitlines() == [
        "COMMAND   PID USER   FD   TYPE             DEVICE SIZE/OFF    NODE NAME",
        "python3 31044 root  cwd    DIR              254,0     4096 2171537 /tmp/lsx",
        "python3 31044 root   15u  unix 0x00000000e3d23f14      0t0  155495 type=STREAM "
        "(CONNECTED)",
        "python3 31044 root   11wW  REG              254,0        3 2171129 /tmp/lsx/lockme",
        "python3 31044 root *345u  IPv4             155484      0t0     TCP 127.0.0.1:33049 "
        "(LISTEN)",
    ]


def test_user_column_is_right_justified_and_numeric_uids_are_eight_wide():
    text = render([row(user="root"), row(pid="2846", user="    4242"),
                          row(pid="3045", user="systemd-network")])
    lines = text.splitlines()
    assert lines[0].startswith("COMMAND   PID            USER   FD")
    assert lines[1].startswith("python3 31044            root    3u")
    assert lines[2].startswith("python3  2846            4242    3u")
    assert lines[3].startswith("python3  3045 systemd-network    3u")


def test_task_columns():
    text = render([row(cmd="python3", pid="31618", fd="cwd", mode=" ", ftype="DIR",
                              dev="254,0", size="4096", node="2171537", name="/tmp/lsx"),
                          row(cmd="python3", pid="31618", tid="31660", task="python3",
                              fd="cwd", mode=" ", ftype="DIR", dev="254,0", size="4096",
                              node="2171537", name="/tmp/lsx")], tasks=True)
    assert text.splitlines() == [
        "COMMAND   PID   TID TASKCMD USER   FD   TYPE DEVICE SIZE/OFF    NODE NAME",
        "python3 31618               root  cwd    DIR  254,0     4096 2171537 /tmp/lsx",
        "python3 31618 31660 python3 root  cwd    DIR  254,0     4096 2171537 /tmp/lsx",
    ]


@pytest.mark.parametrize("comm, cell, width", [
    ("python3", "python3", 7),
    ("longcommandname", "longcomma", 9),
    ("a b", "a\\x20b", 6),
    ("x\ty", "x\\ty", 4),
    ("abcdefg ijk", "abcdefg", 9),      # \x20 would not fit: cut before it, width 9
    ("abcdefgh\x01", "abcdefgh", 9),
    ("a\x01b\x1bc", "a^Ab^[c", 7),
    ("\b\f\r", "\\b\\f\\r", 6),
    ("q\x7fz", "q\\x7fz", 6),
    ("a\\b", "a\\\\b", 4),
    ("x\udcff", "x\\xff", 5),             # an undecodable byte
])
def test_command_escaping_and_cut(comm, cell, width):
    assert output.command_text(comm) == cell
    assert output.command_width(comm) == width


def test_name_escaping():
    assert output.printable("/tmp/lsx/a\\b") == "/tmp/lsx/a\\\\b"
    assert output.printable("/tmp/n\nl") == "/tmp/n\\nl"
    assert output.printable("/tmp/t\tq x") == "/tmp/t\\tq x"   # space is fine in NAME
    assert output.printable("/tmp/bad\udcff") == "/tmp/bad\\xff"


def test_utf8_names_follow_the_locale(monkeypatch):
    monkeypatch.setattr(output, "_WIDE", True)
    assert output.printable("/tmp/caf\u00e9 x") == "/tmp/caf\u00e9 x"
    monkeypatch.setattr(output, "_WIDE", False)
    assert output.printable("/tmp/caf\u00e9 x") == "/tmp/caf\\xc3\\xa9 x"


def test_offsets():
    assert output.offset_text(0) == "0t0"
    assert output.offset_text(99999999) == "0t99999999"
    assert output.offset_text(100000000) == "0x5f5e100"


def test_fd_cells_and_modes():
    assert F.fd_text("3") == "3" and F.fd_text("9999") == "9999"
    assert F.fd_text("12345") == "*345"
    assert F.mode_char(0o120400) == "r" and F.mode_char(0o120200) == "w"
    assert F.mode_char(0o120600) == "u" and F.mode_char(0o120000) == "u"  # O_PATH: u


def inet(opts, sock):
    return F.Inet(parse(opts)).name(sock)


def test_inet_names():
    listen = (2, 6, 10, LO4, 33049, ANY, 0, 0, 0)
    est6 = (10, 6, 1, LO6, 59392, LO6, 49157, 0, 0)
    mapped = (10, 6, 1, MAPPED_LO, 41759, MAPPED_LO, 60348, 0, 0)
    udp_any6 = (10, 17, 7, ANY, 56429, ANY, 0, 0, 0)
    udp_conn = (2, 17, 1, LO4, 55835, LO4, 44071, 0, 0)
    n = ["-n", "-P"]
    assert inet(n, listen) == "127.0.0.1:33049 (LISTEN)"
    assert inet(n, est6) == "[::1]:59392->[::1]:49157 (ESTABLISHED)"
    assert inet(n, mapped) == "127.0.0.1:41759->127.0.0.1:60348 (ESTABLISHED)"
    assert inet(n, udp_any6) == "*:56429 "
    assert inet(n, udp_conn) == "127.0.0.1:55835->127.0.0.1:44071 "
    assert inet(n + ["-T"], listen) == "127.0.0.1:33049"
    assert inet(n + ["-T"], udp_any6) == "*:56429"
    assert inet(n + ["-Tf"], listen) == "127.0.0.1:33049 "
    assert inet(n + ["-Tqs"], (2, 6, 10, LO4, 33049, ANY, 0, 3, 0)) == (
        "127.0.0.1:33049 (LISTEN QR=3 QS=0)")
    assert inet(n + ["-Tq"], udp_any6) == "*:56429 (QR=0 QS=0)"
    assert inet(["-n"], (2, 6, 10, LO4, 22, ANY, 0, 0, 0)) == "127.0.0.1:ssh (LISTEN)"
    states = {2: "SYN_SENT", 5: "FIN_WAIT2", 8: "CLOSE_WAIT", 9: "LAST_ACK", 11: "CLOSING"}
    for state, label in states.items():
        assert inet(n, (2, 6, state, LO4, 1, LO4, 2, 0, 0)).endswith(f" ({label})")


def test_inet_file_cells():
    f = F.Inet(parse(["-n", "-P"])).file("7", 155488, (2, 6, 1, LO4, 35104, LO4, 33049, 0, 0))
    assert f[:8] == ("7", "u", " ", "IPv4", "155488", "0t0", "TCP",
                     "127.0.0.1:35104->127.0.0.1:33049 (ESTABLISHED)")
    f = F.Inet(parse(["-n", "-P"])).file("8", 9, (2, 136, 7, LO4, 57896, ANY, 0, 0, 0))
    assert f[3] == "IPv4" and f[6] == "UDPLITE"


def test_unix_names():
    o = parse([])
    entry = ("0x000000005b7bf712", "/tmp/lsx/sock31044", "STREAM", "LISTEN")
    f = F.unix_file("17", "u", 155497, entry, o)
    assert f[3:8] == ("unix", "0x000000005b7bf712", "0t0", "155497",
                      "/tmp/lsx/sock31044 type=STREAM (LISTEN)")
    assert F.unix_file("19", "u", 1, ("0x0", "@abstract", "STREAM", "LISTEN"),
                       parse(["-T"]))[7] == "@abstract type=STREAM"
    assert F.unix_file("15", "u", 1, ("0x0", "", "DGRAM", "UNCONNECTED"),
                       parse(["-Tq"]))[7] == "type=DGRAM "
