"""Which processes and files a listing shows, with lsof's rules.

Exclusions (^PID, ^user, ^command) drop a process first. The selections are ORed
(AND with -a): process selections (-p, -u, -c) pick every file of a process, file
selections (-i, -U, -d, names, +d/+D) pick single files. Without any selection everything
is listed, tasks too. -s TCP:... filters TCP files wherever they appear. Search items
(PIDs, commands, -i hosts/ports, names) that find nothing make the exit status 1.
"""
from __future__ import annotations

import os
import _socket as socket  # the C module: socket.py and its enums cost 2 ms to import

from . import files as F
from . import names, proc


class Listing:
    """What one pass found: groups of rows, one per process (or task), as
    ((command, pid, tid, taskcmd, user), [(fd, mode, lock, type, device, size, node,
    name), ...]); the PIDs listed, in order; the search items that found nothing."""

    def __init__(self):
        self.groups: list[tuple] = []
        self.pids: list[int] = []
        self.missing: list[str] = []   # search items that found nothing
        self.tables = None              # the socket tables read (field output's TST=)

    @property
    def status(self) -> int:
        """lsof's exit status: 1 when a search item found nothing (not when nothing was
        listed: `lsof -u daemon` with no such process exits 0)."""
        return 1 if self.missing else 0


PROTOS = {6: "TCP", 17: "UDP", 136: "UDPLITE"}


def inet_matches(spec, sock) -> bool:
    """Whether a Sock matches one -i address; host and port must match on the same side.
    A v4-mapped IPv6 address counts as IPv4 here, as lsof shows it."""
    family, proto, state, laddr, lport, raddr, rport = sock[:7]
    if spec.version is not None:
        v4 = family == socket.AF_INET or laddr[:12] == F.MAPPED
        if spec.version != (4 if v4 else 6):
            return False
    if spec.proto is not None and spec.proto != PROTOS.get(proto):
        return False
    sides = ((laddr, lport), (raddr, rport))
    for addr, port in sides:
        if spec.addrs and not _addr_in(family, addr, spec.addrs):
            continue
        if spec.ports and not any(lo <= port <= hi for lo, hi in spec.ports):
            continue
        return True
    return False


def _addr_in(family: int, addr: bytes, addrs) -> bool:
    if family == socket.AF_INET6 and addr[:12] == F.MAPPED:
        return (socket.AF_INET, addr[12:] + bytes(12)) in addrs
    return (family, addr) in addrs


class Selector:
    """One listing pass over /proc under the options."""

    def __init__(self, opts, warn=lambda msg: None):
        self.o = opts
        self.warn = warn
        self.targets = None
        if opts.files or opts.dirs:
            from .targets import Targets
            self.targets = Targets(opts, warn)
        self._stats: dict = {}

    # -- per file ------------------------------------------------------------------

    def _inet_hit(self, sock, found) -> bool:
        """Whether an internet socket is in the -i selection (noting what it found)."""
        o = self.o
        if o.inet_version not in (None, 4 if sock[0] == socket.AF_INET else 6):
            return False
        if not o.inet_specs:
            found.add(("i", "any"))
            return True
        ok = False
        for i, spec in enumerate(o.inet_specs):
            if inet_matches(spec, sock):
                ok = True
                found.add(("i", i))
        return ok

    def _file_hits(self, f, found) -> list[bool]:
        o = self.o
        hits = []
        if o.inet:
            hits.append(f[8] == "inet" and self._inet_hit(f[9], found))
        if o.unix:
            hits.append(f[8] == "unix")
        if o.fds:
            hits.append(_fd_in(f[0], o.fds))
        if o.xfds:
            hits.append(not _fd_in(f[0], o.xfds))
        if self.targets is not None:
            key = f[9] if f[8] == "file" else self._unix_key(f)
            idx = self.targets.match(key)
            if idx is not None:
                found.add(("f", idx) if idx >= 0 else ("d", key))
            hits.append(idx is not None)
        return hits

    def _unix_key(self, f):
        """A UNIX socket bound to a path matches that path's file."""
        if f[8] != "unix" or not f[9]:
            return None
        res = self._stats.get(f[9])
        if res is None:
            try:
                st = os.stat(f[9])
                res = (st.st_dev, st.st_ino)
            except OSError:
                res = ()
            self._stats[f[9]] = res
        return res or None

    def _keep(self, f, found) -> bool:
        """The filter that applies to every listed file: -s TCP:states."""
        return f[8] != "inet" or self._state_ok(f[9], found)

    def _state_ok(self, sock, found) -> bool:
        o = self.o
        if o.tcp_states or o.xtcp_states:
            if o.tcp_states and (sock[1] != 6 or sock[2] not in o.tcp_states):
                return False
            if sock[1] == 6 and sock[2] in o.xtcp_states:
                return False
            if o.tcp_states:
                found.add(("s",))
        return True

    def _name(self, f) -> tuple:
        """A file matched by a name argument shows the name as given."""
        if self.targets is not None and f[8] == "file":
            idx = self.targets.exact.get(f[9])
            if idx is not None and self.targets.names[idx] is not None:
                return f[:7] + (F.printable(self.targets.names[idx]),) + f[8:]
        return f

    # -- per process ---------------------------------------------------------------

    def run(self) -> Listing:
        o = self.o
        out = Listing()
        t = out.tables = F.Tables(o)
        found: set = set()
        any_sel = o.process_selection or o.file_selection
        file_sel = o.file_selection
        # -i and/or -U alone: only sockets need looking at (with -a, not both at once)
        sock_only = (file_sel and not (o.fds or o.xfds or o.files or o.dirs)
                     and not (o.and_ and o.inet and o.unix) and o.fields is None)
        tasks = not any_sel
        if o.and_ and o.pids:
            candidates = sorted(o.pids)
        else:
            candidates = proc.list_pids()
        forked: object = ()
        if sock_only and not (o.and_ and o.process_selection):
            from . import parallel
            if parallel.worth_it(len(candidates)):
                # a child walks the later 60% while this process reads the socket tables
                forked = parallel.Forked(socket_links, candidates[len(candidates) * 2 // 5:])
        try:
            self._walk(out, t, found, candidates, forked, any_sel, file_sel, sock_only, tasks)
        finally:
            if forked:
                forked.close()
        self._missing(out, found)
        return out

    def _walk(self, out, t, found, candidates, forked, any_sel, file_sel, sock_only, tasks):
        o = self.o
        for pid in candidates:
            if pid in o.xpids:
                continue
            base = f"/proc/{pid}"
            uid = comm = None
            if o.uids or o.xuids:
                uid = proc.owner(base)
                if uid is None or uid in o.xuids:
                    continue
            if o.cmds or o.xcmds or tasks:
                comm = proc.read_comm(base)
                if comm is None:
                    continue
                if o.xcmds and any(_cmd_match(m, comm) for m in o.xcmds):
                    continue
            if pid in o.pids:
                if uid is None:
                    uid = proc.owner(base)
                    if uid is None:
                        continue  # no such process
                found.add(("p", pid))  # found even if -a then rejects it, as lsof
            hits = []
            if o.pids:
                hits.append(pid in o.pids)
            if o.uids:
                hits.append(uid in o.uids)
            if o.cmds:
                matched = [i for i, m in enumerate(o.cmds) if _cmd_match(m, comm)]
                hits.append(bool(matched))
            if o.and_:
                if not all(hits):
                    continue
                full = not file_sel
            else:
                full = any(hits) or not any_sel
                if not full and not file_sel:
                    continue
            if o.cmds:
                found.update(("c", i) for i in matched)
            if full or not sock_only:
                listed = self._all_files(t, pid, base)
                if listed is None:
                    continue  # gone
                rows = self._cut(self._rows(listed, full, found))
            else:
                links = forked.get(pid) if pid in forked else socket_links(pid)
                if links is None:
                    continue  # gone
                rows = self._socket_files(t, links, found)
            if rows:
                if o.terse:
                    out.pids.append(pid)
                    continue
                if comm is None:
                    comm = proc.read_comm(base)
                if uid is None:
                    uid = proc.owner(base)
                if comm is None or uid is None:
                    continue  # gone meanwhile
                out.pids.append(pid)
                out.groups.append(((comm, str(pid), "", "", self._user(uid)), rows))
            if tasks:
                for tid in proc.list_tasks(pid):
                    if tid == pid:
                        continue
                    tbase = f"{base}/task/{tid}"
                    tcomm = proc.read_comm(tbase)
                    if tcomm is None:
                        continue
                    trows = self._rows(self._all_files(t, pid, tbase), True, found) or []
                    if trows:
                        if uid is None:
                            uid = proc.owner(base)
                        user = self._user(uid)
                        out.groups.append(((comm, str(pid), str(tid), tcomm, user),
                                           self._cut(trows)))

    def _cut(self, rows):
        """The eight cells a listing prints; field output (-F) keeps kind and key."""
        return rows if self.o.fields is not None else [f[:8] for f in rows]

    def _rows(self, listed, full, found):
        if listed is None:
            return None
        o = self.o
        and_ = o.and_
        rows = []
        search = full and (o.inet or self.targets is not None)
        for f in listed:
            if not self._keep(f, found):
                continue
            if not full:
                hits = self._file_hits(f, found)
                if not (all(hits) if and_ else any(hits)):
                    continue
            elif search:
                self._file_hits(f, found)
            rows.append(self._name(f) if self.targets is not None else f)
        return rows

    def _user(self, uid) -> str:
        if uid is None:
            return ""
        if not self.o.numeric_uid:
            name = names.user(uid)
            if name is not None:
                return name
            self.warn(f"no pwd entry for UID {uid}")
        return "%8d" % uid

    def _missing(self, out: Listing, found: set) -> None:
        """Search items that found nothing, worded as lsof -V reports them."""
        o = self.o
        miss = out.missing
        miss += [f"command not located: {c if isinstance(c, str) else c.pattern}"
                 for i, c in enumerate(o.cmds) if ("c", i) not in found]
        # lsof 4.95 counts a -c ^exclusion as a search item that is never found
        miss += [f"command not located: ^{c if isinstance(c, str) else c.pattern}"
                 for c in o.xcmds]
        if self.targets is not None:
            miss += [f"no file use located: {n}" for i, n in enumerate(self.targets.labels)
                     if ("f", i) not in found]
            if any(("d", key) not in found for key in self.targets.tree):
                miss.append("no file use located under: "
                            + ", ".join(p for p, _ in self.o.dirs))
        miss += [f"Internet address not located: {s.text}"
                 for i, s in enumerate(o.inet_specs) if ("i", i) not in found]
        if o.inet and not o.inet_specs and ("i", "any") not in found:
            miss.append("no Internet files located")
        if o.tcp_states and ("s",) not in found:
            miss.append("no TCP files in the selected states located")
        miss += [f"process ID not located: {p}" for p in sorted(o.pids)
                 if ("p", p) not in found]

    # -- file enumeration ----------------------------------------------------------

    def _socket_files(self, t, links, found):
        """The fast path for -i / -U alone: the FD..NAME cells of the selected sockets
        among a process's socket descriptors (from socket_links)."""
        o = self.o
        out = []
        append = out.append
        inet = t.inet if o.inet else {}
        unix = t.unix if o.unix else {}
        fmt = t.fmt
        plain = not (o.inet_specs or o.inet_version or o.tcp_states or o.xtcp_states)
        for name, ino in links:
            sock = inet.get(ino)
            if sock is not None:
                fd = name if len(name) <= 4 else F.fd_text(name)
                if plain:
                    found.add(("i", "any"))
                    if o.terse:
                        return [None]  # -t only needs to know
                    append(fmt.cells(fd, ino, sock))
                    continue
                if self._state_ok(sock, found) and self._inet_hit(sock, found):
                    append(fmt.cells(fd, ino, sock))
            elif ino in unix:
                fd = name if len(name) <= 4 else F.fd_text(name)
                append(F.unix_file(fd, "u", ino, unix[ino], o)[:8])
        return out

    def _all_files(self, t, pid, base):
        """Every open file: cwd, rtd, txt, mem/DEL, then each descriptor. None for a
        process that has gone (or is a zombie)."""
        warn = self.o.warn
        cwd = F.special_file(base, "cwd", "cwd", True)
        rtd = F.special_file(base, "rtd", "root", True)
        if (cwd[3] == "unknown" and rtd[3] == "unknown" and isinstance(cwd[9], OSError)
                and cwd[9].errno == 2 and rtd[9].errno == 2):
            return None  # gone, or a zombie: lsof lists nothing
        txt = F.special_file(base, "txt", "exe", warn)
        out = [f for f in (cwd, rtd, txt) if f is not None and (warn or f[3] != "unknown")]
        out += F.mem_files(t, base, txt[9] if txt is not None and txt[8] == "file" else None)
        dfd, err = proc.open_dir_error(base + "/fd")
        if dfd is None:
            if err is not None and err.errno != 2 and warn:
                out.append(("NOFD", " ", " ", "", "", "", "",
                            f"{base}/fd (opendir: {err.strerror})", "other", None))
            return out
        try:
            for name in proc.fd_names(dfd):
                f = F.fd_file(t, pid, base, dfd, name)
                if f is not None:
                    out.append(f)
        finally:
            os.close(dfd)
        return out


def socket_links(pid: int):
    """[(fd name, socket inode)] of a process, or None when it has gone."""
    dfd, err = proc.open_dir_error(f"/proc/{pid}/fd")
    if dfd is None:
        return None if err is not None and err.errno == 2 else []
    out = []
    readlink = os.readlink
    try:
        for name in proc.fd_names(dfd):
            try:
                link = readlink(name, dir_fd=dfd)
            except OSError:
                continue
            if link[:8] == "socket:[":
                out.append((name, int(link[8:-1])))
    finally:
        os.close(dfd)
    return out


def _cmd_match(m, comm: str) -> bool:
    if isinstance(m, str):
        return comm.startswith(m)
    return m.search(comm) is not None


def _fd_in(fd: str, entries) -> bool:
    num = int(fd) if fd.isdigit() else None
    for e in entries:
        if e[0] == "name":
            if e[1] == fd:
                return True
        elif num is not None and e[1] <= num <= e[2]:
            return True
    return False
