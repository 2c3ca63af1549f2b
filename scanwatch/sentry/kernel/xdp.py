"""XDP attachment that lives beside other XDP users (issue 14).

An interface has one XDP program per mode. Attaching blindly replaces whatever another
tool put there, and detaching with fd -1 removes whoever is there at exit. So: look at what
is attached first and refuse a program scanwatch did not attach unless told to replace it
(XDP_REPLACE); attach with UPDATE_IF_NOEXIST, or REPLACE + IFLA_XDP_EXPECTED_FD naming the
program seen, so a tool attaching at the same moment is never overwritten; detach with
REPLACE + EXPECTED_FD = our own program, so a program someone put in our place stays.
A program displaced with XDP_REPLACE is put back at exit.
Reading a program's name by id needs CAP_SYS_ADMIN, which the hardened unit does not
have: so the id scanwatch attached is also written to a record file (in STATE_DIR), and a
program whose id is recorded there is ours too (a daemon SIGKILLed under systemd left it).
"""
import ctypes as C
import errno
import os
import socket
import struct

from .bpfsys import _bpf, obj_info
from ...errors import KernelError

UPDATE_IF_NOEXIST, SKB_MODE, DRV_MODE, REPLACE = 1 << 0, 1 << 1, 1 << 2, 1 << 4
MODE_FLAG = {"native": DRV_MODE, "generic": SKB_MODE}
# IFLA_XDP_ATTACHED, as a number or as pyroute2 names it
ATTACHED = {1: "native", 2: "generic", 3: "offload", 4: "several modes",
            "xdp": "native", "xdpgeneric": "generic", "xdpoffload": "offload",
            "xdpmulti": "several modes"}
PROG_GET_FD_BY_ID = 13
# rtnetlink numbers (linux/rtnetlink.h, linux/if_link.h, linux/netlink.h)
RTM_SETLINK, NLMSG_ERROR, NLM_F_REQUEST, NLM_F_ACK, NLA_F_NESTED = 19, 2, 1, 4, 1 << 15
IFLA_XDP, IFLA_XDP_FD, IFLA_XDP_FLAGS, IFLA_XDP_EXPECTED_FD = 43, 1, 3, 8
OUR_NAME = "xdp_sentry"  # the program's name as bcc loads it (the C function's name)


class _ProgInfo(C.Structure):  # the head of struct bpf_prog_info, up to its name
    _fields_ = [("type", C.c_uint32), ("id", C.c_uint32), ("tag", C.c_uint8 * 8),
                ("jited_len", C.c_uint32), ("xlated_len", C.c_uint32),
                ("jited", C.c_uint64), ("xlated", C.c_uint64), ("load_time", C.c_uint64),
                ("uid", C.c_uint32), ("nr_map_ids", C.c_uint32), ("map_ids", C.c_uint64),
                ("name", C.c_char * 16)]


class _GetId(C.Structure):
    _fields_ = [("id", C.c_uint32), ("next_id", C.c_uint32), ("open_flags", C.c_uint32)]


class Present:
    """The XDP program an interface has now: id, mode, name (and an fd once opened)."""

    def __init__(self, prog_id, mode, name, recorded=False):
        self.prog_id, self.mode, self.name = prog_id, mode, name
        self.recorded = recorded  # its id is the one our record file names

    def ours(self):
        """A program scanwatch loaded (one a daemon that died left behind)."""
        return self.name == OUR_NAME or self.recorded

    def __str__(self):
        return f"XDP program '{self.name or '?'}' (id {self.prog_id}, {self.mode})"


def prog_fd(prog_id):
    return _bpf(PROG_GET_FD_BY_ID, _GetId(prog_id, 0, 0))


def prog_name(prog_id):
    try:
        fd = prog_fd(prog_id)
    except OSError:
        return ""  # gone meanwhile, or not ours to open
    try:
        return obj_info(fd, _ProgInfo()).name.decode(errors="replace")
    finally:
        os.close(fd)


def _index(ipr, ifname):
    idx = ipr.link_lookup(ifname=ifname)
    if not idx:
        raise KernelError(f"no such interface: {ifname}")
    return idx[0]


def _recorded(record):
    try:
        with open(record) as fh:
            return int(fh.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def _write_record(record, fd):
    if record:
        try:
            with open(record, "w") as fh:
                fh.write(f"{obj_info(fd, _ProgInfo()).id}\n")
        except OSError:
            pass  # only the next start's recognition of a leftover depends on it


def forget(record):
    try:
        os.unlink(record)
    except (OSError, TypeError):
        pass


def present(ifname, record=None):
    """What XDP program the interface has, or None."""
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        link = ipr.get_links(_index(ipr, ifname))[0]
    xdp = link.get_attr("IFLA_XDP")
    attached = xdp.get_attr("IFLA_XDP_ATTACHED") if xdp else 0
    if not attached:
        return None
    prog_id = xdp.get_attr("IFLA_XDP_PROG_ID") or 0
    for key in ("IFLA_XDP_DRV_PROG_ID", "IFLA_XDP_SKB_PROG_ID", "IFLA_XDP_HW_PROG_ID"):
        prog_id = prog_id or xdp.get_attr(key) or 0
    return Present(prog_id, ATTACHED.get(attached, str(attached)), prog_name(prog_id),
                   bool(record) and prog_id != 0 and prog_id == _recorded(record))


def set_fd(ifname, fd, flags, expected=None):
    """RTM_SETLINK with IFLA_XDP {FD, FLAGS[, EXPECTED_FD]}, built here rather than by
    pyroute2: Debian 12's pyroute2 (0.7.2, what the .deb depends on) encodes
    IFLA_XDP_FLAGS in 2 bytes and the kernel refuses it with ERANGE. OSError on failure."""
    try:
        index = socket.if_nametoindex(ifname)
    except OSError:
        raise KernelError(f"no such interface: {ifname}") from None
    xdp = struct.pack("=HHi", 8, IFLA_XDP_FD, fd) + struct.pack("=HHI", 8, IFLA_XDP_FLAGS, flags)
    if expected is not None:
        xdp += struct.pack("=HHi", 8, IFLA_XDP_EXPECTED_FD, expected)
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, 0, 0)  # struct ifinfomsg
    body += struct.pack("=HH", 4 + len(xdp), IFLA_XDP | NLA_F_NESTED) + xdp
    msg = struct.pack("=IHHII", 16 + len(body), RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        sock.send(msg + body)
        reply = sock.recv(65536)
    # the ACK is an NLMSG_ERROR whose error field (after the 16-byte header) is 0 or -errno
    if len(reply) >= 20 and struct.unpack_from("=H", reply, 4)[0] == NLMSG_ERROR:
        err = struct.unpack_from("=i", reply, 16)[0]
        if err:
            raise OSError(-err, os.strerror(-err))


def _code(err):
    return getattr(err, "code", None) or getattr(err, "errno", None)


class Attachment:
    """Our program on one interface: its mode and the program it displaced, if any."""

    def __init__(self, ifname, mode, displaced_fd=None, displaced=None):
        self.ifname, self.mode = ifname, mode
        self.displaced_fd, self.displaced = displaced_fd, displaced
        self.record = None  # the file naming our program's id (program.py sets it)


def attach(ifname, fd, replace=False, say=None, tries=3, record=None):
    """Attach program fd; returns an Attachment. Refuses (KernelError, one line) when a
    program scanwatch did not attach is there, unless `replace`. `say` gets the one line
    naming a program that was there and is being replaced. `record`: the file naming the
    program id we attach (see the module's docstring)."""
    att = _attach(ifname, fd, replace, say, tries, record)
    _write_record(record, fd)
    return att


def _attach(ifname, fd, replace, say, tries, record):
    cur = present(ifname, record)
    if cur is None:
        last = None
        for mode in ("native", "generic"):
            try:
                set_fd(ifname, fd, MODE_FLAG[mode] | UPDATE_IF_NOEXIST)
                return Attachment(ifname, mode)
            except OSError as err:
                if _code(err) in (errno.EBUSY, errno.EEXIST):  # someone attached meanwhile
                    return _again(ifname, fd, replace, say, tries, record)
                last = err
        raise KernelError(f"cannot attach XDP to {ifname}: {last}") from last
    if cur.mode not in MODE_FLAG:
        raise KernelError(f"{ifname}: {cur} is already attached; scanwatch cannot share "
                          f"or replace a program in that mode")
    if not cur.ours() and not replace:
        raise KernelError(f"{ifname}: {cur} is already attached and scanwatch did not "
                          f"attach it; not replacing it (XDP_REPLACE=1 takes the interface "
                          f"over and puts it back at exit)")
    try:
        old = prog_fd(cur.prog_id)
    except OSError as err:  # detached meanwhile: start again
        if err.errno == errno.ENOENT:
            return _again(ifname, fd, replace, say, tries, record)
        if cur.ours() and err.errno == errno.EPERM:
            # our own leftover, and no CAP_SYS_ADMIN to open it by id: replace whatever is
            # there now (the look above was a moment ago; nothing is put back for ours)
            if say:
                say(f"{ifname}: replacing {cur}, left by an earlier scanwatch")
            try:
                set_fd(ifname, fd, MODE_FLAG[cur.mode])
            except OSError as err2:
                raise KernelError(f"cannot attach XDP to {ifname}: {err2}") from err2
            return Attachment(ifname, cur.mode)
        raise KernelError(f"{ifname}: cannot open {cur}: {err.strerror}") from err
    if say:
        say(f"{ifname}: replacing {cur}"
            + (", left by an earlier scanwatch" if cur.ours() else "; it is put back at exit"))
    try:
        set_fd(ifname, fd, MODE_FLAG[cur.mode] | REPLACE, expected=old)
    except Exception as err:
        os.close(old)
        if _code(err) == errno.EEXIST:  # it changed between our look and our replace
            return _again(ifname, fd, replace, say, tries, record)
        raise KernelError(f"cannot attach XDP to {ifname}: {err}") from err
    if cur.ours():
        os.close(old)
        return Attachment(ifname, cur.mode)
    return Attachment(ifname, cur.mode, old, str(cur))


def _again(ifname, fd, replace, say, tries, record):
    """Another tool changed the interface between our look and our change: look again."""
    if tries <= 1:
        raise KernelError(f"cannot attach XDP to {ifname}: its XDP program keeps changing")
    return _attach(ifname, fd, replace, say, tries - 1, record)


def detach(att, fd):
    """Remove our program (fd) from att.ifname only if it is still the one there, putting
    back a program it displaced. Returns None, or one line saying what was left alone."""
    flags = MODE_FLAG[att.mode] | REPLACE
    put = att.displaced_fd if att.displaced_fd is not None else -1
    try:
        set_fd(att.ifname, put, flags, expected=fd)
        note = None
    except Exception as err:
        code = _code(err)
        if code == errno.EEXIST:
            cur = present(att.ifname)
            note = (f"{att.ifname}: {cur or 'another XDP program'} took scanwatch's place; "
                    f"left attached")
        elif code == errno.ENODEV or isinstance(err, KernelError):
            note = None  # the interface is gone, and our program with it
        else:
            note = f"{att.ifname}: cannot detach scanwatch's XDP program: {err}"
    finally:
        if att.displaced_fd is not None:
            os.close(att.displaced_fd)
            att.displaced_fd = None
    return note
