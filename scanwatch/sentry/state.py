"""The block table on disk: a snapshot plus an append-only journal in STATE_DIR.

Each block or unblock is one fsynced journal line, so a kill -9 loses nothing that was
applied; the snapshot is rewritten (temp file, fsync, rename) at start and stop.
Files are created 0600 and never opened through a symlink (O_NOFOLLOW).
"""
import contextlib
import dataclasses
import errno
import gc
import json
import os

from ..errors import SetupError, StateError
from .ignore import fast_key, prefix_net
from .model import BLOCK_FIELDS, BlockEntry

SNAPSHOT, JOURNAL = "blocks.json", "blocks.journal"
# Snapshot version 2: {"format", "version", "fields": [...], "rows": [[...], ...]}, one
# list per block in `fields` order; parsing it takes a quarter of the time of version 1
# (a list of dicts, still read). Fields are matched by name, so adding one later is safe.
FORMAT, VERSION = "scanwatch-blocks", 2
# A running daemon folds the journal into the snapshot after this many records, so a
# long attack does not grow it without end (each record is one block or unblock).
JOURNAL_MAX = 10000
_DEFAULTS = {name: f.default for name, f in BlockEntry.__dataclass_fields__.items()
             if f.default is not dataclasses.MISSING}
_DEFAULTS["ports"] = _DEFAULTS["modes"] = None  # default_factory: a fresh list per entry
FLAGS = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


def open_nofollow(path, flags, mode=0o600):
    """os.open that never goes through a symlink: one planted where scanwatch keeps its
    own file is removed (unlinking a link never touches its target), then the open is
    retried, so the daemon keeps working and the target stays as it was."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW, mode)
    except OSError as err:
        if err.errno != errno.ELOOP:
            raise
    os.unlink(path)
    return os.open(path, flags | os.O_NOFOLLOW, mode)


def _open(path, flags, what):
    try:
        return open_nofollow(path, flags)
    except OSError as err:
        hint = " (a symlink? scanwatch does not follow them here)" if err.errno == 40 else ""
        raise StateError(f"{path}: cannot {what}: {err.strerror}{hint}") from err


def _same_file(fd, path):
    try:
        a, b = os.fstat(fd), os.lstat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _write_all(fd, data, path):
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as err:
        raise StateError(f"{path}: cannot write: {err.strerror}") from err


class BlockStore:
    def __init__(self, state_dir):
        self.snapshot = os.path.join(state_dir, SNAPSHOT)
        self.journal = os.path.join(state_dir, JOURNAL)
        self._fd = None
        self.appended = 0  # journal records since the last compact()

    def load(self):
        """Entries as last recorded: the snapshot, then the journal replayed over it.
        A snapshot row that is not a block is an error naming it; a journal record that
        is not one (a torn last line after kill -9) is skipped and counted."""
        self.skipped = 0
        with gc_paused():
            table = {}
            for i, row in enumerate(_snapshot_rows(_read_json(self.snapshot, default=[]),
                                                   self.snapshot)):
                problem = _check(row)
                if problem:
                    raise StateError(f"{self.snapshot}: block {i + 1}: {problem}")
                table[row[_AT["addr"]]] = row
            for rec in _read_journal(self.journal):
                if rec.get("op") == "add":
                    row = _from_record(rec.get("entry"))
                    if row is None or _check(row):
                        self.skipped += 1
                        continue
                    table[row[_AT["addr"]]] = row
                elif rec.get("op") == "del":
                    table.pop(rec.get("addr"), None)
            return [BlockEntry(*row) for row in table.values()]

    def add(self, entry):
        self._append({"op": "add", "entry": entry.record()})

    def remove(self, addr):
        self._append({"op": "del", "addr": addr})

    def _append(self, record):
        if self._fd is not None and not _same_file(self._fd, self.journal):
            os.close(self._fd)  # replaced or removed under us: write to the path again
            self._fd = None
        if self._fd is None:
            self._fd = _open(self.journal, FLAGS | os.O_APPEND, "append to")
        _write_all(self._fd, (json.dumps(record) + "\n").encode(), self.journal)
        self.appended += 1

    def journal_full(self):
        return self.appended >= JOURNAL_MAX

    def compact(self, entries):
        """Write the whole table as the snapshot and start an empty journal."""
        tmp = f"{self.snapshot}.tmp"
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise StateError(f"{tmp}: {err.strerror}") from err
        fd = _open(tmp, FLAGS | os.O_EXCL, "create")
        try:
            with gc_paused():
                data = json.dumps({"format": FORMAT, "version": VERSION, "fields": BLOCK_FIELDS,
                                   "rows": [e.row() for e in entries]}, separators=(",", ":"))
            _write_all(fd, data.encode(), tmp)
        finally:
            os.close(fd)
        try:
            os.replace(tmp, self.snapshot)
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            try:  # a new empty journal; unlinking first drops any planted symlink
                os.unlink(self.journal)
            except FileNotFoundError:
                pass
            os.close(_open(self.journal, FLAGS | os.O_EXCL, "create"))
            self.appended = 0
            dfd = os.open(os.path.dirname(self.snapshot) or ".", os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as err:
            raise StateError(f"{self.snapshot}: {err.strerror}") from err

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@contextlib.contextmanager
def gc_paused():
    """No cyclic GC while building many objects: each collection would rescan all the
    blocks built so far (json.loads of 100,000 blocks takes 0.9 s with it, 0.15 s
    without). On the way out the survivors are frozen (gc.freeze), or the first
    collection after would scan them all at once; none of them form cycles, and
    reference counting still frees them."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.freeze()
            gc.enable()


def _snapshot_rows(data, path):
    """Rows in BLOCK_FIELDS order from a snapshot of either version."""
    if isinstance(data, list):  # version 1
        return list(map(_from_record, data))
    if not isinstance(data, dict) or data.get("format") != FORMAT \
            or not isinstance(data.get("fields"), list) or not isinstance(data.get("rows"), list):
        raise StateError(f"{path}: not a scanwatch block table")
    if data.get("version") != VERSION:
        raise StateError(f"{path}: block table version {data.get('version')!r}, this scanwatch "
                         f"reads {VERSION}")
    fields, rows = data["fields"], data["rows"]
    if tuple(fields) == BLOCK_FIELDS:
        return [r if isinstance(r, list) and len(r) == len(fields) else None for r in rows]
    return [_from_record(dict(zip(fields, r)) if isinstance(r, list) else None) for r in rows]


def _from_record(rec):
    """A {field: value} record as a row; None if it is not a dict or lacks a field."""
    if not isinstance(rec, dict):
        return None
    row = []
    for name in BLOCK_FIELDS:
        value = rec.get(name, _DEFAULTS.get(name, dataclasses.MISSING))
        if value is dataclasses.MISSING:
            return None
        row.append([] if value is None and name in ("ports", "modes") else value)
    return row


_NUM = (int, float)
_AT = {name: i for i, name in enumerate(BLOCK_FIELDS)}


def _is_prefix_block(addr):
    """An IPv6 prefix block as the policy writes it, "2001:db8::/64" (issue 14)."""
    try:
        return isinstance(addr, str) and "/" in addr and str(prefix_net(addr)) == addr
    except ValueError:
        return False


def _check(row):
    """Why a row cannot be a block, or "" (the fields the daemon relies on)."""
    if row is None:
        return "not a block record"
    addr, since, expires = row[_AT["addr"]], row[_AT["since"]], row[_AT["expires"]]
    if fast_key(addr) is None and not _is_prefix_block(addr):
        return f"bad address {addr!r}"
    if type(since) not in _NUM or not (expires is None or type(expires) in _NUM):
        return "bad since/expires"
    if type(row[_AT["port"]]) is not int or row[_AT["level"]] not in (0, 1, 2) \
            or type(row[_AT["offences"]]) is not int:
        return "bad port, level or offences"
    return ""


def _read_json(path, default):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return default
    except OSError as err:
        raise StateError(f"{path}: cannot read: {err.strerror}") from err
    with os.fdopen(fd, "rb") as fh, gc_paused():
        try:
            return json.loads(fh.read() or b"[]")
        except ValueError as err:
            raise StateError(f"{path}: not a scanwatch block table ({err})") from err


def _read_journal(path):
    """Journal records; a torn last line (kill -9 mid-write) is skipped, never fatal."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    except OSError as err:
        raise StateError(f"{path}: cannot read: {err.strerror}") from err
    rows = []
    with os.fdopen(fd, "rb") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def probe_writable(directory, mode):
    """Create the directory if needed and prove a file can be written there, so a
    read-only or full disk is one error line before anything is attached or changed."""
    try:
        os.makedirs(directory, mode=mode, exist_ok=True)
        probe = os.path.join(directory, f".scanwatch-probe-{os.getpid()}")
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise SetupError(f"{directory}: not writable: {err.strerror}") from err
