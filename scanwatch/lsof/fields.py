"""lsof -F: field output, the form scripts read. One field per line (NUL-terminated with
-F0, each set then ending in a newline): a process set (p, g, R, c, u, L, K, M), then a
set per file (f a l t G D|d s|o i k P n T), in lsof 4.95's order. Only p is printed
whatever the selection; T (TST=, TQR=, TQS=) ignores -T, as lsof's field output does.
"""
from __future__ import annotations

import os

from . import names, proc
from .output import command_text, offset_text

# What lsof -F ? prints (to stderr), letter by letter.
HELP = [("a", "access: r = read; w = write; u = read/write"), ("c", "command name"),
        ("d", "device character code"), ("D", "major/minor device number as 0x<hex>"),
        ("f", "file descriptor"), ("G", "file flaGs"), ("i", "inode number"),
        ("k", "link count"), ("K", "task ID (TID)"),
        ("l", "lock: r/R = read; w/W = write; u = read/write"), ("L", "login name"),
        ("m", "marker between repeated output"), ("M", "task comMand name"),
        ("n", "comment, name, Internet addresses"),
        ("o", "file offset as 0t<dec> or 0x<hex>"), ("p", "process ID (PID)"),
        ("g", "process group ID (PGID)"), ("P", "protocol name"),
        ("r", "raw device number as 0x<hex>"), ("R", "paRent PID"), ("s", "file size"),
        ("S", "stream module and device names"), ("t", "file type"), ("T", "TCP/TPI info"),
        ("u", "user ID (UID)"), ("0", "(zero) use NUL field terminator instead of NL")]
LETTERS = frozenset(letter for letter, _ in HELP)
# -F alone: every field but the raw device (r), streams (S) and the marker (m).
DEFAULT = frozenset("pgRcuLKMfaltGdDsoiknPT")
SOCKET_TYPES = frozenset(("IPv4", "IPv6", "unix", "sock", "pack", "raw", "raw6"))
SPECIAL = {"cwd": "cwd", "rtd": "root", "txt": "exe"}


def help_text() -> str:
    return "lsof:\tID    field description\n" + "".join(
        f"\t {letter}    {text}\n" for letter, text in HELP)


def parse(value: str) -> tuple[frozenset, bool, bool]:
    """(fields, NUL-terminated, offsets asked for) from -F's argument; ValueError names
    an unknown letter. An o in the letters means every descriptor's offset and no size
    (as lsof); the default set shows the SIZE/OFF column's choice instead."""
    for ch in value:
        if ch not in LETTERS:
            raise ValueError(f"unknown field: {ch}")
    chosen = frozenset(value) - {"0"}
    return (chosen or DEFAULT) | {"p"}, "0" in value, "o" in chosen


def _ids(pid: str) -> tuple[str | None, str | None]:
    """(PPID, PGID) from /proc/PID/stat (after the command's closing parenthesis)."""
    data = proc.read_small(f"/proc/{pid}/stat")
    if not data:
        return None, None
    rest = data[data.rfind(b")") + 2:].split()
    return (rest[1].decode(), rest[2].decode()) if len(rest) > 2 else (None, None)


def _hexdev(text: str) -> str | None:
    major, sep, minor = text.partition(",")
    if sep and major.isdigit() and minor.isdigit():
        return "0x%x" % os.makedev(int(major), int(minor))
    return None


class Writer:
    def __init__(self, opts, tables):
        self.want, nul, self.offsets = opts.fields
        self.tcp_info = opts.field_tcp_info
        self.term = "\0" if nul else "\n"
        self.end = "\n" if nul else ""
        self.numeric_uid = opts.numeric_uid
        self.tables = tables

    def render(self, groups) -> str:
        out = []
        for head, rows in groups:
            if rows:
                out.append(self._set(self._process(head)))
                base = f"/proc/{head[1]}" + (f"/task/{head[2]}" if head[2] else "")
                for row in rows:
                    fields = self._file(row, base)
                    if fields:   # a file with none of the chosen fields has no set
                        out.append(self._set(fields))
        return "".join(out)

    def marker(self, text: str) -> str:
        return self._set(["m" + text])

    def _set(self, fields: list[str]) -> str:
        t = self.term
        return t.join(fields) + t + self.end

    def _process(self, head) -> list[str]:
        comm, pid, tid, taskcmd, _user = head
        want = self.want
        out = [f"p{pid}"]
        if "g" in want or "R" in want:
            ppid, pgid = _ids(pid)
            if "g" in want and pgid is not None:
                out.append("g" + pgid)
            if "R" in want and ppid is not None:
                out.append("R" + ppid)
        if "c" in want:
            out.append("c" + command_text(comm, 0))
        if "u" in want or "L" in want:
            uid = proc.owner(f"/proc/{pid}")
            if uid is not None:
                if "u" in want:
                    out.append(f"u{uid}")
                login = None if self.numeric_uid else names.user(uid)
                if "L" in want and login is not None:
                    out.append("L" + login)
        if tid:
            if "K" in want:
                out.append("K" + tid)
            if "M" in want and taskcmd:
                out.append("M" + command_text(taskcmd, 0))
        return out

    def _stat(self, fd: str, base: str, ftype: str, name: str):
        """The stat result behind a file's k (and r) fields; None for sockets, failures."""
        if ftype in SOCKET_TYPES:
            return None
        if fd.isdigit():
            path = f"{base}/fd/{fd}"
        elif fd in SPECIAL:
            path = f"{base}/{SPECIAL[fd]}"
        elif fd == "mem":
            path = name
        else:
            return None
        try:
            return os.stat(path)
        except OSError:
            return None

    def _file(self, row, base: str) -> list[str]:
        fd, mode, lock, ftype, dev, size, node, name, kind, key = row
        want = self.want
        out = []
        if "f" in want:
            out.append("f" + fd)
        if "a" in want:
            out.append("a" + mode)
        if "l" in want:
            out.append("l" + lock)
        if "t" in want and ftype:
            out.append("t" + ftype)
        info = proc.fdinfo(base, fd) if fd.isdigit() and ("G" in want or self.offsets) else {}
        flags = info.get("flags", "")
        if "G" in want and flags.isdigit():
            out.append("G0x%x;0x0" % int(flags, 8))
        st = self._stat(fd, base, ftype, name) if {"k", "r"} & want else None
        if kind == "file" and key is not None:
            hexdev = "0x%x" % key[0]          # st_dev, even where DEVICE shows st_rdev
        else:
            hexdev = None if kind == "inet" or ftype == "unix" else _hexdev(dev)
        if hexdev:
            if "D" in want:
                out.append("D" + hexdev)
        elif dev and "d" in want:
            out.append("d" + dev)
        if "r" in want and st is not None and ftype in ("CHR", "BLK"):
            out.append("r0x%x" % st.st_rdev)
        if self.offsets:
            pos = info.get("pos", "")
            if pos.isdigit():
                out.append("o" + offset_text(int(pos)))
        elif size.startswith(("0t", "0x")):
            if "o" in want:
                out.append("o" + size)
        elif size and "s" in want:
            out.append("s" + size)
        proto = node if kind == "inet" or ftype == "pack" else None
        if "i" in want and node and proto is None:
            out.append("i" + node)
        if "k" in want and st is not None:
            out.append(f"k{st.st_nlink}")
        if "P" in want and proto:
            out.append("P" + proto)
        if "n" in want:
            out.append("n" + name)
        if "T" in want:
            out.extend(self._tcp_info(row))
        return out

    def _tcp_info(self, row) -> list[str]:
        if row[8] == "inet":
            proto, state, rq, wq = row[9][1], row[9][2], row[9][7], row[9][8]
            from .files import TCP_STATE_NAMES
            info = self.tcp_info
            items = []
            if proto == 6 and "s" in info:
                items.append(f"TST={TCP_STATE_NAMES.get(state, 'UNKNOWN')}")
            if "q" in info:
                items += [f"TQR={rq}", f"TQS={0 if proto == 6 and state == 10 else wq}"]
            return items
        if row[3] == "unix" and row[6].isdigit() and "s" in self.tcp_info:
            entry = self.tables.unix.get(int(row[6])) if self.tables else None
            return [f"TST={entry[3]}"] if entry else []
        return []
