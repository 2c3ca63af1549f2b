"""Which probes are probes of this host (issue 14).

XDP sees a packet before routing and before netfilter. On a router, traffic forwarded
to other hosts finds no socket here and looked like probes of closed ports; on a
container host, a connection to a published port is DNAT'd to a container after XDP,
so it found no socket either and a client of 25 services looked like a sweep. The
kernel now counts only packets to this host's own addresses (the `local` map) and
treats ports that DNAT/redirect rules forward as open (the `natted` bitmap).

Own addresses come from netlink address notifications (addrwatch.py: a new address
counts at once, with a full re-read every RESYNC_S as the safety net); the forwarded
ports from the nftables ruleset every NAT_EVERY_S seconds (a container started meanwhile
may look like a closed port for that long).
"""
import threading

from . import netinfo
from .addrwatch import OwnAddresses
from ..errors import ScanwatchError

NAT_EVERY_S = 5.0


class Destinations:
    def __init__(self, sentry, firewall, log, lock=None):
        self.sentry, self.firewall, self.log = sentry, firewall, log
        self.lock = lock or threading.RLock()  # the daemon's: the watcher thread writes maps
        self.watch = None
        self.local = None
        self.forwarded = None
        self.nat_at = None
        self.nat_error = None

    def own_addresses(self):
        """This host's addresses: the watcher's, or a fresh dump if it could not start."""
        if self.watch is None:
            try:
                self.watch = OwnAddresses(self._on_addrs, self.log)
            except ScanwatchError as err:
                self.log.error("error: %s; re-reading them on each refresh instead", err)
                self.watch = False
        return self.watch.addrs if self.watch and self.watch.alive() else netinfo.own_addresses()

    def _on_addrs(self, addrs):
        with self.lock:
            self._set_local(addrs)

    def _set_local(self, own_addrs):
        if own_addrs != self.local:
            self.local = set(own_addrs)
            if not self.sentry.set_local(self.local):
                self.log.error("error: more own addresses (%d) than the kernel's `local` map "
                               "holds; counting packets to any address", len(self.local))

    def close(self):
        if self.watch:
            self.watch.close()

    def refresh(self, now):
        """Own addresses into `local`, forwarded ports into `natted`; returns the own
        addresses (the daemon ignores them as sources)."""
        mine = self.own_addresses()
        self._set_local(mine)
        self._nat(now)
        return mine

    def _nat(self, now):
        if self.nat_at is not None and now - self.nat_at < NAT_EVERY_S:
            return
        self.nat_at = now
        try:
            fwd = self.firewall.forwarded()
        except ScanwatchError as err:
            if str(err) != self.nat_error:  # once per distinct failure, not every 5 s
                self.log.error("error: cannot read DNAT/redirect rules: %s", err)
            self.nat_error = str(err)
            return
        self.nat_error = None
        if fwd != self.forwarded:
            self.forwarded = fwd
            self.sentry.set_forwarded(fwd["tcp"], fwd["udp"])

    def snapshot(self):
        """For status: how many own addresses and forwarded ports the kernel knows."""
        fwd = self.forwarded or {"tcp": (), "udp": ()}
        return {"own_addresses": len(self.local or ()),
                "own_address_events": self.watch.events if self.watch else None,
                "forwarded_ports": {p: len(v) for p, v in fwd.items()}}
