"""What a scan found: hosts, ports, OS guesses (plain data, shared by the outputs)."""

from __future__ import annotations

from dataclasses import dataclass, field

# nmap's port-state order (its enum), used for "Not shown" and summaries
STATE_ORDER = ["closed", "open", "filtered", "unfiltered", "open|filtered", "closed|filtered"]
PROTO_ORDER = ["tcp", "udp", "sctp"]
SCAN_TYPES = {"syn": "syn", "connect": "connect", "fin": "fin", "xmas": "xmas", "null": "null",
              "ack": "ack", "udp": "udp"}


@dataclass
class PortResult:
    port: int
    proto: str
    state: str
    reason: str
    ttl: int = 0
    service: str | None = None      # nmap-services name (None: not in the table)
    product: str | None = None      # -sV
    version: str | None = None
    extrainfo: str | None = None
    ostype: str | None = None
    detected: str | None = None     # service name found by -sV (overrides `service`)
    method: str = "table"
    conf: int = 3
    banner: str | None = None
    cpes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str | None:
        return self.detected or self.service

    @property
    def version_text(self) -> str:
        parts = [p for p in (self.product, self.version) if p]
        text = " ".join(parts)
        if self.extrainfo:
            text = f"{text} ({self.extrainfo})" if text else f"({self.extrainfo})"
        return text


@dataclass
class OsMatch:
    name: str
    accuracy: int
    line: int = 0
    classes: list[dict] = field(default_factory=list)   # vendor, osfamily, osgen, type, cpe


@dataclass
class OsResult:
    matches: list[OsMatch] = field(default_factory=list)
    exact: bool = False
    fingerprint: str = ""
    ports_used: list[tuple[str, str, int]] = field(default_factory=list)  # state, proto, port
    distance: int | None = None
    uptime: float | None = None              # seconds
    uptime_note: str | None = None            # why there is no uptime guess
    tcp_seq_index: int | None = None
    tcp_seq_difficulty: str | None = None
    ipid_seq: str | None = None
    reason: str | None = None                 # why OS detection could not run well


@dataclass
class HostResult:
    addr: str
    family: int
    name: str | None = None
    up: bool = False
    reason: str = "no-response"
    reason_ttl: int = 0
    latency: float | None = None
    mac: str | None = None
    vendor: str | None = None
    local: bool = False
    ports: list[PortResult] = field(default_factory=list)
    scans: list[tuple[str, str, list[int]]] = field(default_factory=list)  # type, proto, ports
    os: OsResult | None = None
    service_scan: bool = False
    start: float = 0.0
    end: float = 0.0
    srtt: float | None = None
    rttvar: float | None = None
    timeout: float | None = None
    timed_out: bool = False

    @property
    def display(self) -> str:
        return f"{self.name} ({self.addr})" if self.name else self.addr


def ignored_states(host: HostResult, verbose: int = 0, debug: int = 0,
                   open_only: bool = False) -> list[str]:
    """States nmap would leave out of the port table ("Not shown"): more than 25
    ports in that state (x (verbose + 1)); never open; --open hides every state
    that cannot be open."""
    if debug > 2:
        return []
    counts: dict[str, int] = {}
    for p in host.ports:
        counts[p.state] = counts.get(p.state, 0) + 1
    limit = 25 * (verbose + 1 + 5 * debug) if (verbose or debug) else 25
    out = []
    for state in STATE_ORDER:
        n = counts.get(state, 0)
        if not n or state == "open":
            continue
        if open_only and state not in ("open|filtered", "unfiltered"):
            out.append(state)
        elif state == "open|filtered" and verbose > 2:
            continue
        elif n > limit:
            out.append(state)
    return out


def not_shown(host: HostResult, ignored: list[str]) -> list[tuple[int, str, str, str]]:
    """(count, state, proto, reason) groups of the ignored ports, in nmap's order:
    state order, protocol, then most common reason first."""
    groups: dict[tuple[str, str, str], int] = {}
    for p in host.ports:
        if p.state in ignored:
            key = (p.state, p.proto, p.reason)
            groups[key] = groups.get(key, 0) + 1
    out = []
    for state in ignored:
        for proto in PROTO_ORDER:
            rows = [(n, r) for (s, pr, r), n in groups.items() if s == state and pr == proto]
            rows.sort(key=lambda x: (-x[0], x[1]))
            out.extend((n, state, proto, r) for n, r in rows)
    return out


def shown_ports(host: HostResult, ignored: list[str]) -> list[PortResult]:
    rows = [p for p in host.ports if p.state not in ignored]
    rows.sort(key=lambda p: (PROTO_ORDER.index(p.proto), p.port))
    return rows
