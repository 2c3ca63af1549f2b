"""The block table on disk: a snapshot plus an append-only journal in STATE_DIR.

Each block or unblock is one fsynced journal line, so a kill -9 loses nothing that was
applied; the snapshot is rewritten (temp file, fsync, rename) at start and stop.
Files are created 0600 and never opened through a symlink (O_NOFOLLOW).
"""
import errno
import json
import os

from .errors import StateError
from .model import BlockEntry

SNAPSHOT, JOURNAL = "blocks.json", "blocks.journal"
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

    def load(self):
        """Entries as last recorded: the snapshot, then the journal replayed over it."""
        table = {}
        for row in _read_json(self.snapshot, default=[]):
            table[row["addr"]] = row
        for row in _read_journal(self.journal):
            if row.get("op") == "add":
                table[row["entry"]["addr"]] = row["entry"]
            elif row.get("op") == "del":
                table.pop(row.get("addr"), None)
        fields = BlockEntry.__dataclass_fields__
        return [BlockEntry(**{k: v for k, v in row.items() if k in fields})
                for row in table.values()]

    def add(self, entry):
        self._append({"op": "add", "entry": entry.__dict__})

    def remove(self, addr):
        self._append({"op": "del", "addr": addr})

    def _append(self, record):
        if self._fd is not None and not _same_file(self._fd, self.journal):
            os.close(self._fd)  # replaced or removed under us: write to the path again
            self._fd = None
        if self._fd is None:
            self._fd = _open(self.journal, FLAGS | os.O_APPEND, "append to")
        _write_all(self._fd, (json.dumps(record) + "\n").encode(), self.journal)

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
            _write_all(fd, json.dumps([e.__dict__ for e in entries]).encode(), tmp)
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


def _read_json(path, default):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return default
    except OSError as err:
        raise StateError(f"{path}: cannot read: {err.strerror}") from err
    with os.fdopen(fd, "rb") as fh:
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
