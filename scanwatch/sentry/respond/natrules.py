"""Which ports and addresses this host forwards behind NAT (issue 14), from its rules.

Pure parsing: firewall.py reads the nftables ruleset (nft's own rules and iptables-nft's),
this module says what the DNAT and redirect rules in it forward.
"""


_NAT_TARGETS = ("DNAT", "REDIRECT")  # iptables-nft's targets, opaque xt expressions in JSON


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


def forwarded_ports(objs):
    """{"tcp": ports, "udp": ports} that a dnat or redirect rule sends elsewhere, from the
    objects of `nft -j list ruleset` (nft's own rules and iptables-nft's DNAT/REDIRECT).
    A SYN to such a port finds no socket in XDP (XDP runs before NAT), yet it is served:
    a client of many published container ports would look like a sweep. Ports matched
    only by an opaque xtables match (-m multiport) cannot be known from here."""
    out = {"tcp": set(), "udp": set()}
    named = {}
    for obj in objs:
        s = obj.get("set") if isinstance(obj, dict) else None
        if isinstance(s, dict) and s.get("name"):
            named[s["name"]] = s.get("elem") or []
    for obj in objs:
        rule = obj.get("rule") if isinstance(obj, dict) else None
        exprs = rule.get("expr") if isinstance(rule, dict) else None
        if not isinstance(exprs, list):
            continue
        nat = [e for e in exprs if isinstance(e, dict) and (
            "dnat" in e or "redirect" in e or
            (isinstance(e.get("xt"), dict) and e["xt"].get("name") in _NAT_TARGETS))]
        if not nat:
            continue
        for e in exprs:
            m = e.get("match") if isinstance(e, dict) else None
            if isinstance(m, dict) and m.get("op") in ("==", "in"):
                for proto in _dport_protos(m.get("left")):
                    out[proto] |= _port_values(m.get("right"), named)
        for e in nat:  # dnat to tcp dport map { 80 : addr, ... }
            for v in (e.get("dnat") or {}).values() if isinstance(e.get("dnat"), dict) else ():
                mp = v.get("map") if isinstance(v, dict) else None
                if isinstance(mp, dict):
                    for proto in _dport_protos(mp.get("key")):
                        out[proto] |= _port_values(mp.get("data"), named)
    return out
