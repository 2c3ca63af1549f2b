"""nmap's XML output (-oX) and scanwatch's JSON (--json).

The XML has nmap's element and attribute names (nmaprun, scaninfo, host,
status, address, hostnames, ports, extraports/extrareasons, port, state,
service, os/osmatch/osclass, uptime, distance, times, runstats/finished/hosts)
so tools that read nmap's XML read ours; `scanner` says scanwatch.
"""

from __future__ import annotations

import json
import socket
import time
from xml.sax.saxutils import quoteattr

from .output import NAME, VERSION, done_summary
from .ports import compress
from .results import HostResult, ignored_states, not_shown, shown_ports


def _attrs(**kw) -> str:
    return "".join(f" {k.rstrip('_')}={quoteattr(str(v))}" for k, v in kw.items()
                   if v is not None)


def xml_header(start: float, argv: list[str], scans: list[tuple[str, str, list[int]]],
               opts) -> str:
    args = f"{NAME} scan {' '.join(argv)}"
    comment = args.replace("&", "&amp;").replace("<", "&lt;").replace("--", "-&#45;")
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<!DOCTYPE nmaprun>",
             f"<!-- {NAME} {VERSION} scan initiated {time.ctime(start)} as: {comment} -->",
             f"<nmaprun{_attrs(scanner=NAME, args=args, start=int(start))}"
             f"{_attrs(startstr=time.ctime(start), version=VERSION, xmloutputversion='1.05')}>"]
    for kind, proto, ports in scans:
        lines.append(f"<scaninfo{_attrs(type=kind, protocol=proto, numservices=len(ports))}"
                     f"{_attrs(services=compress(ports))}/>")
    lines.append(f'<verbose level="{opts.verbose}"/>')
    lines.append(f'<debugging level="{opts.debug}"/>')
    return "\n".join(lines) + "\n"


def _service_xml(p) -> str:
    name = p.name or "unknown"
    attrs = _attrs(name=name, product=p.product, version=p.version, extrainfo=p.extrainfo,
                   ostype=p.ostype, method=p.method, conf=p.conf)
    return f"<service{attrs}/>"


def xml_host(host: HostResult, opts, port_scan: bool) -> str:
    if not host.up:
        return ""
    out = [f"<host{_attrs(starttime=int(host.start), endtime=int(host.end))}>"
           f"<status{_attrs(state='up', reason=host.reason, reason_ttl=host.reason_ttl)}/>"]
    kind = "ipv4" if host.family == socket.AF_INET else "ipv6"
    out.append(f"<address{_attrs(addr=host.addr, addrtype=kind)}/>")
    if host.mac:
        out.append(f"<address{_attrs(addr=host.mac, addrtype='mac', vendor=host.vendor)}/>")
    out.append("<hostnames>")
    if host.name:
        out.append(f"<hostname{_attrs(name=host.name, type='user')}/>")
    out.append("</hostnames>")
    if port_scan and host.ports:
        ignored = ignored_states(host, opts.verbose, opts.debug, opts.open_only)
        out.append("<ports>")
        for state in ignored:
            groups = [g for g in not_shown(host, ignored) if g[1] == state]
            count = sum(g[0] for g in groups)
            out.append(f"<extraports{_attrs(state=state, count=count)}>")
            for n, _, proto, reason in groups:
                ports = [p.port for p in host.ports if p.state == state and p.proto == proto
                         and p.reason == reason]
                out.append(f"<extrareasons{_attrs(reason=reason, count=n, proto=proto)}"
                           f"{_attrs(ports=compress(ports))}/>")
            out.append("</extraports>")
        for p in shown_ports(host, ignored):
            out.append(f"<port{_attrs(protocol=p.proto, portid=p.port)}>"
                       f"<state{_attrs(state=p.state, reason=p.reason, reason_ttl=p.ttl)}/>"
                       f"{_service_xml(p)}</port>")
        out.append("</ports>")
    if host.os is not None:
        out.extend(_os_xml(host))
    if host.srtt is not None:
        out.append(f"<times{_attrs(srtt=int(host.srtt * 1e6), rttvar=int((host.rttvar or 0) * 1e6))}"
                   f"{_attrs(to=int((host.timeout or 0) * 1e6))}/>")
    out.append("</host>")
    return "\n".join(out) + "\n"


def _os_xml(host: HostResult) -> list[str]:
    os_ = host.os
    out = ["<os>"]
    for state, proto, port in os_.ports_used:
        out.append(f"<portused{_attrs(state=state, proto=proto, portid=port)}/>")
    for m in os_.matches[:10]:
        out.append(f"<osmatch{_attrs(name=m.name, accuracy=m.accuracy, line=m.line)}>")
        for cl in m.classes:
            cpes = "".join(f"<cpe>{c}</cpe>" for c in cl.get("cpe", []))
            out.append(f"<osclass{_attrs(type=cl.get('type'), vendor=cl.get('vendor'))}"
                       f"{_attrs(osfamily=cl.get('osfamily'), osgen=cl.get('osgen') or None)}"
                       f"{_attrs(accuracy=m.accuracy)}>{cpes}</osclass>")
        out.append("</osmatch>")
    if os_.fingerprint:
        out.append(f"<osfingerprint{_attrs(fingerprint=os_.fingerprint)}/>")
    out.append("</os>")
    if os_.uptime is not None:
        out.append(f"<uptime{_attrs(seconds=int(os_.uptime))}"
                   f"{_attrs(lastboot=time.ctime(time.time() - os_.uptime))}/>")
    if os_.distance is not None:
        out.append(f"<distance{_attrs(value=os_.distance)}/>")
    if os_.tcp_seq_index is not None:
        out.append(f"<tcpsequence{_attrs(index=os_.tcp_seq_index, difficulty=os_.tcp_seq_difficulty)}/>")
    if os_.ipid_seq:
        out.append(f"<ipidsequence{_attrs(class_=os_.ipid_seq)}/>")
    return out


def xml_footer(end: float, total: int, up: int, elapsed: float, exit: str = "success",
               error: str | None = None) -> str:
    summary = f"Nmap done at {time.ctime(end)}; {done_summary(total, up, elapsed)}"
    return (f"<runstats><finished{_attrs(time=int(end), timestr=time.ctime(end))}"
            f"{_attrs(summary=summary, elapsed=f'{elapsed:.2f}', exit=exit, errormsg=error)}/>"
            f"<hosts{_attrs(up=up, down=total - up, total=total)}/>\n</runstats>\n</nmaprun>\n")


# --- JSON --------------------------------------------------------------------

def json_document(start: float, end: float, argv: list[str], scans, hosts: list[HostResult],
                  total: int, opts, port_scan: bool) -> str:
    doc = {
        "scanner": NAME, "version": VERSION, "args": argv,
        "start": round(start, 3), "end": round(end, 3), "elapsed": round(end - start, 3),
        "scaninfo": [{"type": k, "protocol": p, "numservices": len(ports),
                      "services": compress(ports)} for k, p, ports in scans],
        "hosts": [_host_json(h, opts, port_scan) for h in hosts if h.up],
        "stats": {"total": total, "up": sum(1 for h in hosts if h.up),
                  "down": total - sum(1 for h in hosts if h.up)},
    }
    return json.dumps(doc, indent=2)


def _host_json(h: HostResult, opts, port_scan: bool) -> dict:
    d = {"address": h.addr, "family": "ipv4" if h.family == socket.AF_INET else "ipv6",
         "hostname": h.name, "status": "up", "reason": h.reason,
         "latency": h.latency, "mac": h.mac, "vendor": h.vendor}
    if port_scan:
        ignored = ignored_states(h, opts.verbose, opts.debug, opts.open_only)
        d["ports"] = [{"port": p.port, "protocol": p.proto, "state": p.state,
                       "reason": p.reason, "reason_ttl": p.ttl, "service": p.name,
                       **({"product": p.product, "version": p.version,
                           "extrainfo": p.extrainfo} if h.service_scan else {})}
                      for p in shown_ports(h, ignored)]
        d["extraports"] = [{"count": n, "state": s, "protocol": pr, "reason": r,
                            "ports": compress([p.port for p in h.ports if p.state == s
                                               and p.proto == pr and p.reason == r])}
                           for n, s, pr, r in not_shown(h, ignored)]
    if h.os is not None:
        d["os"] = {"matches": [{"name": m.name, "accuracy": m.accuracy,
                                "classes": m.classes} for m in h.os.matches[:10]],
                   "exact": h.os.exact, "distance": h.os.distance,
                   "uptime_seconds": h.os.uptime, "uptime_note": h.os.uptime_note}
    return d
