"""lsof's listing layout: column widths from the content, lsof's escaping of text.

A row is a tuple in COLUMN order:
    (command, pid, tid, taskcmd, user, fd, mode, lock, type, device, size, node, name)
command and taskcmd are raw names (escaped and cut here); every other field is a str,
already printable. fd is at most four characters (lsof writes fds above 9999 as "*NNN").
"""
from __future__ import annotations

import os

CMD_LIMIT = 9  # lsof prints the first nine characters of a command name
_C_ESCAPES = {8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r"}


def _utf8_locale() -> bool:
    for var in ("LC_ALL", "LC_CTYPE", "LANG"):
        value = os.environ.get(var)
        if value:
            low = value.lower()
            return "utf-8" in low or "utf8" in low
    return False


_WIDE = _utf8_locale()


def _units(text: str, in_command: bool) -> list[str]:
    """text as lsof prints it, one entry per source character."""
    data = os.fsencode(text)
    out: list[str] = []
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b < 0x80:
            if b == 0x5C:
                out.append("\\\\")
            elif b == 0x20:
                out.append("\\x20" if in_command else " ")
            elif 0x20 < b < 0x7F:
                out.append(chr(b))
            elif b in _C_ESCAPES:
                out.append(_C_ESCAPES[b])
            elif b < 0x20:
                out.append("^" + chr(b + 0x40))
            else:
                out.append("\\x7f")
            i += 1
            continue
        if _WIDE:
            # A valid, printable UTF-8 sequence is printed as it is.
            size = 2 if b >= 0xC0 else 0
            if b >= 0xE0:
                size = 3
            if b >= 0xF0:
                size = 4
            if size and i + size <= n:
                try:
                    ch = data[i:i + size].decode("utf-8")
                except UnicodeDecodeError:
                    ch = ""
                if ch and ch.isprintable():
                    out.append(ch)
                    i += size
                    continue
        out.append("\\x%02x" % b)
        i += 1
    return out


def printable(text: str) -> str:
    """A NAME-column string as lsof prints it."""
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text
    return "".join(_units(text, False))


def command_text(name: str, limit: int = CMD_LIMIT) -> str:
    """A COMMAND (or TASKCMD) cell: escaped, at most `limit` characters, never cutting
    an escape in two (limit 0: no limit)."""
    if name.isascii() and name.isprintable() and " " not in name and "\\" not in name:
        return name[:limit] if limit else name
    units = _units(name, True)
    if not limit:
        return "".join(units)
    out, used = [], 0
    for unit in units:
        if used + len(unit) > limit:
            break
        out.append(unit)
        used += len(unit)
    return "".join(out)


def command_width(name: str, limit: int = CMD_LIMIT) -> int:
    """The width a command name claims in its column: its escaped length, at most limit."""
    if name.isascii() and name.isprintable() and " " not in name and "\\" not in name:
        full = len(name)
    else:
        full = len("".join(_units(name, True)))
    return min(full, limit) if limit else full


def offset_text(pos: int) -> str:
    """lsof's SIZE/OFF form of a file offset: 0t<decimal> up to 8 digits, else 0x<hex>."""
    text = str(pos)
    if len(text) <= 8:
        return "0t" + text
    return "0x%x" % pos


def render(rows: list[tuple], tasks: bool = False, cmd_limit: int = CMD_LIMIT) -> str:
    """The listing: header and rows, each line ending in a newline."""
    if not rows:
        return ""
    cmd_cells = {}
    wcmd = 7
    wpid, wtid, wtask, wuser = 3, 3, 7, 4
    wtype, wdev, wsize, wnode = 4, 6, 8, 4
    last = None
    for r in rows:
        if r[1] is not last:
            last = r[1]
            c = r[0]
            if c not in cmd_cells:
                cmd_cells[c] = command_text(c, cmd_limit)
                w = command_width(c, cmd_limit)
                if w > wcmd:
                    wcmd = w
            if len(r[1]) > wpid:
                wpid = len(r[1])
            if len(r[4]) > wuser:
                wuser = len(r[4])
        if len(r[8]) > wtype:
            wtype = len(r[8])
        if len(r[9]) > wdev:
            wdev = len(r[9])
        if len(r[10]) > wsize:
            wsize = len(r[10])
        if len(r[11]) > wnode:
            wnode = len(r[11])
    if tasks:
        for r in rows:
            if len(r[2]) > wtid:
                wtid = len(r[2])
            if r[3]:
                t = r[3]
                if t not in cmd_cells:
                    cmd_cells[t] = command_text(t, cmd_limit)
                w = command_width(t, cmd_limit)
                if w > wtask:
                    wtask = w
    head = ["COMMAND".ljust(wcmd), " ", "PID".rjust(wpid)]
    if tasks:
        head += [" ", "TID".rjust(wtid), " ", "TASKCMD".ljust(wtask)]
    head += [" ", "USER".rjust(wuser), "   FD   ", "TYPE".rjust(wtype), " ",
             "DEVICE".rjust(wdev), " ", "SIZE/OFF".rjust(wsize), " ", "NODE".rjust(wnode),
             " NAME\n"]
    out = ["".join(head)]
    append = out.append
    key = prefix = None
    for r in rows:
        if (r[1], r[2]) != key:
            key = (r[1], r[2])
            if tasks:
                prefix = (f"{cmd_cells[r[0]]:<{wcmd}} {r[1]:>{wpid}} {r[2]:>{wtid}} "
                          f"{cmd_cells[r[3]] if r[3] else '':<{wtask}} {r[4]:>{wuser}} ")
            else:
                prefix = f"{cmd_cells[r[0]]:<{wcmd}} {r[1]:>{wpid}} {r[4]:>{wuser}} "
        append(f"{prefix}{r[5]:>4}{r[6]}{r[7]} {r[8]:>{wtype}} {r[9]:>{wdev}} "
               f"{r[10]:>{wsize}} {r[11]:>{wnode}} {r[12]}\n")
    return "".join(out)
