"""`scanwatch status` as text, and its fast path.

format_status turns the daemon's status snapshot into the lines an admin reads. main() is
the start-up path of the plain forms (`status`, `-c FILE`, `--run-dir DIR`, `--json`): it
imports neither click nor the daemon's modules (issue 18: under 40 ms with a daemon running);
any other form returns None and the click CLI handles it (help, usage errors).
"""
import sys
import time


def main(argv):
    opts = {"-c": None, "--config": None, "--run-dir": None}
    as_json, rest = False, list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--json":
            as_json = True
        elif arg in opts and rest and not rest[0].startswith("-"):
            opts[arg] = rest.pop(0)
        else:
            return None  # not a plain form: click parses it and explains mistakes
    from ..config import load
    from ...errors import NotRunning, ScanwatchError
    from .control import request
    path = opts["--config"] or opts["-c"]
    try:
        cfg = load(path, {"RUN_DIR": opts["--run-dir"]} if opts["--run-dir"] else {})
        st = request(cfg.RUN_DIR, {"cmd": "status"})
    except NotRunning as err:
        print(err)
        return err.exit_code
    except ScanwatchError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    if as_json:
        import json
        print(json.dumps(st, indent=2, sort_keys=True))
    else:
        print(format_status(st))
    return 0


def _ago(seconds):
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _when(ts):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def format_status(st, now=None):
    now = time.time() if now is None else now
    lines = [f"scanwatch is running (pid {st['pid']}) since {_when(st['since'])} "
             f"({_ago(now - st['since'])} ago){'  DRY RUN' if st.get('dry_run') else ''}",
             f"config:      {st['config']}",
             f"modes:       {', '.join(st['modes'])}",
             "interfaces:  " + (", ".join(f"{n} (XDP {m})" for n, m in st["interfaces"].items())
                                or "none")]
    for proto, w in st["watched"].items():
        lines.append(f"watched:     {proto} {w['watched']} ports ({w['configured']} configured, "
                     f"{w['in_use']} in use)")
    sw = st["sweep"]
    lines.append(f"trigger:     SCAN_TRIGGER={st['scan_trigger']}; sweep "
                 + (f"{sw['ports']} closed ports in {sw['window']}s" if sw["ports"] else "off"))
    lines.append("packets:     " + "  ".join(f"{k} {v}" for k, v in st["packets"].items()))
    c = st["counters"]
    lines.append(f"kernel:      dropped {c['dropped']}  tripwire hits {c['tripwire']}  "
                 f"kernel blocks {c['kernel_blocks']}  events lost {c['events_lost']}"
                 f"  bad checksums {c.get('badsum', 0)} (never blocked)")
    lines.append(f"sources:     {st['sources_tracked']} tracked")
    proc = st.get("process")
    if proc:
        lines.append(f"daemon:      {proc['rss_bytes'] / 2**20:.1f} MiB resident, "
                     f"{proc['cpu_seconds']:.1f} s CPU, {proc['open_fds']} fds, "
                     f"{proc['threads']} threads")
    fl = st.get("fleet")
    if fl:
        lag = "-" if fl["lag_ms"] is None else f"{fl['lag_ms']:.0f} ms"
        lines.append(f"fleet:       {fl['name']} as {fl['host']}: "
                     f"{'connected' if fl['connected'] else 'DISCONNECTED (' + fl['error'] + ')'}"
                     f", lag {lag}, sent {fl['sent']}, received {fl['received']}, applied "
                     f"{fl['applied']}, refused {fl['refused']}, queued {fl['queued']}"
                     + (f" (+ sightings of {fl['sightings_queued']} sources)"
                        if fl.get("sightings_queued") else ""))
    prot = st.get("protected", {})
    if any(prot.values()):
        lines.append("never block: " + "; ".join(f"{k} {', '.join(v)}" for k, v in prot.items() if v))
    blocked = st["blocked"]
    lines.append(f"blocked:     {len(blocked)} host{'s' if len(blocked) != 1 else ''} "
                 f"in {st['nft_table']}")
    if st.get("capped_total"):
        lines.append(f"             + {st['capped_total']} in XDP only since the start: "
                     "BLOCK_RATE was reached (a spoofed flood?)")
    spoof = st.get("spoof")
    if spoof:  # issue 13
        ev = spoof["evidence"]
        lines.append("evidence:    " + ", ".join(f"{k} {v}" for k, v in ev.items())
                     + f"; challenges {spoof['challenges_sent']} sent, "
                     f"{spoof['challenges_answered']} answered; {spoof['kernel_only']} "
                     "possibly spoofed in XDP only")
    lines += _host_table(blocked)
    logged = st.get("logged", [])
    if logged:
        lines.append(f"reported, not blocked (BLOCK_TCP/BLOCK_UDP 0 or 2): {len(logged)}")
        lines += _host_table(logged)
    return "\n".join(lines)


def format_members(st):
    """`scanwatch status --fleet`: one line per member, from the members hash."""
    import time
    now = time.time()
    out = [f"fleet {st['self']['name']}: {len(st['members'])} members",
           f"  {'HOST':<24} {'LAST SEEN':>10} {'BLOCKS':>7} {'SENT':>6} {'RECEIVED':>9}  VERSION"]
    for host, m in sorted(st["members"].items()):
        seen = m.get("last_seen")
        ago = "-" if not isinstance(seen, (int, float)) else f"{max(0, now - seen):.0f}s ago"
        out.append(f"  {host:<24} {ago:>10} {m.get('blocks') or 0:>7} {m.get('sent') or 0:>6} "
                   f"{m.get('received') or 0:>9}  {m.get('version') or '-'}")
    return "\n".join(out)


def _host_table(rows):
    if not rows:
        return []
    out = [f"  {'HOST':<39} {'TYPE':<12} {'PORT':<9} {'REASON':<8} "
           f"{'FIRST SEEN':<19} {'LEFT':>6}  PORTS HIT"]
    for b in rows:
        left = "never" if b["left"] is None else _ago(b["left"])
        ports = ",".join(b["ports"][:12]) + (",..." if len(b["ports"]) > 12 else "")
        port = f"{b['port']}/{b['proto'].lower()}"
        out.append(f"  {b['addr']:<39} {b['scan_type']:<12} {port:<9} {b['reason']:<8} "
                   f"{_when(b['first_seen']):<19} {left:>6}  {ports}"
                   + (f"  ({b['strength']})" if b.get("strength") else ""))
    return out
