"""Port selection with nmap's semantics: service table, top ports, `-p` specs.

The service table is nmap's own `nmap-services` when it is installed (names and
open-frequencies); otherwise the list shipped in scanwatch/scan/data (the top ports of
each protocol, generated from nmap-services by `python -m scanwatch.scan.ports`).

Top-N selection follows nmap: most frequent first, equal frequencies by port
number. `-p` follows nmap's grammar: comma-separated items, `T:`/`U:`/`S:` switch
the protocol for the items that follow (unprefixed items apply to every protocol),
`a-b`, `-b`, `a-`, `-`, service names with `*`/`?` wildcards (case-insensitive,
starting with a lowercase letter), and `[...]` for "only ports in the table".
"""

from __future__ import annotations

import fnmatch
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

NMAP_SERVICES = "/usr/share/nmap/nmap-services"
FALLBACK = Path(__file__).resolve().parent / "data" / "top-ports.tsv"
PROTOS = ("tcp", "udp", "sctp")
PREFIX = {"T": "tcp", "U": "udp", "S": "sctp"}
ILLEGAL = ('Your port specifications are illegal.  Example of proper form: '
           '"-100,200-1024,T:3000-4000,U:60000-"')


class PortSpecError(ValueError):
    """A `-p` argument nmap would refuse; str() is the one-line message."""


@dataclass
class Services:
    """port/proto -> name and frequency; the source file it came from."""

    source: str
    names: dict[tuple[int, str], str] = field(default_factory=dict)
    freq: dict[tuple[int, str], float] = field(default_factory=dict)

    def name(self, port: int, proto: str) -> str | None:
        return self.names.get((port, proto))

    def ports(self, proto: str) -> list[int]:
        return sorted(p for (p, pr) in self.names if pr == proto)

    def ranked(self, proto: str) -> list[int]:
        """Ports of proto, most frequent first; equal frequencies by port (as nmap)."""
        rows = [(-f, p) for (p, pr), f in self.freq.items() if pr == proto]
        rows.sort()
        return [p for _, p in rows]

    def top(self, proto: str, n: int) -> list[int]:
        return sorted(self.ranked(proto)[:n])


def _parse_services(lines, source: str) -> Services:
    svc = Services(source)
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 2 or "/" not in fields[1]:
            continue
        port_s, _, proto = fields[1].partition("/")
        if proto not in PROTOS or not port_s.isdigit():
            continue
        key = (int(port_s), proto)
        try:
            freq = float(fields[2]) if len(fields) > 2 and not fields[2].startswith("#") else 0.0
        except ValueError:
            freq = 0.0
        svc.names.setdefault(key, fields[0])
        svc.freq.setdefault(key, freq)
    return svc


_CACHE: dict[str, Services] = {}


def load_services(path: str | None = None) -> Services:
    """nmap-services when readable (or `path`), else the shipped fallback list."""
    candidates = [path] if path else [os.environ.get("SCANWATCH_NMAP_SERVICES") or NMAP_SERVICES,
                                      str(FALLBACK)]
    for cand in candidates:
        if cand in _CACHE:
            return _CACHE[cand]
        try:
            with open(cand, encoding="utf-8", errors="replace") as f:
                svc = _parse_services(f, cand)
        except OSError:
            continue
        _CACHE[cand] = svc
        return svc
    return Services("none")


# --- -p specs -------------------------------------------------------------

def _number(text: str) -> int:
    if not text.isdigit():
        raise PortSpecError(ILLEGAL)
    value = int(text)
    if value > 65535:
        raise PortSpecError("Ports specified must be between 0 and 65535 inclusive")
    return value


def _range(text: str) -> tuple[int, int]:
    if text == "-":
        return 1, 65535
    if text.startswith("-"):
        lo, hi = 1, _number(text[1:])
    elif text.endswith("-"):
        lo, hi = _number(text[:-1]), 65535
    elif "-" in text:
        a, _, b = text.partition("-")
        lo, hi = _number(a), _number(b)
    else:
        lo = hi = _number(text)
    if lo > hi:
        raise PortSpecError(f"Your port range {lo}-{hi} is backwards. Did you mean {hi}-{lo}?")
    return lo, hi


def _is_name(text: str) -> bool:
    return bool(text) and (text[0].islower() or text[0] in "*?")


def parse_port_spec(spec: str, services: Services, protos: tuple[str, ...] = PROTOS,
                    warnings: list[str] | None = None) -> dict[str, list[int]]:
    """Ports per protocol selected by an nmap `-p` argument (sorted, unique).

    Unprefixed items go to every protocol in `protos`. Duplicates are merged, with
    nmap's warning appended to `warnings`. Raises PortSpecError with nmap's wording.
    """
    out: dict[str, set[int]] = {p: set() for p in PROTOS}
    spec = "".join(spec.split())
    current: tuple[str, ...] = protos
    if not spec:
        raise PortSpecError(ILLEGAL)
    dup = False
    items = spec.split(",")
    for i, item in enumerate(items):
        if len(item) >= 2 and item[1] == ":" and item[0] in PREFIX:
            current = (PREFIX[item[0]],)
            item = item[2:]
            if not item:
                if i == len(items) - 1:
                    continue
                raise PortSpecError(ILLEGAL)
        if not item:
            raise PortSpecError(ILLEGAL)
        only_known = item.startswith("[") and item.endswith("]") and len(item) > 2
        if only_known:
            item = item[1:-1]
        for proto in current:
            chosen = _select(item, proto, services, only_known)
            if chosen is None:
                continue
            if out[proto] & chosen:
                dup = True
            out[proto] |= chosen
        if _is_name(item) and not any(_select(item, p, services, only_known)
                                      for p in current):
            raise PortSpecError(f"Found no matches for the service mask '{item}' "
                                f"and your specified protocols")
    if not any(out.values()):
        raise PortSpecError("No ports specified")
    if dup and warnings is not None:
        warnings.append("WARNING: Duplicate port number(s) specified.")
    return {p: sorted(v) for p, v in out.items()}


def _select(item: str, proto: str, services: Services, only_known: bool) -> set[int] | None:
    if _is_name(item):
        pattern = item.lower()
        if any(c not in "abcdefghijklmnopqrstuvwxyz0123456789-_.*?/+" for c in pattern):
            raise PortSpecError(ILLEGAL)
        return {p for (p, pr), name in services.names.items()
                if pr == proto and fnmatch.fnmatchcase(name.lower(), pattern)}
    if item[0].isdigit() or item[0] == "-":
        lo, hi = _range(item)
        if only_known:
            return {p for (p, pr) in services.names if pr == proto and lo <= p <= hi}
        return set(range(lo, hi + 1))
    raise PortSpecError(ILLEGAL)


def compress(ports: list[int]) -> str:
    """[1,2,3,5] -> "1-3,5" (nmap's scaninfo/grepable form)."""
    parts, i = [], 0
    ports = sorted(ports)
    while i < len(ports):
        j = i
        while j + 1 < len(ports) and ports[j + 1] == ports[j] + 1:
            j += 1
        parts.append(str(ports[i]) if i == j else f"{ports[i]}-{ports[j]}")
        i = j + 1
    return ",".join(parts)


def select_ports(services: Services, protos: tuple[str, ...], spec: str | None = None,
                 fast: bool = False, top: int | None = None,
                 warnings: list[str] | None = None) -> dict[str, list[int]]:
    """Ports per protocol from -p / -F / --top-ports / the default top 1000.

    `protos` are the protocols being scanned: unprefixed -p items and the top-port
    lists apply to them; `U:`-style items name their protocol whatever is scanned
    (nmap lists them too, and warns)."""
    if spec is not None:
        chosen = parse_port_spec(spec, services, protos, warnings=warnings)
        if top is not None:
            chosen = {p: sorted([x for x in services.ranked(p) if x in set(chosen[p])][:top])
                      for p in PROTOS}
        return chosen
    n = top if top is not None else (100 if fast else 1000)
    return {p: services.top(p, n) if p in protos else [] for p in PROTOS}


# --- the shipped fallback list ------------------------------------------------

def write_fallback(src: str = NMAP_SERVICES, dst: Path = FALLBACK, n: int = 1000) -> int:
    """Write the top-n ports of tcp and udp (rank order) from nmap-services."""
    svc = load_services(src)
    if svc.source != src:
        raise SystemExit(f"cannot read {src}")
    lines = ["# scanwatch scan: fallback service table, used when nmap-services is absent.",
             f"# The top {n} TCP and UDP ports by nmap-services open-frequency (rank order;",
             "# equal frequencies by port). Regenerate: python -m scanwatch.scan.ports",
             "# name\tport/proto\tfrequency"]
    for proto in ("tcp", "udp"):
        for port in svc.ranked(proto)[:n]:
            lines.append(f"{svc.names[(port, proto)]}\t{port}/{proto}\t"
                         f"{svc.freq[(port, proto)]:.6f}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("\n".join(lines) + "\n")
    return len(lines) - 4


if __name__ == "__main__":
    count = write_fallback(*(sys.argv[1:2] or [NMAP_SERVICES]))
    print(f"wrote {count} entries to {FALLBACK}")
