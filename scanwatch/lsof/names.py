"""Names for numbers, as lsof finds them: host names (gethostbyaddr), service names
(/etc/services, first entry for port and protocol), login names (getpwuid). Cached."""
from __future__ import annotations

_hosts: dict = {}
_services: dict | None = None
_users: dict = {}
_user_ids: dict = {}

SERVICES_FILE = "/etc/services"


def parse_services(text: str) -> dict:
    """(port, "tcp"|"udp") -> first service name, as getservbyport() answers from files."""
    table: dict = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].split()
        if len(line) < 2 or "/" not in line[1]:
            continue
        port, _, proto = line[1].partition("/")
        if port.isdigit():
            table.setdefault((int(port), proto.lower()), line[0])
    return table


def _service_table() -> dict:
    global _services
    if _services is None:
        try:
            with open(SERVICES_FILE, encoding="utf-8", errors="replace") as f:
                _services = parse_services(f.read())
        except OSError:
            _services = {}
    return _services


def service(port: int, proto: str) -> str | None:
    """The /etc/services name of port for "tcp" or "udp", or None."""
    return _service_table().get((port, proto))


def service_ports(name: str, proto: str | None) -> set[int]:
    """Ports a service name stands for (for -i :name), for one protocol or both."""
    return {port for (port, p), n in _service_table().items()
            if n == name and (proto is None or p == proto)} | _alias_ports(name, proto)


def _alias_ports(name: str, proto: str | None) -> set[int]:
    import socket
    out = set()
    for p in ((proto,) if proto else ("tcp", "udp")):
        try:
            out.add(socket.getservbyname(name, p))
        except OSError:
            pass
    return out


def host(family: int, packed: bytes) -> str | None:
    """The name gethostbyaddr() gives an address, or None."""
    key = (family, packed)
    if key in _hosts:
        return _hosts[key]
    import socket
    name = None
    try:
        name = socket.gethostbyaddr(socket.inet_ntop(family, packed))[0] or None
    except (OSError, UnicodeError, ValueError):
        name = None
    _hosts[key] = name
    return name


def user(uid: int) -> str | None:
    """The login name of uid, or None when it has no passwd entry."""
    try:
        return _users[uid]
    except KeyError:
        pass
    import pwd
    try:
        name = pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        name = None
    _users[uid] = name
    return name


def user_id(name: str) -> int | None:
    """The uid of a login name, or None."""
    if name in _user_ids:
        return _user_ids[name]
    import pwd
    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        uid = None
    _user_ids[name] = uid
    return uid
