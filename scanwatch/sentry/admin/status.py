"""What a running daemon shows: `scanwatch status` over the control socket and the
Prometheus /metrics numbers, read from its live state. The daemon's lock is held only
to copy what is needed, so a status of 100,000 blocks never stalls detection."""
import itertools
import os
import time

from .. import ignore
from ..kernel.contract import KIND_NAMES
from ..kernel.program import mono_now

LEVEL_NAMES = {0: "logged", 1: "blocked", 2: "command"}


def status(d):
    """The reply to {"cmd": "status"} for daemon d."""
    now, mono = time.time(), mono_now()
    counters = d.sentry.counters()
    with d.lock:
        entries = sorted(d.policy.blocks.values(), key=lambda b: b.since)
        rows = {e.addr: d.policy.sources.rows.get(e.addr) for e in entries}
        ports = {proto: watched(d, proto) for proto in d.modes}
    keys = [ignore.to_key(e.addr) for e in entries]
    # One walk of the kernel's sources gives both their count and each block's first packet.
    tracked, firsts = d.sentry.source_walk(set(keys))
    blocks, logged = [], []
    for e, key in zip(entries, keys):
        row = rows[e.addr] or {}
        first_ns = firsts.get(key)
        first = now - (mono - first_ns / 1e9) if first_ns else row.get("first", e.since)
        (blocks if e.level == 1 else logged).append({
            "addr": e.addr, "scan_type": e.scan_type, "proto": e.proto,
            "port": e.port, "mode": e.mode, "modes": e.modes or [e.mode], "reason": e.reason,
            "ports": row.get("ports", e.ports), "first_seen": first, "since": e.since,
            "expires": e.expires, "left": e.left(now), "evidence": e.evidence,
            "action": LEVEL_NAMES[e.level], "offences": e.offences, "strength": e.strength})
    return {
        "running": True, "pid": os.getpid(), "since": d.started,
        "config": d.cfg.path or "(embedded defaults)",
        "modes": list(d.modes.values()), "dry_run": d.dry_run,
        "interfaces": dict(d.sentry.attached), "watched": ports,
        "sweep": {"ports": d.cfg.SWEEP_PORTS, "window": d.cfg.SWEEP_WINDOW},
        "scan_trigger": d.cfg.SCAN_TRIGGER, "nft_table": f"inet {d.cfg.NFT_TABLE}",
        "packets": {k: counters.get(k, 0) for k in KIND_NAMES},
        "counters": counters, "sources_tracked": tracked, "blocked": blocks,
        "destinations": d.dest.snapshot(),  # issue 14: own addresses, forwarded ports
        "capped_total": d.capped_total,  # blocked in XDP only: BLOCK_RATE was reached
        "logged": logged,  # reported under BLOCK_*=0 or 2: recorded, not blocked
        "protected": {k: sorted(map(str, v)) for k, v in d.protected.items()},
        "process": process_figures(),
        "spoof": d.guard.figures(),  # issue 13: evidence strengths, challenges, XDP-only drops
        "fleet": d.fleet.status() if getattr(d, "fleet", None) else None,
    }


def process_figures():
    """The daemon's own footprint, read by psutil (one /proc pass per call, not our own
    parser of /proc/self/status and /proc/self/fd)."""
    import psutil
    p = psutil.Process()
    with p.oneshot():
        t = p.cpu_times()
        return {"rss_bytes": p.memory_info().rss, "cpu_seconds": round(t.user + t.system, 3),
                "open_fds": p.num_fds(), "threads": p.num_threads()}


def watched(d, proto):
    """Port counts for status: configured traps, those a service holds, those watched."""
    if d.kinds[proto] == "classic":
        configured = d.cfg.TCP_PORTS if proto == "TCP" else d.cfg.UDP_PORTS
        bound = d.trap_ports(proto)  # the ports our own sockets hold
        return {"mode": d.modes[proto], "configured": len(configured),
                "in_use": len(configured) - len(bound), "watched": len(bound)}
    traps = set(d.trap_ports(proto))
    in_use = len(traps & d.listening()[proto])
    return {"mode": d.modes[proto], "configured": len(traps), "in_use": in_use,
            "watched": len(traps) - in_use}


def metrics(d):
    """Numbers for metrics.py's /metrics."""
    with d.lock:
        active = sum(1 for e in d.policy.blocks.values() if e.level == 1)
    return {"counters": d.sentry.counters(), "map_fill": d.sentry.map_fill(),
            "blocks_active": active, "blocks_total": d.blocks_total,
            "capped_total": d.capped_total, "spoof": d.guard.figures(),
            "queue_dropped": d.reporter.worker.dropped,
            "suppressed": d.reporter.suppressed_total,
            "process": process_figures(),
            "fleet": d.fleet.status() if getattr(d, "fleet", None) else None}


def handle_request(daemon, req):
    """One control-socket request (already parsed) -> the reply object."""
    cmd = req.get("cmd")
    if cmd == "ping":
        return {"ok": True, "pid": os.getpid()}
    if daemon.started is None:
        return {"error": "scanwatch is still starting (compiling and attaching the XDP program)"}
    if cmd == "status":
        return status(daemon)
    if cmd == "top":
        return top(daemon)
    if cmd == "unblock":
        if not isinstance(req.get("addr"), str):
            return {"error": 'unblock needs "addr": an IPv4 or IPv6 address'}
        fleet = getattr(daemon, "fleet", None)
        if req.get("fleet") and fleet is None:
            return {"error": "unblock --fleet: this daemon has no FLEET_URL"}
        was = daemon.unblock(req["addr"])
        if req.get("fleet"):
            fleet.offer_unblock(str(ignore.canonical(req["addr"])))
        return {"ok": True, "was_blocked": was}
    if cmd == "fleet":
        fleet = getattr(daemon, "fleet", None)
        if fleet is None:
            return {"error": "status --fleet: this daemon has no FLEET_URL"}
        from ..fleet.wire import FleetError
        try:
            return {"self": fleet.status(), "members": fleet.members()}
        except FleetError as err:
            return {"error": f"fleet: {err}"}
    if cmd == "flush":
        return {"ok": True, "flushed": daemon.flush()}
    return {"error": f"unknown command {cmd!r}"}


def top(d, limit=200):
    """The reply to {"cmd": "top"}: what `scanwatch top` redraws each second. Cheap on
    purpose (no walk of the kernel's maps): counters, the most recently active sources
    from the policy's bounded table with their block state, and the latest reports."""
    now = time.time()
    counters = d.sentry.counters()
    with d.lock:
        recent_rows = list(itertools.islice(reversed(d.policy.sources.rows.items()), limit))
        rows = [(addr, dict(row, kinds=dict(row["kinds"]), ports=len(row["ports"])))
                for addr, row in recent_rows]
        blocks = {addr: d.policy.blocks.get(addr) for addr, _ in rows}
        active = sum(1 for e in d.policy.blocks.values() if e.level == 1)
    sources = []
    for addr, row in rows:
        e = blocks[addr]
        state = "watching" if e is None else LEVEL_NAMES[e.level]
        sources.append({"addr": addr, "reports": sum(row["kinds"].values()),
                        "kinds": row["kinds"], "ports": row["ports"],
                        "first": row["first"], "last": row.get("last", row["first"]),
                        "state": state, "evidence": e.evidence if e else None,
                        "left": e.left(now) if e else None})
    return {"pid": os.getpid(), "since": d.started, "now": now, "dry_run": d.dry_run,
            "modes": list(d.modes.values()), "interfaces": dict(d.sentry.attached),
            "packets": {k: counters[k] for k in ("SYN/Normal", "FIN", "NULL", "XMAS",
                                                 "Unknown Type", "UDP")},
            "counters": counters, "blocks_active": active, "blocks_total": d.blocks_total,
            "sources": sources, "recent": list(d.reporter.recent)}
