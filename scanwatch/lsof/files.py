"""One open file as lsof describes it: the FD, TYPE, DEVICE, SIZE/OFF, NODE and NAME cells.

A File is a tuple (fd, mode, lock, type, device, size, node, name, kind, key):
kind "inet" (key: the Sock tuple), "unix", "file" (key: (st_dev, st_ino)) or "other".
"""
from __future__ import annotations

import os
import _socket as socket  # the C module: socket.py and its enums cost 2 ms to import
import stat as st

from . import names, proc
from .output import offset_text, printable

INET_TYPES = {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6"}
TCP_STATE_NAMES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1",
                   5: "FIN_WAIT2", 6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK",
                   10: "LISTEN", 11: "CLOSING"}
PROTO_NAMES = {6: "TCP", 17: "UDP", 136: "UDPLITE"}
ZERO16 = bytes(16)
MAPPED = bytes(10) + b"\xff\xff"


class Tables:
    """Socket tables, locks and stat results of one listing, each read when first needed."""

    def __init__(self, opts):
        self.opts = opts
        self._inet = self._unix = self._raw = self._packet = self._locks = None
        self.stats: dict = {}
        self.devs: dict = {}
        self.fmt = Inet(opts)

    @property
    def inet(self) -> dict:
        if self._inet is None:
            from . import sockdiag
            try:
                self._inet = sockdiag.dump()
            except sockdiag.DiagUnavailable:
                from . import nettables
                self._inet = nettables.inet()
        return self._inet

    @property
    def unix(self) -> dict:
        if self._unix is None:
            from . import nettables
            self._unix = nettables.unix()
        return self._unix

    @property
    def raw(self) -> dict:
        if self._raw is None:
            from . import nettables
            self._raw = nettables.raw()
        return self._raw

    @property
    def packet(self) -> dict:
        if self._packet is None:
            from . import nettables
            self._packet = nettables.packet()
        return self._packet

    @property
    def locks(self) -> dict:
        if self._locks is None:
            self._locks = proc.locks()
        return self._locks

    def stat(self, path: str):
        """stat(path), cached for the listing; an OSError instance when it fails."""
        try:
            return self.stats[path]
        except KeyError:
            pass
        try:
            res = os.stat(path)
        except OSError as exc:
            res = exc
        self.stats[path] = res
        return res


def dev_text(dev: int) -> str:
    return f"{os.major(dev)},{os.minor(dev)}"


def fd_text(fd: str) -> str:
    """lsof's FD cell for a descriptor number: four characters at most."""
    return fd if len(fd) <= 4 else "*" + fd[-3:]


def mode_char(mode: int) -> str:
    """The access letter from the permission bits of the /proc/PID/fd/N link."""
    bits = mode & 0o600
    return "r" if bits == 0o400 else "w" if bits == 0o200 else "u"


# --- internet sockets -----------------------------------------------------------------

AF_INET, AF_INET6 = int(socket.AF_INET), int(socket.AF_INET6)
SUFFIX_STATES = {n: f" ({name})" for n, name in TCP_STATE_NAMES.items()}


def addr_text(family: int, addr: bytes, numeric: bool) -> str:
    """An address as lsof prints it: * for any, IPv4 for v4-mapped, IPv6 in brackets."""
    if family == AF_INET6 and addr[:12] == MAPPED:
        family, addr = AF_INET, addr[12:]
    if family == AF_INET:
        addr = addr[:4]
        if addr == b"\0\0\0\0":
            return "*"
    elif addr == ZERO16:
        return "*"
    if not numeric:
        name = names.host(family, addr)
        if name:
            return name
    text = socket.inet_ntop(family, addr)
    return text if family == AF_INET else "[" + text + "]"


def port_text(port: int, proto: int, numeric: bool) -> str:
    if not port:
        return "*"
    if not numeric:
        name = names.service(port, "tcp" if proto == 6 else "udp")
        if name:
            return name
    return str(port)


class Inet:
    """Formats internet sockets for one set of options, caching address texts."""

    def __init__(self, opts):
        self.nh, self.np = opts.numeric_host, opts.numeric_port
        info = opts.tcp_info
        self.info = info
        self.plain = info == "s"
        self.addrs: dict = {AF_INET: {}, AF_INET6: {}}

    def addr(self, family: int, addr: bytes) -> str:
        cache = self.addrs.get(family)
        if cache is None:
            return addr_text(family, addr, self.nh)
        text = cache.get(addr)
        if text is None:
            text = cache[addr] = addr_text(family, addr, self.nh)
        return text

    def port(self, port: int, proto: int) -> str:
        if self.np:
            return str(port) if port else "*"
        return port_text(port, proto, False)

    def name(self, sock: tuple) -> str:
        family, proto, state, laddr, lport, raddr, rport, rq, wq = sock
        cache = self.addrs.get(family)
        if cache is not None and self.np:   # the common case, inlined
            la = cache.get(laddr) or self.addr(family, laddr)
            name = f"{la}:{lport or '*'}"
            if rport or raddr != ZERO16:
                ra = cache.get(raddr) or self.addr(family, raddr)
                name = f"{name}->{ra}:{rport or '*'}"
        else:
            name = self.addr(family, laddr) + ":" + self.port(lport, proto)
            if rport or raddr != ZERO16:
                name += "->" + self.addr(family, raddr) + ":" + self.port(rport, proto)
        if self.plain:
            return name + SUFFIX_STATES.get(state, " (UNKNOWN)") if proto == 6 else name + " "
        info = self.info
        if not info:
            return name
        items = []
        if proto == 6 and "s" in info:
            items.append(TCP_STATE_NAMES.get(state, "UNKNOWN"))
        if "q" in info:
            items.append(f"QR={rq} QS={0 if proto == 6 and state == 10 else wq}")
        return name + (" (" + " ".join(items) + ")" if items else " ")

    def cells(self, fd: str, ino: int, sock: tuple) -> tuple:
        """The FD..NAME cells of an internet socket (mode u: see file())."""
        family, proto, state, laddr, lport, raddr, rport, rq, wq = sock
        if self.np and self.plain and family in self.addrs:   # -n -P style, inlined
            cache = self.addrs[family]
            la = cache.get(laddr) or self.addr(family, laddr)
            end = SUFFIX_STATES.get(state, " (UNKNOWN)") if proto == 6 else " "
            if rport or raddr != ZERO16:
                ra = cache.get(raddr) or self.addr(family, raddr)
                name = f"{la}:{lport or '*'}->{ra}:{rport or '*'}{end}"
            else:
                name = f"{la}:{lport or '*'}{end}"
        else:
            name = self.name(sock)
        return (fd, "u", " ", INET_TYPES.get(family, "inet"), str(ino), "0t0",
                PROTO_NAMES.get(proto, str(proto)), name)

    def file(self, fd: str, ino: int, sock: tuple) -> tuple:
        """A socket's descriptors are always open for reading and writing: mode u."""
        return (fd, "u", " ", INET_TYPES.get(sock[0], "inet"), str(ino), "0t0",
                PROTO_NAMES.get(sock[1], str(sock[1])), self.name(sock), "inet", sock)


def unix_file(fd: str, mode: str, ino: int, entry: tuple, opts) -> tuple:
    device, path, stype, state = entry
    name = (printable(path) + " " if path else "") + "type=" + stype
    if opts.tcp_info:
        name += " (" + state + ")" if "s" in opts.tcp_info else " "
    return (fd, mode, " ", "unix", device, "0t0", str(ino), name, "unix",
            path if path.startswith("/") else None)


def socket_file(t: Tables, base: str, dfd: int, fd: str, name: str, mode: str,
                ino: int) -> tuple:
    """Any socket descriptor, looked up in this namespace's tables like lsof does."""
    sock = t.inet.get(ino)
    if sock is not None:
        return t.fmt.file(fd, ino, sock)
    entry = t.unix.get(ino)
    if entry is not None:
        return unix_file(fd, mode, ino, entry, t.opts)
    entry = t.raw.get(ino)
    if entry is not None:
        return (fd, mode, " ", entry[0], "", "0t0", str(ino), entry[1], "other", None)
    entry = t.packet.get(ino)
    if entry is not None:
        return (fd, mode, " ", "pack", str(ino), "0t0", entry[0], entry[1], "other", None)
    try:
        proto = os.getxattr(f"{base}/fd/{name}", "system.sockprotoname")
        proto = proto.rstrip(b"\0").decode("ascii", "replace")
        label = "protocol: " + proto
    except OSError:
        label = "can't identify protocol"
    dev = t.devs.get("sock")
    if dev is None:
        try:
            dev = t.devs["sock"] = dev_text(os.stat(name, dir_fd=dfd).st_dev)
        except OSError:
            dev = ""
    return (fd, mode, " ", "sock", dev, "0t0", str(ino), label, "other", None)


# --- descriptors ----------------------------------------------------------------------

def _anon_name(link: str, info) -> str:
    name = link[len("anon_inode:"):]
    if name == "[eventfd]":
        fid = info().get("eventfd-id")
        return f"[eventfd:{fid}]" if fid else name
    if name == "[eventpoll]":
        tfds = sorted((t.split()[0] for t in info().get("tfd", [])), key=_num)
        return "[eventpoll:" + ",".join(tfds) + "]" if tfds else name
    if name == "[pidfd]":
        pid = info().get("Pid")
        return f"[pidfd:{pid}]" if pid else name
    return name


def _num(text: str) -> int:
    return int(text) if text.isdigit() else -1


def stat_cells(res: os.stat_result, offset) -> tuple[str, str, str, str]:
    """(type, device, size/offset, node) for a stat result; offset() gives the position."""
    mode = res.st_mode
    fmt = st.S_IFMT(mode)
    if fmt == st.S_IFREG:
        return "REG", dev_text(res.st_dev), str(res.st_size), str(res.st_ino)
    if fmt == st.S_IFDIR:
        return "DIR", dev_text(res.st_dev), str(res.st_size), str(res.st_ino)
    if fmt == st.S_IFCHR:
        return "CHR", dev_text(res.st_rdev), offset(), str(res.st_ino)
    if fmt == st.S_IFBLK:
        return "BLK", dev_text(res.st_rdev), offset(), str(res.st_ino)
    if fmt == st.S_IFIFO:
        return "FIFO", dev_text(res.st_dev), offset(), str(res.st_ino)
    if fmt == st.S_IFLNK:
        return "LINK", dev_text(res.st_dev), str(res.st_size), str(res.st_ino)
    if fmt == st.S_IFSOCK:
        return "sock", dev_text(res.st_dev), offset(), str(res.st_ino)
    return "unknown", dev_text(res.st_dev), str(res.st_size), str(res.st_ino)


def fd_file(t: Tables, pid: int, base: str, dfd: int, name: str) -> tuple | None:
    """The File for descriptor `name` of an open /proc/.../fd directory; None if it
    closed meanwhile."""
    fd = fd_text(name)
    try:
        link = os.readlink(name, dir_fd=dfd)
    except OSError as exc:
        if exc.errno == 2 or not t.opts.warn:
            return None
        return (fd, " ", " ", "unknown", "", "", "",
                f"{base}/fd/{name} (readlink: {exc.strerror})", "other", None)
    if link.startswith("socket:["):   # always open for reading and writing
        return socket_file(t, base, dfd, fd, name, "u", int(link[8:-1]))
    try:
        mode = mode_char(os.lstat(name, dir_fd=dfd).st_mode)
    except OSError:
        mode = " "
    cache: dict = {}

    def info():
        if not cache:
            cache.update(proc.fdinfo(base, name) or {"": ""})
        return cache

    def offset():
        pos = info().get("pos")
        return offset_text(int(pos)) if pos and pos.isdigit() else ""

    if link.startswith("pipe:["):
        dev = t.devs.get("pipe")
        if dev is None:
            try:
                dev = t.devs["pipe"] = dev_text(os.stat(name, dir_fd=dfd).st_dev)
            except OSError:
                return None
        return (fd, mode, " ", "FIFO", dev, "0t0", link[6:-1], "pipe", "other", None)
    try:
        res = os.stat(name, dir_fd=dfd)
    except OSError as exc:
        if exc.errno == 2 or not t.opts.warn:
            return None
        return (fd, mode, " ", "unknown", "", "", "",
                f"{printable(link)} (stat: {exc.strerror})", "other", None)
    if link.startswith("anon_inode:"):
        return (fd, mode, " ", "a_inode", dev_text(res.st_dev), str(res.st_size),
                str(res.st_ino), printable(_anon_name(link, info)), "file",
                (res.st_dev, res.st_ino))
    ftype, dev, size, node = stat_cells(res, offset)
    if link[:1] != "/" and link.endswith("]") and ":[" in link:
        link = link[:link.index(":[")]   # nsfs and the like: "net:[4026531833]" -> "net"
    lock = " "
    if ftype == "REG" and t.locks:
        lock = t.locks.get((pid, os.major(res.st_dev), os.minor(res.st_dev), res.st_ino), " ")
    return (fd, mode, lock, ftype, dev, size, node, printable(link), "file",
            (res.st_dev, res.st_ino))


def special_file(base: str, label: str, entry: str, warn: bool = True) -> tuple | None:
    """cwd, rtd or txt of /proc/PID (entry: cwd, root, exe). What cannot be read is an
    "unknown" line with the error, shown only when warnings are on (not with -w, -t)."""
    path = f"{base}/{entry}"
    try:
        link = os.readlink(path)
    except OSError as exc:
        if not warn:
            return None
        if exc.errno == 2:
            return (label, " ", " ", "unknown", "", "", "", path, "other", exc)
        return (label, " ", " ", "unknown", "", "", "",
                f"{path} (readlink: {exc.strerror})", "other", exc)
    try:
        res = os.stat(path)
    except OSError as exc:
        if not warn:
            return None
        return (label, " ", " ", "unknown", "", "", "",
                f"{printable(link)} (stat: {exc.strerror})", "other", exc)
    ftype, dev, size, node = stat_cells(res, lambda: "")
    return (label, " ", " ", ftype, dev, size, node, printable(link), "file",
            (res.st_dev, res.st_ino))


def mem_files(t: Tables, base: str, txt_key) -> list[tuple]:
    """The mem (and DEL) entries of /proc/PID/maps, each mapped file once."""
    mapped = proc.maps(base)
    if not mapped:
        return []
    out = []
    seen = set()
    if txt_key:
        seen.add((os.major(txt_key[0]), os.minor(txt_key[0]), txt_key[1]))
    for major, minor, ino, path in mapped:
        key = (major, minor, ino)
        if key in seen:
            continue
        seen.add(key)
        dev = f"{major},{minor}"
        if path.endswith(" (deleted)"):
            out.append(("DEL", " ", " ", "REG", dev, "", str(ino), printable(path[:-10]),
                         "file", (os.makedev(major, minor), ino)))
            continue
        res = t.stat(path)
        if isinstance(res, OSError):
            why = f" (stat: {res.strerror})" if t.opts.warn else ""
            out.append(("mem", " ", " ", "REG", dev, "", str(ino), printable(path) + why,
                        "file", (os.makedev(major, minor), ino)))
            continue
        ftype, sdev, size, node = stat_cells(res, lambda: "")
        if ftype not in ("REG", "DIR"):
            size = ""
        if res.st_ino != ino or (os.major(res.st_dev), os.minor(res.st_dev)) != (major, minor):
            sdev, node = dev, str(ino)
        out.append(("mem", " ", " ", ftype, sdev, size, node, printable(path), "file",
                    (os.makedev(major, minor), ino)))
    return out
