"""Fleet keys and stream entries. Pure: no Redis, no clock of its own.

Every key lives under the FLEET_NAME prefix; the part in braces is the Redis Cluster hash
tag, so all keys of one source (its sightings) share one slot, and the stream and the
members hash each sit on a slot of their own.
"""
import ipaddress
import re

VERSION = "1"
EVIDENCE = ("proven", "unverified", "decoy", "suspect")
NEVER_SHARED = ("suspect", "decoy")  # "possibly spoofed": blocking them fleet-wide is a DoS
MAX_FIELD = 256          # bytes in any one field of an entry
MAX_FIELDS = 16
MAX_PORTS = 32
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
_SCAN = re.compile(r"[A-Za-z0-9/ _-]{1,32}")
KINDS = ("block", "unblock", "sweep")


class Refused(ValueError):
    """A stream entry that is not applied; str() says why in a few words."""


def check_name(name):
    if not _NAME.fullmatch(name or ""):
        raise ValueError(f"{name!r} is not a fleet name (letters, digits, _ -, at most 32)")
    return name


def check_host(host):
    if not _HOST.fullmatch(host or ""):
        raise ValueError(f"{host!r} is not a host name for the fleet")
    return host


_URL = re.compile(r"(rediss?)://(?:([A-Za-z0-9._-]{1,64})@)?"
                  r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253})(?::([0-9]{1,5}))?(?:/([0-9]{1,2}))?")


def check_url(name, raw):
    """The fleet settings' text checks (config.py calls this for FLEET_* text keys)."""
    if name == "FLEET_URL":
        if "://" in raw and ":" in raw.split("://", 1)[1].split("@")[0] and "@" in raw:
            raise ValueError("a password in the URL; put it in FLEET_PASSWORD_FILE")
        m = _URL.fullmatch(raw)
        if not m or (m.group(4) and not 1 <= int(m.group(4)) <= 65535):
            raise ValueError(f"{raw!r} is not redis://[USER@]HOST[:PORT][/DB] or rediss://...")
    elif name == "FLEET_NAME":
        check_name(raw)
    elif name == "FLEET_HOST":
        check_host(raw)
    return raw


def parse_url(raw):
    """(tls, user, host, port, db)."""
    m = _URL.fullmatch(raw)
    return (m.group(1) == "rediss", m.group(2) or None, m.group(3).strip("[]"),
            int(m.group(4) or 6379), int(m.group(5) or 0))


class Keys:
    """The key names of one fleet."""

    def __init__(self, name):
        self.name = check_name(name)
        self.stream = f"{name}:{{blocks}}:stream"
        self.members = f"{name}:{{members}}"

    def sweep(self, addr):
        # The hash tag is the source: its distinct-count lives on one slot with its other keys.
        return f"{self.name}:sweep:{{{addr}}}"

    def spoof(self, addr):
        """The members' "possibly spoofed" marks on a source (a hash host -> strength),
        beside its distinct-count on the same slot."""
        return f"{self.name}:spoof:{{{addr}}}"

    def verdict(self, addr):
        """Which member judges a source's fleet sweep (the first to claim it)."""
        return f"{self.name}:verdict:{{{addr}}}"

    def pattern(self):
        """The ACL key pattern that covers every key above."""
        return f"~{self.name}:*"


def _addr(text):
    try:
        a = ipaddress.ip_address(text)
    except ValueError:
        raise Refused(f"bad address {text[:60]!r}") from None
    if a.is_unspecified or a.is_multicast or a.is_loopback or a.is_reserved \
            or (a.version == 4 and a == ipaddress.IPv4Address("255.255.255.255")):
        raise Refused(f"address {a} cannot be a scanner")
    return a


def _port(p):
    """A port as the block table keeps it ("22/tcp") or as a number."""
    return int(str(p).split("/")[0])


def encode(kind, addr, *, host, left=0, evidence="unverified", scan="", ports=(), ts=0.0,
           uid=""):
    """A stream entry (all values str, as Redis keeps them)."""
    if kind not in KINDS:
        raise ValueError(kind)
    if evidence not in EVIDENCE:
        raise ValueError(evidence)
    return {"v": VERSION, "kind": kind, "addr": str(_addr(str(addr))),
            "left": str(int(left)), "evidence": evidence, "scan": (scan or "-")[:32],
            "ports": ",".join(str(_port(p)) for p in list(ports)[:MAX_PORTS]),
            "host": check_host(host), "ts": f"{ts:.3f}", "id": uid}


def _text(fields, key, limit=MAX_FIELD):
    v = fields.get(key, fields.get(key.encode()))
    if v is None:
        raise Refused(f"no {key}")
    if isinstance(v, bytes):
        if len(v) > limit:
            raise Refused(f"{key} is {len(v)} bytes")
        try:
            v = v.decode("ascii")
        except UnicodeDecodeError:
            raise Refused(f"{key} is not text") from None
    if not isinstance(v, str):
        raise Refused(f"{key} is a {type(v).__name__}")
    if len(v) > limit:
        raise Refused(f"{key} is {len(v)} bytes")
    return v


def _int(fields, key, lo, hi):
    t = _text(fields, key, 12)
    if not re.fullmatch(r"[0-9]{1,11}", t):
        raise Refused(f"{key} {t[:20]!r} is not a whole number")
    n = int(t)
    if not lo <= n <= hi:
        raise Refused(f"{key} {n} outside {lo}..{hi}")
    return n


class Entry:
    __slots__ = ("kind", "addr", "left", "evidence", "scan", "ports", "host", "ts", "uid")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw[k])

    def __repr__(self):
        return f"Entry({self.kind} {self.addr} from {self.host})"


def decode(fields, *, now, max_left, max_age=600.0):
    """Validate an entry another member wrote; raises Refused. `now` is wall-clock seconds.
    Nothing from the fleet is trusted further than this: sizes, types, ranges, times."""
    if not isinstance(fields, dict):
        raise Refused("not a mapping")
    if len(fields) > MAX_FIELDS:
        raise Refused(f"{len(fields)} fields")
    if _text(fields, "v", 4) != VERSION:
        raise Refused("unknown version")
    kind = _text(fields, "kind", 8)
    if kind not in KINDS:
        raise Refused(f"unknown kind {kind[:8]!r}")
    addr = _addr(_text(fields, "addr", 45))
    host = _text(fields, "host", 64)
    if not _HOST.fullmatch(host):
        raise Refused("bad host name")
    evidence = _text(fields, "evidence", 16)
    if evidence not in EVIDENCE:
        raise Refused(f"unknown evidence {evidence!r}")
    scan = _text(fields, "scan", 32)
    if not _SCAN.fullmatch(scan):
        raise Refused("bad scan type")
    ports_t = _text(fields, "ports", MAX_PORTS * 6)
    ports = []
    for p in filter(None, ports_t.split(",")):
        if not re.fullmatch(r"[0-9]{1,5}", p) or not 1 <= int(p) <= 65535:
            raise Refused("bad port list")
        ports.append(int(p))
    ts_t = _text(fields, "ts", 20)
    try:
        ts = float(ts_t)
    except ValueError:
        raise Refused("ts is not a time") from None
    if not (now - max_age <= ts <= now + 60):  # clocks of a fleet agree within a minute
        raise Refused(f"ts {ts_t} is {now - ts:+.0f}s from now")
    left = _int(fields, "left", 0, max_left)
    if kind == "block" and left == 0:
        raise Refused("a fleet block must end")  # never a permanent block from someone else
    uid = _text(fields, "id", 64)
    if uid and not re.fullmatch(r"[A-Za-z0-9:._-]{1,64}", uid):
        raise Refused("bad id")
    return Entry(kind=kind, addr=str(addr), left=left, evidence=evidence, scan=scan,
                 ports=tuple(ports), host=host, ts=ts, uid=uid)


def remaining(entry, now):
    """Seconds of the block left when it reaches us (the publisher's remaining time minus
    the time spent in the stream)."""
    return entry.left - max(0.0, now - entry.ts)
