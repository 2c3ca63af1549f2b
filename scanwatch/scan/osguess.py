"""-O: probe, fingerprint, match against nmap-os-db, and say how sure we are.

An exact (100%) match is reported as nmap does (`Running:`, `OS details:`);
otherwise the best matches of at least 85% (nmap's guess threshold) are
reported as guesses (`Running (JUST GUESSING):`, `Aggressive OS guesses:`,
`No exact OS matches`). Without nmap-os-db only the TTL family is guessed.
The uptime comes from the TCP timestamp clock only when the six timestamps
advance at a plausible tick rate; Linux randomises them per connection, and
then there is no guess.
"""

from __future__ import annotations

import random
import socket

from . import osdb
from .osfp import IPID_NAMES, Fingerprinter, format_fingerprint
from .osprobe import send_probes
from .results import HostResult, OsMatch, OsResult

GUESS_THRESHOLD = 0.85


def _difficulty(index: int) -> str:
    for limit, text in ((3, "Trivial joke"), (6, "Easy"), (11, "Medium"), (12, "Formidable"),
                        (16, "Worthy challenge")):
        if index < limit:
            return text
    return "Good luck!"


def detect_os(host: HostResult, timing, opts) -> OsResult:
    if host.family != socket.AF_INET:
        return OsResult(reason="OS detection is implemented for IPv4 targets only.")
    tcp = {p.port: p.state for p in host.ports if p.proto == "tcp"}
    udp = {p.port: p.state for p in host.ports if p.proto == "udp"}
    open_port = next((p for p, s in sorted(tcp.items()) if s == "open"), None)
    closed_port = next((p for p, s in sorted(tcp.items()) if s == "closed"), None)
    closed_udp = next((p for p, s in sorted(udp.items()) if s == "closed"), None)
    warn = None
    if open_port is None or closed_port is None:
        warn = ("Warning: OSScan results may be unreliable because we could not find at "
                "least 1 open and 1 closed port")
    open_port = open_port or 80
    closed_port = closed_port or random.randint(30000, 39999)
    closed_udp = closed_udp or random.randint(30000, 39999)
    wait = max(0.3, min(3 * (host.srtt or 0.1), timing.max_rtt))
    ans = send_probes(host.addr, open_port, closed_port, closed_udp, wait)
    fp = Fingerprinter(ans)
    tests = fp.tests()
    result = OsResult(reason=warn, fingerprint=format_fingerprint(tests),
                      distance=fp.distance,
                      ports_used=[("open", "tcp", open_port), ("closed", "tcp", closed_port),
                                  ("closed", "udp", closed_udp)])
    result.uptime, result.uptime_note = fp.uptime()
    seq = tests.get("SEQ", {})
    if "SP" in seq:
        result.tcp_seq_index = int(seq["SP"], 16)
        result.tcp_seq_difficulty = _difficulty(result.tcp_seq_index)
    if seq.get("TI") in IPID_NAMES:
        result.ipid_seq = IPID_NAMES[seq["TI"]]
    points, refs = osdb.load()
    if not refs:
        result.matches = _ttl_family(tests)
        return result
    best = osdb.best_matches(tests, points, refs, limit=10)
    result.exact = bool(best) and best[0][0] >= 1.0
    keep = [(s, r) for s, r in best if s >= (1.0 if result.exact else GUESS_THRESHOLD)]
    result.matches = [OsMatch(r.name, int(s * 100 + 1e-9), r.line, r.classes)
                      for s, r in keep]
    return result


def _ttl_family(tests) -> list[OsMatch]:
    """No nmap-os-db: the initial TTL alone (64 Linux/Unix, 128 Windows, 255 devices)."""
    tg = tests.get("T1", {}).get("TG") or tests.get("IE", {}).get("TG")
    if not tg:
        return []
    family = {"40": ("Linux", "Linux"), "80": ("Microsoft", "Windows"),
              "FF": ("", "embedded")}.get(tg)
    if family is None:
        return []
    vendor, fam = family
    return [OsMatch(f"{fam} (initial TTL {int(tg, 16)}; nmap-os-db not installed)", 50, 0,
                    [{"vendor": vendor or fam, "osfamily": fam, "osgen": "", "type": "",
                      "cpe": []}])]
