"""nmap's normal (-oN, and the terminal) and grepable (-oG) output formats.

The report lines keep nmap's words (`Nmap scan report for`, `Not shown:`,
`Nmap done:`) so that what reads nmap's output reads ours; the banner names
scanwatch.
"""

from __future__ import annotations

import math
import time

VERSION = "0.1.0"   # scanwatch's version (pyproject.toml); importlib.metadata costs 25 ms
from .results import HostResult, ignored_states, not_shown, shown_ports

NAME = "scanwatch"


def sigdigits(value: float, digits: int = 2) -> str:
    """nmap's latency numbers: `digits` significant digits, fixed notation."""
    if value <= 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(value)))
    text = f"{value:.{decimals}f}"
    if math.floor(math.log10(float(text))) != math.floor(math.log10(value)) and decimals:
        text = f"{value:.{decimals - 1}f}"   # rounding carried into a new digit
    return text


def plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def done_summary(total: int, up: int, elapsed: float) -> str:
    return (f"{plural(total, 'IP address', 'IP addresses')} "
            f"({plural(up, 'host up', 'hosts up')}) scanned in {elapsed:.2f} seconds")


def banner(start: float) -> str:
    return (f"Starting {NAME} {VERSION} scan ( nmap-style ) at "
            f"{time.strftime('%Y-%m-%d %H:%M %Z', time.localtime(start))}")


def file_header(start: float, argv: list[str]) -> str:
    return (f"# {NAME} {VERSION} scan initiated {time.ctime(start)} as: "
            f"{NAME} scan {' '.join(argv)}")


def file_footer(end: float, total: int, up: int, elapsed: float) -> str:
    return f"# Nmap done at {time.ctime(end)} -- {done_summary(total, up, elapsed)}"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [c.ljust(widths[i]) for i, c in enumerate(r[:-1])] + [r[-1]]
        out.append(" ".join(cells).rstrip())
    return out


def reason_text(reason: str, ttl: int) -> str:
    if reason in ("no-response", "conn-refused", "user-set", "localhost-response") or not ttl:
        return reason
    return f"{reason} ttl {ttl}"


def host_up_line(host: HostResult, show_reason: bool) -> str:
    why = ""
    if show_reason and host.reason:
        why = f", received {reason_text(host.reason, host.reason_ttl)}"
    if host.latency is not None:
        return f"Host is up{why} ({sigdigits(host.latency)}s latency)."
    return f"Host is up{why}."


def normal_host(host: HostResult, opts, port_scan: bool) -> list[str]:
    """The lines of one host's report (terminal and -oN)."""
    if getattr(opts, "list_only", False):
        return [f"Nmap scan report for {host.display}"]       # -sL: named, not probed
    if not host.up:
        if opts.verbose:
            return [f"Nmap scan report for {host.display} [host down]"]
        return []
    lines = [f"Nmap scan report for {host.display}", host_up_line(host, opts.reason)]
    if host.timed_out:
        lines.append(f"Skipping host {host.display} due to host timeout")
    if port_scan and host.ports:
        ignored = ignored_states(host, opts.verbose, opts.debug, opts.open_only)
        rows_ports = shown_ports(host, ignored)
        groups = not_shown(host, ignored)
        if not rows_ports:
            lines.append(f"All {len(host.ports)} scanned ports on {host.display} are in "
                         f"ignored states.")
        if groups:
            lines.append("Not shown: " + ", ".join(
                f"{n} {state} {proto} {'port' if n == 1 else 'ports'} ({reason})"
                for n, state, proto, reason in groups))
        elif rows_ports:
            lines.append("")
        if rows_ports:
            header = ["PORT", "STATE", "SERVICE"]
            if opts.reason:
                header.append("REASON")
            if host.service_scan:
                header.append("VERSION")
            rows = [header]
            for p in rows_ports:
                row = [f"{p.port}/{p.proto}", p.state, p.name or "unknown"]
                if opts.reason:
                    row.append(reason_text(p.reason, p.ttl))
                if host.service_scan:
                    row.append(p.version_text)
                rows.append(row)
            lines.extend(_table(rows))
    if host.mac:
        lines.append(f"MAC Address: {host.mac} ({host.vendor or 'Unknown'})")
    if host.service_scan:
        oses = sorted({p.ostype for p in host.ports if p.ostype})
        cpes = sorted({c for p in host.ports for c in p.cpes})
        if oses:
            info = f"Service Info: OS: {', '.join(oses)}"
            lines.append(info + (f"; CPE: {', '.join(cpes)}" if cpes else ""))
    if host.os is not None:
        lines.extend(os_lines(host, opts))
    if port_scan:
        lines.append("")
    return lines


def os_lines(host: HostResult, opts) -> list[str]:
    os_ = host.os
    out = []
    if os_.reason:
        out.append(os_.reason)
    top = os_.matches
    if os_.exact and top:
        families = _running(top[:1] + [m for m in top[1:] if m.accuracy == 100])
        if families:
            out.append(f"Running: {families}")
        cpes = list(dict.fromkeys(c for m in top if m.accuracy == 100 for cl in m.classes
                                  for c in cl.get("cpe", [])))
        if cpes:
            out.append("OS CPE: " + " ".join(cpes))
        out.append("OS details: " + ", ".join(m.name for m in top if m.accuracy == 100))
    elif top:
        guesses = [m for m in top if m.accuracy >= 85][:10] or top[:3]
        families = _running(guesses, with_accuracy=True)
        if families:
            out.append(f"Running (JUST GUESSING): {families}")
        cpes = list(dict.fromkeys(c for m in guesses[:3] for cl in m.classes
                                  for c in cl.get("cpe", [])))
        if cpes:
            out.append("OS CPE: " + " ".join(cpes))
        out.append("Aggressive OS guesses: " + ", ".join(f"{m.name} ({m.accuracy}%)"
                                                        for m in guesses))
        out.append("No exact OS matches for host (test conditions non-ideal).")
    elif not os_.reason:
        out.append("No OS matches for host")
    if os_.fingerprint and (opts.verbose or not os_.exact):
        out.append("TCP/IP fingerprint:")
        out.extend(os_.fingerprint.splitlines())
    if os_.uptime is not None:
        days = os_.uptime / 86400
        since = time.ctime(time.time() - os_.uptime)
        out.append(f"Uptime guess: {days:.3f} days (since {since})")
    elif os_.uptime_note:
        out.append(f"Uptime guess: none ({os_.uptime_note})")
    if os_.distance is not None:
        out.append(f"Network Distance: {plural(os_.distance, 'hop', 'hops')}")
    if opts.verbose and os_.tcp_seq_index is not None:
        out.append(f"TCP Sequence Prediction: Difficulty={os_.tcp_seq_index} "
                   f"({os_.tcp_seq_difficulty})")
    if opts.verbose and os_.ipid_seq:
        out.append(f"IP ID Sequence Generation: {os_.ipid_seq}")
    return out


def _running(matches, with_accuracy: bool = False) -> str:
    """`Linux 4.X|5.X` (nmap's Running line), grouped by vendor/family."""
    seen: dict[str, dict[str, int]] = {}
    for m in matches:
        for cl in m.classes:
            fam = cl.get("osfamily") or ""
            vendor = cl.get("vendor") or ""
            key = fam if fam == vendor or not vendor else f"{vendor} {fam}"
            gens = seen.setdefault(key, {})
            gen = cl.get("osgen") or ""
            gens[gen] = max(gens.get(gen, 0), m.accuracy)
    parts = []
    for key, gens in seen.items():
        names = [g for g in gens if g]
        best = max(gens.values())
        text = f"{key} {'|'.join(names)}".strip() if names else key
        parts.append(f"{text} ({best}%)" if with_accuracy else text)
    return ", ".join(parts[:4])


# --- grepable -----------------------------------------------------------------

def ports_scanned(by: dict[str, list[int]]) -> str:
    """`# Ports scanned: TCP(n;list) UDP(n;list) SCTP(0;) PROTOCOLS(0;)` (-oG with -v)."""
    from .ports import compress

    parts = [f"{label}({len(by.get(proto, []))};{compress(by.get(proto, []))})"
             for label, proto in (("TCP", "tcp"), ("UDP", "udp"), ("SCTP", "sctp"))]
    return "# Ports scanned: " + " ".join(parts) + " PROTOCOLS(0;)"


def grepable_host(host: HostResult, opts, port_scan: bool) -> list[str]:
    name = f"{host.addr} ({host.name or ''})"
    if getattr(opts, "list_only", False):
        return [f"Host: {name}\tStatus: Unknown"]
    if not host.up:
        return [f"Host: {name}\tStatus: Down"] if opts.verbose else []
    lines = [f"Host: {name}\tStatus: Up"]
    if not port_scan or not host.ports:
        return lines
    ignored = ignored_states(host, opts.verbose, opts.debug, opts.open_only)
    entries = []
    for p in shown_ports(host, ignored):
        version = p.version_text.replace("/", "|") if host.service_scan else ""
        entries.append(f"{p.port}/{p.state}/{p.proto}//{p.name or ''}//{version}/")
    line = f"Host: {name}\tPorts: {', '.join(entries)}"
    if len(ignored) == 1:
        n = sum(1 for p in host.ports if p.state == ignored[0])
        line += f"\tIgnored State: {ignored[0]} ({n})"
    os_ = host.os
    if os_ is not None:
        if os_.matches and os_.exact:
            line += "\tOS: " + "|".join(m.name for m in os_.matches if m.accuracy == 100)
        if os_.tcp_seq_index is not None:
            line += f"\tSeq Index: {os_.tcp_seq_index}"
        if os_.ipid_seq:
            line += f"\tIP ID Seq: {os_.ipid_seq}"
    lines.append(line)
    return lines
