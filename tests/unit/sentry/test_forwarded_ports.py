"""forwarded_ports() (issue 14): the ports a DNAT or redirect rule forwards, read from
`nft -j list ruleset` as nft 1.0.6 prints it (nft rules and iptables-nft's)."""
from scanwatch.sentry.respond.natrules import forwarded_ports


def rule(*expr):
    return {"rule": {"family": "ip", "table": "t", "chain": "c", "handle": 1, "expr": list(expr)}}


def dport(proto, right, op="=="):
    return {"match": {"op": op, "left": {"payload": {"protocol": proto, "field": "dport"}},
                      "right": right}}


RULESET = [
    {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
    {"set": {"family": "ip", "name": "pub", "table": "t", "type": "inet_service",
             "elem": [9100, {"range": [9200, 9201]}]}},
    rule(dport("tcp", {"range": [10001, 10003]}), {"dnat": {"addr": "10.0.0.2", "port": 8080}}),
    rule(dport("tcp", {"set": [10013, {"range": [10014, 10015]}]}), {"redirect": {"port": 8080}}),
    rule(dport("udp", 5353), {"dnat": {"addr": "10.0.0.3"}}),
    rule({"dnat": {"addr": {"map": {"key": {"payload": {"protocol": "tcp", "field": "dport"}},
                                    "data": {"set": [[9000, "10.0.0.4"], [9001, "10.0.0.5"]]}}}}}),
    rule(dport("tcp", "@pub"), {"dnat": {"addr": "10.0.0.6"}}),
    # iptables-nft: -p tcp --dport 8443 -j DNAT (the target is an opaque xt expression)
    rule(dport("tcp", 8443), {"counter": {"packets": 0, "bytes": 0}},
         {"xt": {"type": "target", "name": "DNAT"}}),
    rule(dport("th", 7000), {"redirect": {"port": 80}}),
    # not NAT: an accept and a drop on other ports
    rule(dport("tcp", 22), {"accept": None}),
    rule(dport("tcp", {"range": [6000, 6010]}), {"drop": None}),
    # a source port match is not a forwarded port
    rule({"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "sport"}},
                    "right": 53}}, {"dnat": {"addr": "10.0.0.8"}}),
]


def test_dnat_and_redirect_ports_of_every_shape():
    got = forwarded_ports(RULESET)
    assert got["tcp"] == {10001, 10002, 10003, 10013, 10014, 10015, 9000, 9001, 9100, 9200,
                          9201, 8443, 7000}
    assert got["udp"] == {5353, 7000}


def test_nothing_forwarded_without_nat_rules():
    assert forwarded_ports([o for o in RULESET if "dnat" not in str(o) and "redirect" not in str(o)
                            and "DNAT" not in str(o)]) == {"tcp": set(), "udp": set()}
    assert forwarded_ports([{"rule": {"expr": None}}, {"rule": "x"}, 5]) == {"tcp": set(), "udp": set()}
