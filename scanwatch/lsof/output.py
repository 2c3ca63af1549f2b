"""lsof's listing layout: column widths from the content, lsof's escaping of text.

A listing is a list of groups, one per process (or task):
    ((command, pid, tid, taskcmd, user), [(fd, mode, lock, type, device, size, node, name)])
command and taskcmd are raw names (escaped and cut here); every other field is a str,
already printable. fd is at most four characters (lsof writes fds above 9999 as "*NNN").
"""
from __future__ import annotations

import os
from operator import itemgetter

_TYPE, _DEVICE, _SIZE, _NODE = itemgetter(3), itemgetter(4), itemgetter(5), itemgetter(6)

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


def render(groups: list[tuple], tasks: bool = False, cmd_limit: int = CMD_LIMIT) -> str:
    """The listing: header and lines, each ending in a newline.

    groups: [((command, pid, tid, taskcmd, user), [(fd, mode, lock, type, device, size,
    node, name), ...]), ...]. Each process's lines come from one %-format string (its
    COMMAND..USER part written into it), the fastest way Python has to fill columns."""
    if not groups:
        return ""
    cells: dict = {}
    wcmd, wpid, wtid, wtask, wuser = 7, 3, 3, 7, 4
    wtype, wdev, wsize, wnode = 4, 6, 8, 4
    for head, rows in groups:
        if not rows:
            continue
        for name in (head[0], head[3]):
            if name and name not in cells:
                cells[name] = (command_text(name, cmd_limit), command_width(name, cmd_limit))
        wcmd = max(wcmd, cells[head[0]][1])
        wpid = max(wpid, len(head[1]))
        wuser = max(wuser, len(head[4]))
        if tasks:
            wtid = max(wtid, len(head[2]))
            if head[3]:
                wtask = max(wtask, cells[head[3]][1])
        wtype = max(wtype, max(map(len, map(_TYPE, rows))))
        wdev = max(wdev, max(map(len, map(_DEVICE, rows))))
        wsize = max(wsize, max(map(len, map(_SIZE, rows))))
        wnode = max(wnode, max(map(len, map(_NODE, rows))))
    head_fmt = "%-*s %*s " + ("%*s %-*s " if tasks else "") + "%*s "
    tail = f"%4s%s%s %{wtype}s %{wdev}s %{wsize}s %{wnode}s %s\n"
    title = ["COMMAND".ljust(wcmd), " ", "PID".rjust(wpid)]
    if tasks:
        title += [" ", "TID".rjust(wtid), " ", "TASKCMD".ljust(wtask)]
    title += [" ", "USER".rjust(wuser), "   FD   ", "TYPE".rjust(wtype), " ",
              "DEVICE".rjust(wdev), " ", "SIZE/OFF".rjust(wsize), " ", "NODE".rjust(wnode),
              " NAME\n"]
    out = ["".join(title)]
    for head, rows in groups:
        if not rows:
            continue
        if tasks:
            prefix = head_fmt % (wcmd, cells[head[0]][0], wpid, head[1], wtid, head[2], wtask,
                                 cells[head[3]][0] if head[3] else "", wuser, head[4])
        else:
            prefix = head_fmt % (wcmd, cells[head[0]][0], wpid, head[1], wuser, head[4])
        line = prefix.replace("%", "%%") + tail
        out.extend(line % r for r in rows)
    return "".join(out)

