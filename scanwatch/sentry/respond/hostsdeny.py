"""Safe edits of /etc/hosts.deny: only scanwatch's own lines are ever added or removed.

scanwatch remembers, in a small JSON state file, the exact line it wrote for each
address. Every edit runs under an exclusive flock on `<state_path>.lock`, re-reads the
file, writes the whole new content to a temp file in the same directory, fsyncs it and
renames it over the original, so a reader (tcpd, sshd, an admin's editor) sees either
the old or the new file, never a half-written one. Bytes scanwatch did not write are
copied through untouched: comments, CRLF endings, a missing final newline.
"""
import fcntl
import ipaddress
import json
import os
import tempfile

from ...errors import StateError
from ..ignore import prefix_net
from ..state import open_nofollow
from .records import _make_dirs, fsync_dir


def _key(addr):
    """Canonical address text used as the state key (IPv4-mapped IPv6 -> IPv4); an IPv6
    prefix block's is its network ("2001:db8::/64", issue 14)."""
    if isinstance(addr, str) and "/" in addr:
        return str(prefix_net(addr))
    ip = ipaddress.ip_address(addr)
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ip)


def _check_line(line):
    if not isinstance(line, str) or not line.strip() or any(c in line for c in "\r\n\0"):
        raise ValueError(f"{line!r} is not a single hosts.deny line")
    return line


def _split(data):
    """File bytes -> [(content, b"\n" or b"")], losslessly: b"".join(c + t) == data.
    Only LF ends a line (as for tcpd); a CRLF line keeps its CR in the content."""
    out = [(chunk, b"\n") for chunk in data.split(b"\n")]
    last = out.pop()[0]  # the text after the final LF (b"" if the file ends with one)
    if last:
        out.append((last, b""))
    return out


def _present(entries):
    # a CRLF copy of a line counts as the same line: never add a duplicate of it
    return {c[:-1] if c.endswith(b"\r") else c for c, _ in entries}


def _atomic_write(path, data, like=None, default_mode=0o644):
    """Replace `path` with `data`: temp file in the same directory, fsync, rename, fsync
    the directory. The new file gets `like`'s mode and owner (an os.stat_result)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".")
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if like is not None:
                if (like.st_uid, like.st_gid) != (os.geteuid(), os.getegid()):
                    os.fchown(fd, like.st_uid, like.st_gid)
                os.fchmod(fd, like.st_mode & 0o7777)
            else:
                os.fchmod(fd, default_mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(directory)


class HostsDeny:
    """hosts.deny editor that owns only the lines it wrote (see the module docstring)."""

    def __init__(self, path, state_path):
        self.path = path
        self.state_path = state_path
        self.lock_path = state_path + ".lock"
        self._joined = set()  # loaded with the state, under the lock

    # --- locking and state ---------------------------------------------------------

    def _locked(self, fn):
        try:
            _make_dirs(os.path.dirname(os.path.abspath(self.state_path)))
            fd = open_nofollow(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        except OSError as err:
            raise StateError(f"{self.lock_path}: cannot open lock file: {err.strerror}") from err
        try:
            # flock, not lockf: it is per open file, so threads of one process exclude
            # each other too, and closing some other fd never drops it
            fcntl.flock(fd, fcntl.LOCK_EX)
            return fn()
        finally:
            os.close(fd)

    def _load(self):
        self._joined = set()
        try:
            fd = open_nofollow(self.state_path, os.O_RDONLY | os.O_CLOEXEC)
            with os.fdopen(fd, encoding="utf-8") as f:
                raw = json.load(f)
        except FileNotFoundError:
            return {}
        except OSError as err:
            raise StateError(f"{self.state_path}: cannot read: {err.strerror}") from err
        except ValueError as err:
            # refuse rather than guess: a wrong guess would delete an admin's line
            raise StateError(f"{self.state_path}: corrupt hosts.deny state: {err}") from err
        lines = raw.get("lines") if isinstance(raw, dict) else None
        joined = raw.get("joined", []) if isinstance(raw, dict) else None
        if not isinstance(lines, dict) or not isinstance(joined, list) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in lines.items()):
            raise StateError(f"{self.state_path}: corrupt hosts.deny state")
        self._joined = {k for k in joined if k in lines}
        return lines

    def _save(self, lines):
        # "joined": addresses whose line went in as b"\n" + line (see add)
        joined = sorted(k for k in self._joined if k in lines)
        data = json.dumps({"version": 1, "hosts_deny": self.path, "lines": lines,
                           "joined": joined}, sort_keys=True, indent=1).encode() + b"\n"
        try:
            _atomic_write(self.state_path, data, default_mode=0o600)
        except OSError as err:
            raise StateError(f"{self.state_path}: cannot write: {err.strerror}") from err

    # --- the hosts.deny file ---------------------------------------------------------

    def _target(self):
        # edit the file a symlink points at; renaming over the link would replace it
        return os.path.realpath(self.path)

    def _read(self):
        target = self._target()
        try:
            with open(target, "rb") as f:
                return f.read(), os.fstat(f.fileno())
        except FileNotFoundError:
            return b"", None
        except OSError as err:
            raise StateError(f"{self.path}: cannot read: {err.strerror}") from err

    def _write(self, data, st):
        try:
            _atomic_write(self._target(), data, like=st)
        except OSError as err:
            raise StateError(f"{self.path}: cannot write: {err.strerror}") from err

    @staticmethod
    def _drop(entries, line, joined):
        """Remove the last entry whose content is `line`; True if one was removed."""
        want = line.encode("utf-8")
        for i in range(len(entries) - 1, -1, -1):
            if entries[i][0] == want:
                if joined and not entries[i][1] and i > 0:
                    # we wrote b"\n" + line after a last line that had no newline, and
                    # ours is still last: that line gets its missing newline back
                    entries[i - 1] = (entries[i - 1][0], b"")
                del entries[i]
                return True
        return False

    # --- public API -------------------------------------------------------------------

    def add(self, addr, line):
        """Append `line` for `addr`. False (nothing written) if scanwatch already has a
        line for this address or an identical line is already in the file."""
        key, line = _key(addr), _check_line(line)

        def op():
            owned = self._load()
            data, st = self._read()
            present = _present(_split(data))
            mine = owned.get(key)
            if mine is not None and mine.encode("utf-8") in present:
                return False
            if line.encode("utf-8") in present:
                if mine is not None:  # stale entry (its line was removed by hand)
                    del owned[key]
                    self._save(owned)
                return False
            owned[key] = line
            if data and not data.endswith(b"\n"):
                # the last line has no newline; adding one would change a byte that is
                # not ours, so ours goes after a separator we own and remove with it
                new = data + b"\n" + line.encode("utf-8")
                self._joined.add(key)
            else:
                new = data + line.encode("utf-8") + b"\n"
                self._joined.discard(key)
            # state first: a crash between the two writes leaves a stale entry (which is
            # harmless), never a scanwatch line that nothing remembers to remove
            self._save(owned)
            try:
                self._write(new, st)
            except StateError:
                del owned[key]
                self._save(owned)
                raise
            return True

        return self._locked(op)

    def remove(self, addr):
        """Remove scanwatch's line for `addr`; True if a line left the file."""
        return bool(self._remove([_key(addr)]))

    def remove_all(self):
        """Remove every line scanwatch wrote; returns the addresses whose line was removed."""
        return self._remove(None)

    def _remove(self, keys):
        def op():
            owned = self._load()
            wanted = list(owned) if keys is None else [k for k in keys if k in owned]
            if not wanted:
                return []
            data, st = self._read()
            entries = _split(data)
            removed = [k for k in wanted if self._drop(entries, owned[k], k in self._joined)]
            if removed:
                # file first: a crash before the state write leaves a stale entry only
                self._write(b"".join(c + t for c, t in entries), st)
            for k in wanted:
                del owned[k]
            self._save(owned)
            return removed

        return self._locked(op)

    def owned(self):
        """{address: line} for every line scanwatch believes it wrote."""
        return dict(self._locked(self._load))
