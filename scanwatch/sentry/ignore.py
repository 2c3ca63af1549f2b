"""PortSentry's ignore file (one address or CIDR a line, `#` comments), IPv4 and IPv6."""
import ipaddress
import socket

from .config import read_text, split_lines
from ..errors import ConfigError

V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def canonical(addr):
    """An address as scanwatch keys it: IPv4-mapped IPv6 (::ffff:a.b.c.d) becomes IPv4.
    Text with a `/` is an IPv6 prefix block (issue 14): its network, host bits cleared."""
    if isinstance(addr, str) and "/" in addr:
        return prefix_net(addr)
    addr = ipaddress.ip_address(addr)
    if addr.version == 6 and addr.ipv4_mapped:
        return addr.ipv4_mapped
    return addr


def prefix_net(text):
    """An IPv6 prefix block's network ("2001:db8::/64"); a /128 is its address. IPv4
    sources are never aggregated, so an IPv4 network (or ::/0) is a ValueError."""
    net = ipaddress.IPv6Network(text.strip(), strict=False)
    if net.prefixlen == 128:
        return canonical(net.network_address)
    if net.prefixlen == 0 or net.network_address.ipv4_mapped:
        raise ValueError(f"{text!r} is not an IPv6 prefix scanwatch blocks")
    return net


def subject(addr, v6_prefix):
    """The key a source is blocked under: its address, or with V6_PREFIX < 128 an IPv6
    source's prefix (the kernel counts and blocks those addresses as one source)."""
    addr = canonical(addr)
    if addr.version == 6 and 0 < v6_prefix < 128:
        return str(ipaddress.IPv6Network((addr, v6_prefix), strict=False))
    return str(addr)


def is_prefix(key):
    return "/" in key


MAPPED_PREFIX = b"\0" * 10 + b"\xff\xff"


def fast_key(text):
    """The 16-byte kernel form of a plain address string, or None for anything else
    (zone ids, spaces, non-strings): inet_pton is strict and about 5x cheaper than
    ipaddress, which matters when 100,000 saved blocks are restored at start."""
    if type(text) is not str:
        return None
    try:
        return MAPPED_PREFIX + socket.inet_pton(socket.AF_INET, text)
    except OSError:
        pass
    try:
        return socket.inet_pton(socket.AF_INET6, text)
    except OSError:
        return None


def to_key(addr):
    """Address -> the 16-byte kernel form (IPv4 as ::ffff:a.b.c.d)."""
    key = fast_key(addr)
    if key is not None:
        return key
    addr = canonical(addr)
    if addr.version == 6 and isinstance(addr, ipaddress.IPv6Network):
        return addr.network_address.packed  # a prefix block's key, as XDP masks sources
    if addr.version == 4:
        return b"\0" * 10 + b"\xff\xff" + addr.packed
    return addr.packed


def from_key(raw):
    """16-byte kernel form -> ipaddress object (IPv4 for mapped addresses)."""
    addr = ipaddress.IPv6Address(bytes(raw))
    return addr.ipv4_mapped or addr


def to_lpm(net):
    """Network -> (prefixlen, 16-byte key) in the kernel's mapped space."""
    net = ipaddress.ip_network(net, strict=False)
    if net.version == 4:
        return 96 + net.prefixlen, to_key(net.network_address)
    return net.prefixlen, net.network_address.packed


def covered(key, prefixes):
    """Is the 16-byte kernel key inside any of these (prefixlen, 16-byte key) prefixes?"""
    k = int.from_bytes(bytes(key), "big")
    for plen, net in prefixes:
        shift = 128 - plen
        if k >> shift == int.from_bytes(bytes(net), "big") >> shift:
            return True
    return False


def parse(text, path="<ignore>"):
    """Return the networks listed; ConfigError names the first bad line."""
    nets = []
    for lineno, line in enumerate(split_lines(text), 1):
        item = line.split("#", 1)[0].strip()
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"{item!r} is not an IPv4/IPv6 address or CIDR", path, lineno) from None
    return nets


def load(path):
    """A missing ignore file is an empty one (PortSentry's behaviour); other errors raise."""
    try:
        text = read_text(path)
    except ConfigError as err:
        if isinstance(err.__cause__, FileNotFoundError):
            return []
        raise
    return parse(text, path)


class IgnoreList:
    """Networks that are never counted or blocked: the file's, loopback, own addresses."""

    ALWAYS = ("127.0.0.0/8", "::1/128")

    def __init__(self, file_nets=(), own_addrs=()):
        self.file_nets = list(file_nets)
        self.own = {canonical(a) for a in own_addrs}

    def networks(self):
        nets = [ipaddress.ip_network(n) for n in self.ALWAYS] + self.file_nets
        nets += [ipaddress.ip_network(a) for a in sorted(self.own, key=lambda a: (a.version, a))]
        return nets

    def __contains__(self, addr):
        # Compare in the kernel's 16-byte space, so `::ffff:0:0/96` covers IPv4 sources
        # here exactly as it does in the LPM trie.
        key = int.from_bytes(to_key(canonical(addr)), "big")
        for net in self.networks():
            plen, base = to_lpm(net)
            shift = 128 - plen
            if key >> shift == int.from_bytes(base, "big") >> shift:
                return True
        return False
