"""The scan itself, once the command line is parsed (scanwatch.scan.main): refuses what
nmap would refuse (one line, exit 1), discovers hosts, scans each live one (TCP then
UDP), runs -sV and -O when asked, and reports host by host.
"""

from __future__ import annotations

import socket
import sys
import time

from . import net
from .main import _fail
from .ports import PortSpecError, load_services, select_ports
from .report import OutputError, Reporter
from .results import HostResult, PortResult
from .targets import TargetError, parse_targets
from .timing import timing_for

SCAN_XML_TYPE = {"syn": "syn", "connect": "connect", "fin": "fin", "xmas": "xmas",
                 "null": "null", "ack": "ack"}
TCP_NAMES = {"syn": "SYN Stealth Scan", "connect": "Connect Scan", "fin": "FIN Scan",
             "xmas": "XMAS Scan", "null": "NULL Scan", "ack": "ACK Scan"}


def scan(opts, argv: list[str]) -> int:
    if not opts.targets:
        return _fail("No targets were specified (see `scanwatch scan -h`)")
    privileged = opts.privileged if opts.privileged is not None else net.can_raw()
    if opts.port_scan and opts.tcp_scan is None and not opts.udp:
        opts.tcp_scan = "syn" if privileged else "connect"
    if not privileged:
        if opts.os_detect:
            return _fail("TCP/IP fingerprinting (for OS scan) requires root privileges.")
        if opts.needs_root():
            return _fail("You requested a scan type which requires root privileges.")
    if opts.rpc_alias:
        print("WARNING: -sR is now an alias for -sV and activates version detection as well "
              "as RPC scan.", file=sys.stderr)
    family = socket.AF_INET6 if opts.ipv6 else socket.AF_INET
    timing = timing_for(opts)
    services = load_services()
    chosen: dict[str, list[int]] = {"tcp": [], "udp": [], "sctp": []}
    if opts.port_scan:
        warnings: list[str] = []
        requested = (("tcp",) if opts.tcp_scan else ()) + (("udp",) if opts.udp else ())
        try:
            chosen = select_ports(services, requested, opts.ports, opts.fast,
                                  opts.top_ports, warnings)
        except PortSpecError as exc:
            return _fail(str(exc))
        if opts.ports and not opts.udp and "U:" in opts.ports:
            warnings.append('WARNING: Your ports include "U:" but you haven\'t specified UDP '
                            'scan with -sU.')
        if opts.ports and not opts.tcp_scan and "T:" in opts.ports:
            warnings.append('WARNING: Your ports include "T:" but you haven\'t specified any '
                            'TCP scan type.')
        if opts.tcp_scan and not chosen["tcp"]:
            warnings.append("WARNING: a TCP scan type was requested, but no tcp ports were "
                            "specified.  Skipping this scan type.")
        if opts.udp and not chosen["udp"]:
            warnings.append("WARNING: UDP scan was requested, but no udp ports were specified."
                            "  Skipping this scan type.")
        for w in warnings:
            print(w, file=sys.stderr)
    try:
        targets = parse_targets(opts.targets, family)
    except TargetError as exc:
        return _fail(str(exc))
    scans = []
    if opts.port_scan:
        if opts.tcp_scan and chosen["tcp"]:
            scans.append((SCAN_XML_TYPE[opts.tcp_scan], "tcp", chosen["tcp"]))
        if opts.udp and chosen["udp"]:
            scans.append(("udp", "udp", chosen["udp"]))
    start = time.time()
    try:
        rep = Reporter(opts, argv, start)
    except OutputError as exc:
        return _fail(str(exc))
    rep.begin(scans, chosen)
    if opts.tcp_scan == "connect":
        net.raise_nofile(1 << 16)
    found = _discover(targets, opts, timing, privileged, rep)
    notes = []
    for t in targets:
        f = found[t.addr]
        host = HostResult(t.addr, t.family, t.name, up=f.up, reason=f.reason,
                          reason_ttl=f.ttl, latency=f.rtt, mac=f.mac,
                          local=f.reason == "localhost-response")
        host.start = time.time()
        if host.up and opts.port_scan:
            _scan_host(host, scans, opts, timing, privileged, services, rep)
        host.end = time.time()
        if host.up and privileged and not host.local and host.family == socket.AF_INET:
            _add_mac(host)
        rep.host(host, opts.port_scan)
    up = sum(1 for t in targets if found[t.addr].up)
    if len(targets) == 1 and not up and not opts.no_ping:
        notes.append("Note: Host seems down. If it is really up, but blocking our ping probes, "
                     "try -Pn")
    if opts.port_scan and opts.version and up:
        notes.append("Service detection performed (light: banner and HTTP probes, matched "
                     "against nmap-service-probes).")
    if opts.os_detect and up:
        notes.append("OS detection performed. Matched against nmap-os-db where installed.")
    rep.finish(len(targets), opts.port_scan, notes)
    return 0


def _discover(targets, opts, timing, privileged, rep):
    from .discovery import Discovery, Found

    if opts.list_only:
        return {t.addr: Found(False) for t in targets}
    if opts.no_ping:
        return {t.addr: Found(True, "user-set") for t in targets}
    if opts.verbose:
        rep.say(f"Initiating Ping Scan at {time.strftime('%H:%M')}")
        rep.say(f"Scanning {len(targets)} host{'s' if len(targets) != 1 else ''}")
    t0 = time.monotonic()
    found = Discovery(targets, opts, timing, privileged).run()
    if opts.verbose:
        up = sum(1 for f in found.values() if f.up)
        rep.say(f"Completed Ping Scan at {time.strftime('%H:%M')}, "
                f"{time.monotonic() - t0:.2f}s elapsed ({len(targets)} total hosts, {up} up)")
    return found


def _add_mac(host: HostResult) -> None:
    from .discovery import arp_cache_mac, mac_vendor

    try:
        route = net.route_to(host.addr, host.family)
    except OSError:
        return
    if not (route.onlink and route.mac):
        return
    host.mac = host.mac or arp_cache_mac(host.addr)
    if host.mac:
        host.vendor = mac_vendor(host.mac)


def _scan_host(host: HostResult, scans, opts, timing, privileged, services, rep) -> None:
    progress = True
    srtts = []
    for kind, proto, ports in scans:
        name = TCP_NAMES.get(kind, "UDP Scan")
        if opts.verbose:
            rep.say(f"Initiating {name} at {time.strftime('%H:%M')}")
            rep.say(f"Scanning {host.display} [{len(ports)} port{'s' if len(ports) != 1 else ''}]")
        t0 = time.monotonic()
        engine = _engine(kind, host, ports, timing, progress)
        try:
            results = engine.run()
        finally:
            close = getattr(engine, "close", None)
            if close:
                close()
        if engine.rtt.srtt is not None:
            srtts.append(engine.rtt)
        if getattr(engine, "timed_out", False) or (timing.host_timeout and len(results) < len(ports)):
            host.timed_out = True
        for port in ports:
            state, reason, ttl = results[port]
            host.ports.append(PortResult(port, proto, state, reason, ttl,
                                         services.name(port, proto)))
            if opts.verbose and state == "open":
                rep.say(f"Discovered open port {port}/{proto} on {host.addr}")
        if opts.verbose:
            rep.say(f"Completed {name} at {time.strftime('%H:%M')}, "
                    f"{time.monotonic() - t0:.2f}s elapsed ({len(ports)} total ports)")
    if srtts:
        best = srtts[0]
        host.srtt, host.rttvar, host.timeout = best.srtt, best.rttvar, best.timeout
        if host.latency is None:
            host.latency = best.srtt
    if opts.version:
        from .service import detect_services
        detect_services(host, timing, opts)
    if opts.os_detect:
        from .osguess import detect_os
        host.os = detect_os(host, timing, opts)


def _engine(kind: str, host: HostResult, ports: list[int], timing, progress: bool):
    if kind == "connect":
        from .connect import ConnectScan
        return ConnectScan(host.addr, host.family, ports, timing, progress)
    if kind == "udp":
        from .probes.udp import UdpScan
        return UdpScan(host.addr, host.family, ports, timing, progress)
    from .probes.raw import TcpRawScan
    return TcpRawScan(host.addr, host.family, ports, kind, timing, progress)
