"""Which probes are probes of this host (issue 14).

XDP sees a packet before routing and before netfilter. On a router, traffic forwarded
to other hosts finds no socket here and looked like probes of closed ports; on a
container host, a connection to a published port is DNAT'd to a container after XDP,
so it found no socket either and a client of 25 services looked like a sweep. The
kernel now counts only packets to this host's own addresses (the `local` map) and
treats ports that DNAT/redirect rules forward as open (the `natted` bitmap).

Own addresses come from netlink on every daemon refresh (REFRESH_S); the forwarded
ports from the nftables ruleset every NAT_EVERY_S seconds (a container started meanwhile
may look like a closed port for that long).
"""
from ..errors import ScanwatchError

NAT_EVERY_S = 5.0


class Destinations:
    def __init__(self, sentry, firewall, log):
        self.sentry, self.firewall, self.log = sentry, firewall, log
        self.local = None
        self.forwarded = None
        self.nat_at = None
        self.nat_error = None

    def refresh(self, own_addrs, now):
        if own_addrs != self.local:
            self.local = set(own_addrs)
            if not self.sentry.set_local(self.local):
                self.log.error("error: more own addresses (%d) than the kernel's `local` map "
                               "holds; counting packets to any address", len(self.local))
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
                "forwarded_ports": {p: len(v) for p, v in fwd.items()}}
