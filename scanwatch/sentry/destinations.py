"""Which probes are probes of this host (issue 14).

XDP sees a packet before routing and before netfilter. On a router, traffic forwarded
to other hosts finds no socket here and looked like probes of closed ports; on a
container host, a connection to a published port is DNAT'd to a container after XDP,
so it found no socket either and a client of 25 services looked like a sweep. The
kernel now counts only packets to this host's own addresses (the `local` map) and
treats ports that DNAT/redirect rules forward as open (the `natted` bitmap); an own
address that a 1:1 NAT rule forwards whole (no port match) leaves `local`.

Own addresses come from netlink address notifications (addrwatch.py: a new address
counts at once, with a full re-read every RESYNC_S as the safety net). The NAT rules
(respond/natrules.py) are read again when nftables announces a change outside our own
table (iptables-nft's rules are nftables rules too), every NAT_LEGACY_S while
iptables-legacy has a nat table (it announces nothing), and every NAT_RESYNC_S anyway.
"""
import threading
import time

from . import netinfo
from .addrwatch import OwnAddresses
from .respond import natrules
from .respond.firewall import RulesetMonitor, ruleset_changed
from ..errors import ScanwatchError

NAT_LEGACY_S = 5.0
NAT_RESYNC_S = 60.0
NAT_SETTLE_S = 0.1  # a transaction announces each rule: read once after the burst
_LEGACY_NAMES = ("/proc/net/ip_tables_names", "/proc/net/ip6_tables_names")


def legacy_nat():
    """Whether iptables-legacy has a nat table in this namespace. Read from /proc, so a
    host that never used it does not get its modules loaded by a probing save."""
    for path in _LEGACY_NAMES:
        try:
            with open(path) as fh:
                if "nat" in fh.read().split():
                    return True
        except OSError:
            continue
    return False


class Destinations:
    def __init__(self, sentry, firewall, log, lock=None):
        self.sentry, self.firewall, self.log = sentry, firewall, log
        self.lock = lock or threading.RLock()  # the daemon's: watcher threads write maps
        self.watch = self.nat_watch = None
        self.own, self.local = set(), None
        self.forwarded = None
        self.nat_at = None
        self.nat_error = None
        self.nat_reads = 0

    # --- own addresses ----------------------------------------------------------------
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
            self.own = set(addrs)
            self._apply_local()

    def _apply_local(self):
        """`local` = own addresses, less those a 1:1 NAT rule forwards whole."""
        nets = (self.forwarded or {}).get("addrs", ())
        local = {a for a in self.own if not any(a.version == n.version and a in n for n in nets)}
        if local != self.local:
            self.local = local
            if not self.sentry.set_local(local):
                self.log.error("error: more own addresses (%d) than the kernel's `local` map "
                               "holds; counting packets to any address", len(local))

    def close(self):
        if self.watch:
            self.watch.close()
        if self.nat_watch:
            self.nat_watch.stop()

    def refresh(self, now):
        """Own addresses into `local`, forwarded ports into `natted`; returns the own
        addresses (the daemon ignores them as sources)."""
        mine = self.own_addresses()
        self.own = set(mine)
        self._apply_local()
        if self.nat_watch is None:
            self._watch_nat()
        due = NAT_LEGACY_S if not self.nat_watch or legacy_nat() else NAT_RESYNC_S
        if self.nat_at is None or now - self.nat_at >= due:
            self.nat_at = now
            fwd = self._read_nat()
            with self.lock:
                self._apply_nat(fwd)
        return mine

    # --- forwarded ports ----------------------------------------------------------------
    def _watch_nat(self):
        own_table = self.firewall.table
        try:
            self.nat_watch = RulesetMonitor(accept=lambda data: ruleset_changed(data, own_table))
        except ScanwatchError as err:
            self.log.error("error: %s; reading DNAT rules every %.0fs instead", err,
                           NAT_LEGACY_S)
            self.nat_watch = False
            return
        self.nat_watch.start(self._on_nat_change, self._nat_watch_lost)

    def _nat_watch_lost(self, err):
        self.log.error("error: %s; reading DNAT rules every %.0fs instead", err, NAT_LEGACY_S)
        self.nat_watch = False

    def _on_nat_change(self):
        time.sleep(NAT_SETTLE_S)  # the monitor thread: let the rest of the transaction land
        try:
            fwd = self._read_nat()  # outside the lock: a big ruleset takes a while to list
            with self.lock:
                self._apply_nat(fwd)
        except Exception as err:  # noqa: BLE001 - e.g. maps closed at shutdown; keep watching
            self.log.error("error: applying DNAT rules: %s", err)

    def _read_nat(self):
        """natrules' view of nftables (+ iptables-nft) and iptables-legacy; None on error."""
        try:
            fwd = self.firewall.forwarded()
            if legacy_nat():  # its failure alone must not hide what nftables forwards
                try:
                    fwd = natrules.merge(fwd, natrules.iptables_forwarded(
                        natrules.iptables_save("legacy")))
                except ScanwatchError as err:
                    self._nat_failed(err)
                    return fwd
        except ScanwatchError as err:
            self._nat_failed(err)
            return None
        self.nat_error = None
        self.nat_reads += 1
        return fwd

    def _nat_failed(self, err):
        if str(err) != self.nat_error:  # once per distinct failure, not every read
            self.log.error("error: cannot read DNAT/redirect rules: %s", err)
        self.nat_error = str(err)

    def _apply_nat(self, fwd):
        if fwd is None or fwd == self.forwarded:
            return
        self.forwarded = fwd
        self.sentry.set_forwarded(fwd["tcp"], fwd["udp"])
        self._apply_local()

    def snapshot(self):
        """For status: own addresses, forwarded ports and addresses the kernel knows."""
        fwd = self.forwarded or natrules.empty()
        return {"own_addresses": len(self.own), "counted_addresses": len(self.local or ()),
                "own_address_events": self.watch.events if self.watch else None,
                "forwarded_ports": {p: len(fwd[p]) for p in natrules.PROTOS},
                "forwarded_addresses": sorted(str(n) for n in fwd["addrs"]),
                "nat_reads": self.nat_reads}
