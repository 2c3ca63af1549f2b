"""This host's own addresses, kept current from netlink notifications (issue 14).

The kernel counts only packets addressed to this host (the `local` map), so a new address
must be known at once and a removed one forgotten. A NETLINK_ROUTE socket subscribed to
the IPv4 and IPv6 address groups wakes a thread on every RTM_NEWADDR/RTM_DELADDR; it then
reads the whole address list again (one pyroute2 dump: simpler and never out of step, and
address changes are rare). A dump every RESYNC_S seconds is the safety net for lost
notifications (a full socket says ENOBUFS, which also triggers a dump).
"""
import errno
import select
import socket
import threading
import time

from . import netinfo
from ..errors import ScanwatchError

NETLINK_ROUTE = 0
RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR = 0x10, 0x100
RTM_NEWADDR, RTM_DELADDR = 20, 21
RESYNC_S = 60.0


def address_change(data):
    """Whether a buffer of netlink messages holds an address added or removed."""
    off = 0
    while off + 16 <= len(data):
        length = int.from_bytes(data[off:off + 4], "little")
        kind = int.from_bytes(data[off + 4:off + 6], "little")
        if kind in (RTM_NEWADDR, RTM_DELADDR):
            return True
        if length < 16:
            break
        off += (length + 3) & ~3
    return False


class OwnAddresses:
    """addrs: the current set; on_change(addrs) from the watcher thread when it changes."""

    def __init__(self, on_change, log, resync_s=RESYNC_S, dump=netinfo.own_addresses):
        self.on_change, self.log, self.resync_s, self.dump = on_change, log, resync_s, dump
        try:  # subscribed before the first dump, so no change falls between the two
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                      NETLINK_ROUTE)
            self.sock.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        except OSError as err:
            raise ScanwatchError(f"cannot watch this host's addresses: {err.strerror}") from err
        self.addrs = self.dump()
        self.resyncs = self.events = 0
        self._stopped = False
        self.thread = threading.Thread(target=self._loop, name="own-addresses", daemon=True)
        self.thread.start()

    def _wait(self, timeout):
        """True if an address change (or a lost notification) arrived within timeout."""
        if not select.select([self.sock], [], [], max(0.0, timeout))[0]:
            return False
        changed = False
        while True:  # drain the burst (an interface coming up adds several)
            try:
                data = self.sock.recv(1 << 16, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return changed
            except OSError as err:
                if err.errno == errno.ENOBUFS:
                    changed = True
                    continue
                raise
            changed = changed or address_change(data)

    def _loop(self):
        next_sync = time.monotonic() + self.resync_s
        try:
            while not self._stopped:
                event = self._wait(min(1.0, next_sync - time.monotonic()))
                if self._stopped:
                    break
                if not event and time.monotonic() < next_sync:
                    continue
                if event:
                    self.events += 1
                else:
                    self.resyncs += 1
                    next_sync = time.monotonic() + self.resync_s
                self._reread()
        except Exception as err:  # noqa: BLE001 - say it once; refresh() then polls
            if not self._stopped:  # (at shutdown the maps may close under it: no news)
                self.log.error("error: own-address watch stopped (%s); re-reading them on "
                               "each refresh instead", err)
            self.thread = None
        finally:
            self.sock.close()

    def _reread(self):
        addrs = self.dump()
        if addrs != self.addrs:
            self.addrs = addrs
            self.on_change(addrs)

    def alive(self):
        return self.thread is not None

    def close(self):
        self._stopped = True  # the thread sees it within its 1 s wait
