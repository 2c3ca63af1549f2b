"""What this host looks like from inside its network namespace: interfaces, own
addresses (netlink, via pyroute2) and ports that have a socket (/proc/net)."""
import ipaddress
import re
import time

from ..errors import ScanwatchError

IFF_UP = 0x1
IFF_LOOPBACK = 0x8
TCP_LISTEN = "0A"


def _iproute():
    from pyroute2 import IPRoute  # imported lazily: `scanwatch status` should start fast
    return IPRoute()


class _Borrowed:
    """A caller's long-lived IPRoute, usable in `with` without being closed."""

    def __init__(self, ipr):
        self.ipr = ipr

    def __enter__(self):
        return self.ipr

    def __exit__(self, *exc):
        return False


def _netlink(ipr):
    return _Borrowed(ipr) if ipr is not None else _iproute()


def interfaces(ipr=None):
    """name -> {"up": bool, "loopback": bool, "addrs": [ip, ...]} for every link."""
    with _netlink(ipr) as ipr:
        links = {link["index"]: link for link in ipr.get_links()}
        out = {}
        for idx, link in links.items():
            flags = link["flags"]
            out[link.get_attr("IFLA_IFNAME")] = {
                "index": idx, "up": bool(flags & IFF_UP),
                "loopback": bool(flags & IFF_LOOPBACK), "addrs": []}
        names = {idx: link.get_attr("IFLA_IFNAME") for idx, link in links.items()}
        for msg in ipr.get_addr():
            name = names.get(msg["index"])
            addr = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
            if name in out and addr:
                out[name]["addrs"].append(addr)
    return out


def default_interfaces(info=None):
    """PortSentry-like default: every interface that is up, has an address and is not loopback."""
    info = interfaces() if info is None else info
    return sorted(n for n, i in info.items() if i["up"] and i["addrs"] and not i["loopback"])


def pick_interfaces(wanted, info=None):
    info = interfaces() if info is None else info
    if not wanted:
        chosen = default_interfaces(info)
        if not chosen:
            raise ScanwatchError("no interface is up with an address; name one with --interface")
        return chosen
    missing = [n for n in wanted if n not in info]
    if missing:
        raise ScanwatchError(f"no such interface: {', '.join(missing)}")
    return list(wanted)


def own_addresses(info=None):
    info = interfaces() if info is None else info
    addrs = set()
    for i in info.values():
        for a in i["addrs"]:
            addrs.add(ipaddress.ip_address(a.split("%")[0]))
    return addrs


def _ports(path, want_state):
    ports = set()
    try:
        with open(path) as fh:
            next(fh, None)
            for line in fh:
                fields = line.split()
                if len(fields) < 4:
                    continue
                if want_state is None or fields[3] == want_state:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    except FileNotFoundError:  # IPv6 disabled: no tcp6/udp6
        pass
    return ports


def listening_ports():
    """{"TCP": ports with a listener, "UDP": ports with a bound socket}, this namespace."""
    return {
        "TCP": _ports("/proc/net/tcp", TCP_LISTEN) | _ports("/proc/net/tcp6", TCP_LISTEN),
        "UDP": _ports("/proc/net/udp", None) | _ports("/proc/net/udp6", None),
    }


def default_gateways(ipr=None):
    """Next hops of the default routes (IPv4 and IPv6) in this namespace."""
    gws = set()
    with _netlink(ipr) as ipr:
        for family in (2, 10):  # AF_INET, AF_INET6
            for route in ipr.get_routes(family=family):
                if route.get("dst_len") != 0:
                    continue
                gw = route.get_attr("RTA_GATEWAY")
                if gw:
                    gws.add(ipaddress.ip_address(gw.split("%")[0]))
                for nh in route.get_attr("RTA_MULTIPATH") or ():
                    gw = nh.get_attr("RTA_GATEWAY")
                    if gw:
                        gws.add(ipaddress.ip_address(gw.split("%")[0]))
    return gws


def resolvers(path="/etc/resolv.conf"):
    out = set()
    try:
        with open(path) as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    try:
                        out.add(ipaddress.ip_address(parts[1].split("%")[0]))
                    except ValueError:
                        continue
    except OSError:
        pass
    return out


def ssh_ports(path="/etc/ssh/sshd_config"):
    ports = {22}
    try:
        with open(path) as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 2 and parts[0].lower() == "port" and parts[1].isdigit():
                    ports.add(int(parts[1]))
    except OSError:
        pass
    return ports


def ssh_connections(ports=None):
    """{(local, remote) hex fields: peer address} of established TCP connections to the SSH
    port(s) (ports=True: to any port)."""
    ports = ssh_ports() if ports is None else ports
    conns = {}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as fh:
                next(fh, None)
                for line in fh:
                    f = line.split()
                    if len(f) < 4 or f[3] != "01":  # ESTABLISHED
                        continue
                    if ports is True or int(f[1].rsplit(":", 1)[1], 16) in ports:
                        p = _proc_addr(f[2].rsplit(":", 1)[0])
                        conns[(f[1], f[2])] = p.ipv4_mapped or p if p.version == 6 else p
        except FileNotFoundError:
            continue
    return conns


def ssh_peers(ports=None):
    """Remote addresses of established TCP connections to the SSH port(s) (ports=True:
    to any port)."""
    return set(ssh_connections(ports).values())


def login_grace(path="/etc/ssh/sshd_config"):
    """sshd's LoginGraceTime in seconds (120 by default; 0, no limit, taken as 600)."""
    grace = 120
    try:
        with open(path) as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 2 and parts[0].lower() == "logingracetime":
                    m = re.fullmatch(r"(\d+)([smh]?)", parts[1].lower())
                    if m:
                        grace = int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
                    break
    except OSError:
        pass
    return grace or 600


def seasoned(conns, seen, now, age):
    """Peers of the connections seen for at least `age` seconds; `seen` ({connection: first
    seen}) is updated in place. sshd drops a connection that has not logged in within
    LoginGraceTime, so one older than that is a session, not a scanner's held connection
    (any TCP connect to port 22 would otherwise make its source unblockable)."""
    for c in list(seen):
        if c not in conns:
            del seen[c]
    for c in conns:
        seen.setdefault(c, now)
    return {peer for c, peer in conns.items() if now - seen[c] >= age}


def _proc_addr(hexaddr):
    """/proc/net/tcp* address: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hexaddr)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words)


class Protected:
    """Addresses never blocked, whatever the ignore file says: {reason: set(addresses)}.

    Gateways and resolvers are cheap to re-read each second over one netlink socket;
    SSH peers need a walk of the host's whole TCP table (~4 ms), so they are re-read
    every few seconds, and afresh before each block (`is_ssh_peer`); a connection counts
    once it has outlived sshd's LoginGraceTime (see `seasoned`)."""

    def __init__(self, ssh_every=5.0):
        self.ipr = _iproute()
        self.ssh_every, self.ssh_at, self.ssh = ssh_every, None, set()
        self.ssh_seen, self.ssh_age = {}, login_grace() + ssh_every

    def refresh(self, now):
        if self.ssh_at is None or now - self.ssh_at >= self.ssh_every:
            self.ssh = seasoned(ssh_connections(), self.ssh_seen, now, self.ssh_age)
            self.ssh_at = now
        return {"gateway": default_gateways(self.ipr), "resolver": resolvers(), "ssh": self.ssh}

    def own_addresses(self):
        return own_addresses(interfaces(self.ipr))

    def is_ssh_peer(self, addr):
        self.ssh = seasoned(ssh_connections(), self.ssh_seen, time.monotonic(), self.ssh_age)
        return addr in self.ssh

    def close(self):
        self.ipr.close()
