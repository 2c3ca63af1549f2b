"""Reading /proc: processes, tasks, command names, owners, descriptors, fdinfo, maps, locks.

Every reader tolerates the process going away (or never having been readable): it returns
None or an empty result instead of raising, so a walk simply skips what vanished.
"""
from __future__ import annotations

import os

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
O_FILE = os.O_RDONLY | os.O_CLOEXEC


def list_pids() -> list[int]:
    """Process ids in ascending order."""
    return sorted(int(n) for n in os.listdir("/proc") if n.isdigit())


def list_tasks(pid: int) -> list[int]:
    try:
        return sorted(int(n) for n in os.listdir(f"/proc/{pid}/task") if n.isdigit())
    except OSError:
        return []


def read_small(path: str, dir_fd: int | None = None) -> bytes | None:
    """A whole (small) /proc file, or None."""
    try:
        fd = os.open(path, O_FILE, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_comm(base: str) -> str | None:
    """The command name (comm) of /proc/PID or /proc/PID/task/TID; None if gone."""
    data = read_small(base + "/comm")
    if data is None:
        return None
    if data.endswith(b"\n"):
        data = data[:-1]
    return data.decode("utf-8", "surrogateescape")


def owner(base: str) -> int | None:
    """The uid owning the /proc directory (what lsof shows as USER)."""
    try:
        return os.stat(base).st_uid
    except OSError:
        return None


def open_dir_error(path: str) -> tuple[int | None, OSError | None]:
    try:
        return os.open(path, O_DIR), None
    except OSError as exc:
        return None, exc


def fd_names(dfd: int) -> list[str]:
    """The descriptor names in an open /proc/PID/fd directory, in the kernel's (numeric)
    order."""
    try:
        return os.listdir(dfd)
    except OSError:
        return []


def fdinfo(base: str, fd: str) -> dict:
    """/proc/PID/fdinfo/FD as {key: value text}; repeated keys (tfd, lock) as lists."""
    data = read_small(f"{base}/fdinfo/{fd}")
    out: dict = {}
    if not data:
        return out
    for line in data.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        value = value.strip()
        if key in ("tfd", "lock"):
            out.setdefault(key, []).append(value)
        else:
            out.setdefault(key, value)
    return out


def maps(base: str) -> list[tuple[int, int, int, str]] | None:
    """Mapped files of /proc/PID/maps: (major, minor, inode, path) in address order,
    only mappings with an inode; None when unreadable."""
    data = read_small(base + "/maps")
    if data is None:
        return None
    out = []
    for line in data.split(b"\n"):
        parts = line.split(None, 5)
        if len(parts) < 6 or parts[4] == b"0":
            continue
        major, _, minor = parts[3].partition(b":")
        try:
            out.append((int(major, 16), int(minor, 16), int(parts[4]),
                        parts[5].decode("utf-8", "surrogateescape")))
        except ValueError:
            continue
    return out


def parse_locks(text: str) -> dict:
    """/proc/locks into (pid, major, minor, inode) -> lsof's lock character.

    The first lock listed for a file wins, as lsof reports only the first it finds.
    Whole-file locks are upper case (R, W), byte ranges lower case (r, w)."""
    table: dict = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) < 8 or f[1] == "->":
            continue
        try:
            pid = int(f[4])
            major, minor, inode = f[5].split(":")
            key = (pid, int(major, 16), int(minor, 16), int(inode))
        except ValueError:
            continue
        kind = f[3]
        whole = f[6] == "0" and f[7] == "EOF"
        if kind == "READ":
            ch = "R" if whole else "r"
        elif kind == "WRITE":
            ch = "W" if whole else "w"
        else:
            ch = "U"
        table.setdefault(key, ch)
    return table


def locks() -> dict:
    data = read_small("/proc/locks")
    return parse_locks(data.decode("utf-8", "replace")) if data else {}
