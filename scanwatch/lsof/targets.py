"""File-name arguments and +d/+D directories: which open files they select.

A name is matched by device and inode (the NAME then shows the name as given, or where a
symbolic link leads); a mount point selects every file of that file system; +d DIR selects
DIR and what is in it, +D DIR the whole tree (not across file systems, symlinks not
followed). As lsof does, every entry of a +d/+D tree is a search item: one that no process
has open makes the exit status 1.
"""
from __future__ import annotations

import os

from . import proc


class Targets:
    """File-name arguments and +d/+D directories: what (dev, ino) or file systems match."""

    def __init__(self, opts, warn):
        self.exact: dict = {}      # (dev, ino) -> index of the argument
        self.fs: dict = {}         # st_dev -> index (mount point arguments)
        self.names: list = []      # NAME shown for exact matches (None: the file's own)
        self.labels: list = []
        self.tree: set = set()     # (dev, ino) under +d/+D: each one a search item
        mounts = _mount_points() if opts.files else set()
        for arg in opts.files:
            idx = len(self.labels)
            self.labels.append(arg)
            try:
                res = os.stat(arg)
            except OSError as exc:
                warn(f"status error on {arg}: {exc.strerror}")
                self.names.append(None)
                continue
            real = os.path.realpath(arg)
            if os.path.isdir(arg) and real in mounts:
                self.fs.setdefault(res.st_dev, idx)
                self.names.append(None)
            else:
                self.exact.setdefault((res.st_dev, res.st_ino), idx)
                self.names.append(real if os.path.islink(arg) else arg)
        for path, recursive in opts.dirs:
            self._walk(path, recursive, warn)

    def _walk(self, top: str, recursive: bool, warn) -> None:
        try:
            res = os.stat(top)
        except OSError as exc:
            warn(f"WARNING: can't stat({top}): {exc.strerror}")
            return
        self.tree.add((res.st_dev, res.st_ino))
        stack = [top]
        while stack:
            path = stack.pop()
            try:
                entries = list(os.scandir(path))
            except OSError:
                continue
            for e in entries:
                try:
                    s = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                self.tree.add((s.st_dev, s.st_ino))
                if recursive and e.is_dir(follow_symlinks=False) and s.st_dev == res.st_dev:
                    stack.append(e.path)

    def match(self, key) -> int | None:
        """Index of the argument a file matches, -1 for a +d/+D match, None for none."""
        if key is None:
            return None
        idx = self.exact.get(key)
        if idx is None:
            idx = self.fs.get(key[0])
        if idx is None and key in self.tree:
            return -1
        return idx


def _mount_points() -> set:
    out = set()
    data = proc.read_small("/proc/self/mountinfo") or b""
    for line in data.decode("utf-8", "surrogateescape").splitlines():
        parts = line.split()
        if len(parts) > 4:
            out.add(parts[4].replace("\\040", " "))
    return out
