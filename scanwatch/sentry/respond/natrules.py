"""Which ports and addresses this host forwards behind NAT (issue 14), from its rules.

XDP runs before NAT: a SYN to a published port (DNAT to a container, a redirect) finds no
socket, yet it is served, so a client of many published services would look like a sweep.
This module reads what the DNAT and redirect rules forward, from two sources:
- `nft -j list ruleset` (firewall.py reads it): nft's own rules and iptables-nft's, whose
  port matches are native expressions except `-m multiport` (an opaque xt match);
- iptables-save text (`-t nat`): iptables-legacy's rules, which nft never sees, and
  iptables-nft's again when the ruleset holds xt NAT targets (for their multiport lists).

The answer: {"tcp": ports, "udp": ports, "addrs": networks}. A rule with no port match is
1:1 NAT: with a destination address every port of that address is forwarded (`addrs`:
the daemon stops counting it as this host's), without one every port is.
"""
import ipaddress
import os
import shlex
import shutil
import subprocess

from ...errors import FirewallError

_NAT_TARGETS = ("DNAT", "REDIRECT")  # iptables-nft's targets, opaque xt expressions in JSON
ALL_PORTS = frozenset(range(65536))
PROTOS = ("tcp", "udp")


def empty():
    return {"tcp": set(), "udp": set(), "addrs": set()}


def merge(*parts):
    out = empty()
    for part in parts:
        for key in out:
            out[key] |= set(part.get(key, ()))
    return out


def _dport_protos(left):
    """Which of tcp/udp an expression is the destination port of (`th` is both)."""
    pl = left.get("payload") if isinstance(left, dict) else None
    if not isinstance(pl, dict) or pl.get("field") != "dport":
        return ()
    return {"tcp": ("tcp",), "udp": ("udp",), "th": ("tcp", "udp")}.get(pl.get("protocol"), ())


def _port_values(right, named):
    if isinstance(right, bool):
        return set()
    if isinstance(right, int):
        return {right} if 0 <= right < 65536 else set()
    if isinstance(right, str):
        if right.startswith("@"):
            return set().union(*(_port_values(e, named) for e in named.get(right[1:], ())))
        return {int(right)} if right.isdigit() else set()
    if isinstance(right, list):  # a map element [key, data]: the key is the port
        return _port_values(right[0], named) if right else set()
    if isinstance(right, dict):
        if "range" in right:
            lo, hi = right["range"]
            if isinstance(lo, int) and isinstance(hi, int):
                return set(range(max(0, lo), min(65535, hi) + 1))
        for key in ("set", "elem"):
            if key in right:
                inner = right[key]
                return set().union(*(_port_values(e, named) for e in
                                     (inner if isinstance(inner, list) else [inner])))
        if "val" in right:
            return _port_values(right["val"], named)
    return set()


def _networks(right):
    """Destination addresses a daddr match names (plain, prefix or anonymous set)."""
    if isinstance(right, str):
        try:
            return {ipaddress.ip_network(right)}
        except ValueError:
            return set()
    if isinstance(right, dict):
        if isinstance(right.get("prefix"), dict):
            p = right["prefix"]
            try:
                return {ipaddress.ip_network(f"{p.get('addr')}/{p.get('len')}", strict=False)}
            except ValueError:
                return set()
        if isinstance(right.get("set"), list):
            return set().union(*(_networks(e) for e in right["set"]))
    return set()


def _l4protos(m):
    """tcp/udp a `meta l4proto` / `ip protocol` / `ip6 nexthdr` match allows, or None."""
    left = m.get("left")
    meta = left.get("meta") if isinstance(left, dict) else None
    pl = left.get("payload") if isinstance(left, dict) else None
    if not ((isinstance(meta, dict) and meta.get("key") == "l4proto") or (
            isinstance(pl, dict) and pl.get("field") in ("protocol", "nexthdr"))):
        return None
    right = m.get("right")
    vals = right.get("set", []) if isinstance(right, dict) else [right]
    names = {6: "tcp", 17: "udp", "tcp": "tcp", "udp": "udp"}
    return {names[v] for v in vals if not isinstance(v, (dict, list)) and v in names}


def _output_chains(objs):
    """(family, table, chain) of base chains on the output hook: DNAT there rewrites
    this host's own outgoing connections, never a packet XDP sees."""
    out = set()
    for obj in objs:
        c = obj.get("chain") if isinstance(obj, dict) else None
        if isinstance(c, dict) and c.get("hook") == "output":
            out.add((c.get("family"), c.get("table"), c.get("name")))
    return out


def forwarded_ports(objs):
    """What the DNAT/redirect rules of `nft -j list ruleset`'s objects forward (see the
    module docstring). Ports matched only by an opaque xt match (-m multiport) are read
    from iptables-save instead (has_xt_nat() says when)."""
    out = empty()
    named = {}
    for obj in objs:
        s = obj.get("set") if isinstance(obj, dict) else None
        if isinstance(s, dict) and s.get("name"):
            named[s["name"]] = s.get("elem") or []
    skip = _output_chains(objs)
    for obj in objs:
        rule = obj.get("rule") if isinstance(obj, dict) else None
        exprs = rule.get("expr") if isinstance(rule, dict) else None
        if not isinstance(exprs, list) or \
                (rule.get("family"), rule.get("table"), rule.get("chain")) in skip:
            continue
        nat = [e for e in exprs if isinstance(e, dict) and (
            "dnat" in e or "redirect" in e or
            (isinstance(e.get("xt"), dict) and e["xt"].get("name") in _NAT_TARGETS))]
        if not nat:
            continue
        ported, opaque, daddrs, protos, by_source = False, False, set(), None, False
        for e in exprs:
            if isinstance(e, dict) and isinstance(e.get("xt"), dict) \
                    and e["xt"].get("type") == "match":
                opaque = True  # e.g. multiport: its ports come from iptables-save
            m = e.get("match") if isinstance(e, dict) else None
            if not isinstance(m, dict):
                continue
            if m.get("op") in ("==", "in"):
                for proto in _dport_protos(m.get("left")):
                    ported = True
                    out[proto] |= _port_values(m.get("right"), named)
            pl = m["left"].get("payload") if isinstance(m.get("left"), dict) else None
            if isinstance(pl, dict) and pl.get("field") in ("saddr", "sport"):
                by_source = True
            if m.get("op") in ("==", "in"):
                if isinstance(pl, dict) and pl.get("field") == "daddr":
                    daddrs |= _networks(m.get("right"))
                allowed = _l4protos(m)
                if allowed is not None:
                    protos = allowed if protos is None else protos & allowed
            elif m.get("op") == "!=" and _dport_protos(m.get("left")):
                ported = True  # all but some ports: every port is treated as forwarded
                for proto in _dport_protos(m.get("left")):
                    out[proto] |= ALL_PORTS - _port_values(m.get("right"), named)
        for e in nat:  # dnat to tcp dport map { 80 : addr, ... }
            for v in (e.get("dnat") or {}).values() if isinstance(e.get("dnat"), dict) else ():
                mp = v.get("map") if isinstance(v, dict) else None
                if isinstance(mp, dict):
                    for proto in _dport_protos(mp.get("key")):
                        ported = True
                        out[proto] |= _port_values(mp.get("data"), named)
        if not ported and not opaque:
            _one_to_one(out, daddrs, protos, by_source)
    return out


def _one_to_one(out, daddrs, protos, by_source):
    """A NAT rule without a port match forwards every port: of its destinations, or of
    every address when it names none. One that names neither but picks its sources
    (saddr, sport) forwards only for those, which the kernel's per-port bitmap cannot
    say: it is left out (their probes count as before)."""
    if by_source and not daddrs:
        return
    if daddrs:
        out["addrs"] |= daddrs
        return
    for proto in PROTOS if protos is None else protos:
        out[proto] |= ALL_PORTS


def has_xt_nat(objs):
    """Whether the ruleset holds iptables-nft NAT rules (their xt matches are opaque)."""
    for obj in objs:
        rule = obj.get("rule") if isinstance(obj, dict) else None
        for e in (rule.get("expr") or ()) if isinstance(rule, dict) else ():
            if isinstance(e, dict) and isinstance(e.get("xt"), dict) \
                    and e["xt"].get("name") in _NAT_TARGETS:
                return True
    return False


# --- iptables-save text -------------------------------------------------------------------
def _ports_text(text):
    """iptables' port list: "80", "5000:5010", "22,80,8000:8010" (":5" and "5:" too)."""
    ports = set()
    for item in text.split(","):
        lo, sep, hi = item.partition(":")
        try:
            a = int(lo) if lo else 0
            b = (int(hi) if hi else 65535) if sep else a
        except ValueError:
            continue
        ports |= set(range(max(0, a), min(65535, b) + 1))
    return ports


def iptables_forwarded(text):
    """What the DNAT/REDIRECT rules of `iptables-save -t nat` text forward (OUTPUT's
    rules excepted: they rewrite this host's own connections)."""
    out = empty()
    table = None
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        if table != "nat" or not line.startswith("-A "):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        if len(words) < 2 or words[1] == "OUTPUT":
            continue
        _iptables_rule(out, words[2:])
    return out


def _iptables_rule(out, words):
    target, proto, dports, negated, daddrs, by_source = None, None, None, False, set(), False
    neg = False
    for i, w in enumerate(words):
        arg = words[i + 1] if i + 1 < len(words) else ""
        if w == "!":
            neg = True
            continue
        if w in ("-j", "--jump"):
            target = arg
        elif w in ("-p", "--protocol") and not neg:
            proto = {"6": "tcp", "17": "udp"}.get(arg, arg)
        elif w in ("--dport", "--dports", "--destination-port", "--destination-ports"):
            dports, negated = _ports_text(arg), neg
        elif w in ("-s", "--source", "--sport", "--sports", "--source-port", "--source-ports"):
            by_source = True
        elif w in ("-d", "--destination") and not neg:
            for a in arg.split(","):
                try:
                    daddrs.add(ipaddress.ip_network(a, strict=False))
                except ValueError:
                    pass
        neg = False
    if target not in _NAT_TARGETS:
        return
    protos = [proto] if proto in PROTOS else [] if proto else None
    if dports is None:
        _one_to_one(out, daddrs, protos, by_source)
        return
    for p in protos if protos is not None else PROTOS:
        out[p] |= (ALL_PORTS - dports) if negated else dports


def iptables_save(tool):
    """`<tool>-save -t nat` for iptables and ip6tables (tool: "legacy" or "nft"), as one
    text; "" where the binaries are absent. FirewallError when one fails (iptables-legacy
    needs CAP_NET_RAW, which the shipped unit does not give)."""
    texts = []
    for family in ("iptables", "ip6tables"):
        exe = shutil.which(f"{family}-{tool}-save")
        if exe is None:
            continue
        try:
            res = subprocess.run([exe, "-t", "nat"], capture_output=True, text=True,
                                 timeout=10, env=dict(os.environ, LC_ALL="C"))
        except (OSError, subprocess.SubprocessError) as err:
            raise FirewallError(f"{family}-{tool}-save: {err}") from err
        if res.returncode != 0:
            why = (res.stderr.strip().splitlines() or [f"exit status {res.returncode}"])[-1]
            raise FirewallError(f"{family}-{tool}-save -t nat: {why[:200]}")
        texts.append(res.stdout)
    return "\n".join(texts)


def legacy_present():
    return shutil.which("iptables-legacy-save") is not None
