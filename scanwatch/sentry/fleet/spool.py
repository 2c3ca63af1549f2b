"""Publications waiting for Redis, kept on disk across restarts.

A JSON line per entry, appended and fsync'ed before the daemon goes on (the local block is
already in place; this only delays the fleet), bounded in count: past `limit` the oldest
entries go (their blocks have the least time left). Sent entries are dropped by rewriting
the file atomically.
"""
import json
import os
import threading

from ...errors import StateError


class Spool:
    def __init__(self, path, limit=10000):
        self.path = path
        self.limit = limit
        self.items = []
        self.dropped = 0
        # the publisher thread sends and drops while a stopping daemon may still push
        self.lock = threading.Lock()
        self._load()

    def _load(self):
        try:
            with open(self.path, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        item = json.loads(line)
                    except ValueError:
                        continue  # a line torn by a crash mid-write
                    if isinstance(item, dict):
                        self.items.append(item)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise StateError(f"{self.path}: {err.strerror}") from None
        self.items = self.items[-self.limit:]

    def __len__(self):
        return len(self.items)

    def push(self, item):
        with self.lock:
            self._push(item)

    def _push(self, item):
        self.items.append(item)
        if len(self.items) > self.limit:
            self.dropped += len(self.items) - self.limit
            self.items = self.items[-self.limit:]
            self._rewrite()
            return
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(item, separators=(",", ":")) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as err:
            raise StateError(f"{self.path}: {err.strerror}") from None

    def head(self, n=100):
        with self.lock:
            return self.items[:n]

    def drop(self, n):
        """The first n entries were sent."""
        if n:
            with self.lock:
                self.items = self.items[n:]
                self._rewrite()

    def _rewrite(self):
        tmp = self.path + ".tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                for item in self.items:
                    fh.write(json.dumps(item, separators=(",", ":")) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as err:
            raise StateError(f"{self.path}: {err.strerror}") from None
