"""Light service detection (-sV, and -sR as nmap 7's alias): a banner grab per open
TCP port, matched against nmap's `nmap-service-probes` when it is installed.

For each open TCP port: connect and wait for a banner (nmap's NULL probe); a
server that closes at once without a word is `tcpwrapped` (nmap's rule); with no
banner, send an HTTP GET (nmap's GetRequest probe) and read the answer. The answer
is matched against that probe's `match`/`softmatch` lines (Python's re runs
them; the few it cannot compile are skipped), and p/ v/ i/ o/ templates fill in
product, version, extra info and OS. Without the probes file a few built-in
patterns (SSH, HTTP, SMTP/FTP greetings) are used.
"""

from __future__ import annotations

import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor

PROBES_FILE = "/usr/share/nmap/nmap-service-probes"
GET = b"GET / HTTP/1.0\r\n\r\n"
WAIT = {0: 6.0, 1: 6.0, 2: 6.0, 3: 2.0, 4: 1.5, 5: 1.0}
_META = set("\\.[]()*+?{}|$^")


class Match:
    __slots__ = ("service", "pattern", "flags", "fields", "soft", "_rx", "prefix")

    def __init__(self, service, pattern, flags, fields, soft):
        self.service, self.pattern, self.flags = service, pattern, flags
        self.fields, self.soft = fields, soft
        self._rx = None
        self.prefix = _literal_prefix(pattern) if "i" not in flags else b""

    def search(self, data: bytes):
        if self.prefix and not data.startswith(self.prefix):
            return None
        if self._rx is None:
            fl = (re.S if "s" in self.flags else 0) | (re.I if "i" in self.flags else 0)
            try:
                self._rx = re.compile(self.pattern.encode("latin-1"), fl)
            except (re.error, UnicodeEncodeError, OverflowError):
                self._rx = False
        if self._rx is False:
            return None
        return self._rx.search(data)


def _literal_prefix(pattern: str) -> bytes:
    if not pattern.startswith("^"):
        return b""
    out = []
    for c in pattern[1:]:
        if c in _META:
            break
        out.append(c)
    if out and pattern[1 + len(out):2 + len(out)] in ("*", "?", "{"):
        out.pop()        # the last literal is quantified
    try:
        return "".join(out).encode("latin-1")
    except UnicodeEncodeError:
        return b""


_FIELD = re.compile(r"\s*(cpe:|[pvihod])([^\w\s])")


def _parse_match(line: str, soft: bool) -> Match | None:
    try:
        _, service, rest = line.split(None, 2)
    except ValueError:
        return None
    if not rest.startswith("m") or len(rest) < 3:
        return None
    delim = rest[1]
    end = rest.find(delim, 2)
    if end < 0:
        return None
    pattern = rest[2:end]
    i = end + 1
    flags = ""
    while i < len(rest) and rest[i] in "si":
        flags += rest[i]
        i += 1
    fields: dict[str, str] = {}
    while i < len(rest):
        m = _FIELD.match(rest, i)
        if not m:
            break
        key, d = m.group(1), m.group(2)
        close = rest.find(d, m.end())
        if close < 0:
            break
        value = rest[m.end():close]
        i = close + 1
        flagged = i < len(rest) and rest[i] == "a"     # nmap's "a": applies to the host
        while i < len(rest) and rest[i] == "a":
            i += 1
        if key != "cpe:":
            fields[key] = value
        elif flagged:
            fields.setdefault("cpe", []).append("cpe:/" + value)
    return Match(service, pattern, flags, fields, soft)


_DB: dict[str, list[Match]] | None = None


def load_probes(path: str = PROBES_FILE) -> dict[str, list[Match]]:
    """match lines of the NULL and GetRequest TCP probes."""
    global _DB
    if _DB is not None:
        return _DB
    db: dict[str, list[Match]] = {"NULL": [], "GetRequest": []}
    try:
        with open(path, encoding="latin-1") as f:
            current = None
            for line in f:
                if line.startswith("Probe "):
                    parts = line.split()
                    current = parts[2] if len(parts) > 2 and parts[1] == "TCP" else None
                    current = current if current in db else None
                elif current and line.startswith(("match ", "softmatch ")):
                    m = _parse_match(line.rstrip("\n"), line.startswith("soft"))
                    if m:
                        db[current].append(m)
    except OSError:
        db = _builtin()
    _DB = db
    return db


def _builtin() -> dict[str, list[Match]]:
    return {"NULL": [
        Match("ssh", r"^SSH-([\d.]+)-OpenSSH_([\w._-]+)[ -]{1,2}Debian[ -_]([^\r\n]+)\r?\n", "",
              {"p": "OpenSSH", "v": "$2 Debian $3", "i": "protocol $1", "o": "Linux"}, False),
        Match("ssh", r"^SSH-([\d.]+)-OpenSSH_([\w._-]+)", "",
              {"p": "OpenSSH", "v": "$2", "i": "protocol $1"}, False),
        Match("ssh", r"^SSH-([\d.]+)-", "", {"i": "protocol $1"}, True),
        Match("ftp", r"^220[ -].*ftp", "i", {}, True),
        Match("smtp", r"^220[ -].*(smtp|mail)", "i", {}, True)],
        "GetRequest": [
        Match("http", r"^HTTP/1\.[01] \d\d\d .*\r\nServer: ([^\r\n]+)", "s", {"p": "$1"}, False),
        Match("http", r"^HTTP/1\.[01] \d\d\d", "", {}, True)]}


def _fill(template: str, m) -> str:
    def group(n: int) -> str:
        try:
            return (m.group(n) or b"").decode("latin-1")
        except (IndexError, re.error):
            return ""

    def sub(mm):
        name, args = mm.group(1), mm.group(2)
        if name is None:
            return group(int(mm.group(3)))
        parts = [a.strip() for a in args.split(",")]
        text = group(int(parts[0]))
        if name == "P":
            return "".join(c for c in text if 32 <= ord(c) < 127)
        if name == "SUBST" and len(parts) == 3:
            return text.replace(parts[1].strip('"'), parts[2].strip('"'))
        return text

    return re.sub(r"\$(?:(P|SUBST|I)\(([^)]*)\)|(\d))", sub, template).strip()


def identify(probe: str, data: bytes, db=None):
    """(service, fields, soft) of the first match of data for probe, else None."""
    db = db or load_probes()
    soft = None
    for name in ([probe, "NULL"] if probe != "NULL" else ["NULL"]):
        for match in db.get(name, []):
            m = match.search(data)
            if not m:
                continue
            fields = {k: ([_fill(c, m) for c in v] if k == "cpe" else _fill(v, m))
                      for k, v in match.fields.items()}
            if not match.soft:
                return match.service, fields, False
            soft = soft or (match.service, fields, True)
    return soft


def _exchange(addr, family, wait: float):
    """('wrapped'|'data'|'silent'|'error', bytes, probe name)."""
    def read(sock, until):
        chunks = b""
        while time.monotonic() < until:
            sock.settimeout(max(0.01, until - time.monotonic()))
            try:
                data = sock.recv(4096)
            except socket.timeout:
                break
            except OSError:
                return chunks, True
            if not data:
                return chunks, True
            chunks += data
            if len(chunks) > 16384:
                break
            until = min(until, time.monotonic() + 0.2)   # more of the same banner, briefly
        return chunks, False

    try:
        with socket.create_connection(addr, timeout=wait) as s:
            started = time.monotonic()
            data, closed = read(s, started + wait)
            if data:
                return "data", data, "NULL"
            if closed:
                return "wrapped", b"", "NULL"
    except OSError:
        return "error", b"", "NULL"
    try:
        with socket.create_connection(addr, timeout=wait) as s:
            s.sendall(GET)
            data, closed = read(s, time.monotonic() + wait)
            if data:
                return "data", data, "GetRequest"
            return ("wrapped" if closed else "silent"), b"", "GetRequest"
    except OSError:
        return "error", b"", "GetRequest"


def detect_services(host, timing, opts) -> None:
    """Fill in -sV results on host.ports (open TCP ports)."""
    host.service_scan = True
    targets = [p for p in host.ports if p.proto == "tcp" and p.state == "open"]
    if not targets:
        return
    wait = WAIT.get(timing.level, 2.0)
    db = load_probes()

    def one(p):
        addr = (host.addr, p.port) if host.family == socket.AF_INET else \
            (host.addr, p.port, 0, 0)
        return p, _exchange(addr, host.family, wait)

    with ThreadPoolExecutor(max_workers=min(32, len(targets))) as pool:
        for p, (kind, data, probe) in pool.map(one, targets):
            if kind == "wrapped":
                p.detected, p.method, p.conf = "tcpwrapped", "probed", 8
                continue
            if kind != "data":
                continue
            p.banner = data[:256].decode("latin-1")
            found = identify(probe, data, db)
            if not found:
                continue
            service, fields, soft = found
            p.detected, p.method, p.conf = service, "probed", 10 if not soft else 8
            p.product = fields.get("p") or None
            p.version = fields.get("v") or None
            p.extrainfo = fields.get("i") or None
            p.ostype = fields.get("o") or None
            p.cpes = [c for c in fields.get("cpe", []) if c.startswith("cpe:/o:")]
