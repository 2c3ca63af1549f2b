"""Target specifications as nmap reads them.

    198.18.0.1            one address
    198.18.0.0/24         CIDR (network and broadcast addresses included, as nmap)
    198.18.0.1-5          octet ranges, lists and `*`: 198.18.1,3.0-255, 10.0.*.1
    host.example          a name, resolved (first address of the family)
    fd53:7761::1, ::1/120 IPv6 (with -6, as nmap requires)

A target that cannot be parsed or resolved raises TargetError with nmap's wording.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
import socket
from dataclasses import dataclass

MAX_ADDRESSES = 1 << 20


class TargetError(ValueError):
    """A target nmap could not use; str() is the one-line message."""


@dataclass(frozen=True)
class Target:
    addr: str          # numeric address
    name: str | None   # the name given on the command line, if any
    family: int        # socket.AF_INET or AF_INET6

    @property
    def display(self) -> str:
        """`name (addr)` when a name was given, as nmap's report lines."""
        return f"{self.name} ({self.addr})" if self.name else self.addr


def _octet(part: str) -> list[int] | None:
    values: set[int] = set()
    for piece in part.split(","):
        if piece in ("*", "-"):
            lo, hi = 0, 255
        elif "-" in piece:
            a, _, b = piece.partition("-")
            a, b = a or "0", b or "255"
            if not (a.isdigit() and b.isdigit()):
                return None
            lo, hi = int(a), int(b)
        elif piece.isdigit():
            lo = hi = int(piece)
        else:
            return None
        if lo > hi or hi > 255:
            return None
        values.update(range(lo, hi + 1))
    return sorted(values)


def _octet_ranges(spec: str) -> list[str] | None:
    parts = spec.split(".")
    if len(parts) != 4:
        return None
    octets = [_octet(p) for p in parts]
    if any(o is None for o in octets):
        return None
    count = 1
    for o in octets:
        count *= len(o)
    if count > MAX_ADDRESSES:
        raise TargetError(f"Target {spec} expands to more than {MAX_ADDRESSES} addresses")
    return [".".join(map(str, combo)) for combo in itertools.product(*octets)]


_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def _resolve(name: str, family: int) -> str:
    labels = name[:-1].split(".") if name.endswith(".") else name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise TargetError(f'Failed to resolve "{name}".')   # not a name: no lookup at all
    try:
        infos = socket.getaddrinfo(name, None, family, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError):
        raise TargetError(f'Failed to resolve "{name}".') from None
    if not infos:
        raise TargetError(f'Failed to resolve "{name}".')
    return infos[0][4][0]


def _network(host: str, bits: str, family: int, spec: str) -> list[str]:
    maxbits = 32 if family == socket.AF_INET else 128
    if not bits.isdigit() or int(bits) > maxbits:
        raise TargetError(f'Illegal netmask in "{spec}".')
    addr = host if _is_literal(host, family) else _resolve(host, family)
    net = ipaddress.ip_network(f"{addr}/{bits}", strict=False)
    if net.num_addresses > MAX_ADDRESSES:
        raise TargetError(f"Target {spec} expands to more than {MAX_ADDRESSES} addresses")
    return [str(a) for a in net]


def _is_literal(text: str, family: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == (4 if family == socket.AF_INET else 6)
    except ValueError:
        return False


def parse_target(spec: str, family: int = socket.AF_INET) -> list[Target]:
    """Every address one target specification names, in order."""
    if not spec or spec.startswith("-") or any(c.isspace() for c in spec):
        raise TargetError(f'Failed to resolve "{spec}".')
    if family == socket.AF_INET and ":" in spec:
        raise TargetError(f'"{spec}" looks like an IPv6 target specification -- '
                          f"you have to use the -6 option.")
    if "/" in spec:
        host, _, bits = spec.partition("/")
        name = None if _is_literal(host, family) else host
        addrs = _network(host, bits, family, spec)
        if len(addrs) == 1:
            return [Target(addrs[0], name, family)]
        return [Target(a, None, family) for a in addrs]
    if _is_literal(spec, family):
        text = str(ipaddress.ip_address(spec))
        return [Target(text, None, family)]
    if family == socket.AF_INET and all(c in "0123456789.,-*" for c in spec):
        expanded = _octet_ranges(spec)
        if expanded is None:
            raise TargetError(f'Failed to resolve "{spec}".')
        return [Target(a, None, family) for a in expanded]
    if family == socket.AF_INET6 and spec.startswith("[") and spec.endswith("]"):
        return parse_target(spec[1:-1], family)
    return [Target(_resolve(spec, family), spec, family)]


def parse_targets(specs: list[str], family: int = socket.AF_INET) -> list[Target]:
    out: list[Target] = []
    for spec in specs:
        out.extend(parse_target(spec, family))
        if len(out) > MAX_ADDRESSES:
            raise TargetError(f"More than {MAX_ADDRESSES} target addresses")
    return out
