"""scan/ports.py and scan/targets.py: nmap's -p grammar and target forms, without a network."""
import socket
from pathlib import Path

import pytest

from scanwatch.scan import ports as P
from scanwatch.scan.targets import TargetError, parse_target, parse_targets

SERVICES = """\
# canned nmap-services
tcpmux	1/tcp	0.001995	# TCP Port Service Multiplexer
tcpmux	1/udp	0.001236
echo	7/tcp	0.004855
echo	7/udp	0.024679
ssh	22/tcp	0.182286	# Secure Shell Login
ssh	22/udp	0.003905
domain	53/tcp	0.048463
domain	53/udp	0.213496
http	80/tcp	0.484143
http	80/udp	0.035767
http	8008/tcp	0.000500
http-alt	8008/udp	0.000500
https	443/tcp	0.208669
CarbonCopy	1680/tcp	0.000100
ftp-data	20/tcp	0.001079
ftp	21/tcp	0.197667
ftps	990/tcp	0.000100
tie-a	5000/tcp	0.000100
tie-b	4000/tcp	0.000100
"""


@pytest.fixture
def svc(tmp_path):
    path = tmp_path / "nmap-services"
    path.write_text(SERVICES)
    return P.load_services(str(path))


def tcp(spec, svc, protos=("tcp",)):
    return P.parse_port_spec(spec, svc, protos)["tcp"]


@pytest.mark.parametrize("spec, expected", [
    ("22", [22]), ("1-5", [1, 2, 3, 4, 5]), ("-3", [1, 2, 3]), ("65533-", [65533, 65534, 65535]),
    ("0", [0]), ("0-2", [0, 1, 2]), ("22 , 80", [22, 80]), ("22,22", [22]),
    ("ssh", [22]), ("SSH".lower(), [22]), ("http", [80, 8008]), ("http*", [80, 443, 8008]),
    ("ftp?", [990]), ("carboncopy", [1680]), ("[1-30]", [1, 7, 20, 21, 22]),
    ("[ssh]", [22]), ("T:22,U:53", [22]), ("22,T:", [22]),
])
def test_port_specs_select_what_nmap_selects(svc, spec, expected):
    assert tcp(spec, svc) == expected


def test_dash_alone_is_every_port_but_zero(svc):
    assert tcp("-", svc) == list(range(1, 65536))


def test_protocol_prefixes_and_unprefixed_items(svc):
    got = P.parse_port_spec("1-3,U:53,T:80,http", svc, ("tcp", "udp"))
    assert got["tcp"] == [1, 2, 3, 80, 8008]
    assert got["udp"] == [1, 2, 3, 53]
    # unprefixed items go to the scanned protocols only; U: always names UDP
    only_tcp = P.parse_port_spec("ssh,U:161", svc, ("tcp",))
    assert only_tcp["tcp"] == [22] and only_tcp["udp"] == [161]


def test_duplicates_warn(svc):
    warnings = []
    P.parse_port_spec("22,20-25", svc, ("tcp",), warnings=warnings)
    assert warnings and warnings[0].startswith("WARNING: Duplicate port number(s)")


@pytest.mark.parametrize("spec, message", [
    ("70000", "Ports specified must be between 0 and 65535 inclusive"),
    ("5-1", "Your port range 5-1 is backwards. Did you mean 1-5?"),
    ("-0", "Your port range 1-0 is backwards. Did you mean 0-1?"),
    ("foo", "Found no matches for the service mask 'foo' and your specified protocols"),
    ("22,,23", "Your port specifications are illegal."),
    (",22", "Your port specifications are illegal."),
    ("HTTP", "Your port specifications are illegal."),
    ("CarbonCopy", "Your port specifications are illegal."),
    ("22-ssh", "Your port specifications are illegal."),
    ("", "Your port specifications are illegal."),
    ("U:", "No ports specified"),
])
def test_bad_specs_are_refused_with_nmaps_words(svc, spec, message):
    with pytest.raises(P.PortSpecError) as exc:
        P.parse_port_spec(spec, svc, ("tcp",))
    assert str(exc.value).startswith(message)


def test_top_ports_rank_by_frequency_then_port(svc):
    assert svc.ranked("tcp")[:3] == [80, 443, 21]
    # equal frequencies (0.0001): lower port first, as nmap
    assert svc.ranked("tcp")[-4:] == [990, 1680, 4000, 5000]
    assert svc.top("tcp", 2) == [80, 443]


def test_select_ports_defaults_fast_and_top(svc):
    got = P.select_ports(svc, ("tcp",), fast=True)
    assert got["tcp"] == sorted(svc.ranked("tcp")[:100]) and got["udp"] == []
    got = P.select_ports(svc, ("tcp", "udp"), top=2)
    assert got == {"tcp": [80, 443], "udp": [53, 80], "sctp": []}
    got = P.select_ports(svc, ("tcp",), spec="1-100", top=2)
    assert got["tcp"] == [21, 80]


def test_compress_is_nmaps_range_list():
    assert P.compress([5, 1, 2, 3, 7, 8]) == "1-3,5,7-8"
    assert P.compress([]) == ""


def test_shipped_fallback_is_nmaps_top_lists():
    svc = P._parse_services(P.FALLBACK.read_text().splitlines(), "fallback")
    assert len(svc.ports("tcp")) == 1000 and len(svc.ports("udp")) == 1000
    assert svc.ranked("tcp")[:4] == [80, 23, 443, 21]
    assert svc.name(22, "tcp") == "ssh"
    real = Path(P.NMAP_SERVICES)
    if real.exists():   # the shipped list is what nmap itself would pick
        nmap = P._parse_services(real.read_text(errors="replace").splitlines(), "nmap")
        for proto in ("tcp", "udp"):
            assert svc.top(proto, 1000) == nmap.top(proto, 1000)
            assert svc.top(proto, 100) == nmap.top(proto, 100)


def test_missing_nmap_services_falls_back(monkeypatch):
    monkeypatch.setenv("SCANWATCH_NMAP_SERVICES", "/nonexistent/nmap-services")
    P._CACHE.clear()
    try:
        svc = P.load_services()
        assert svc.source == str(P.FALLBACK)
        assert len(svc.top("tcp", 1000)) == 1000
    finally:
        P._CACHE.clear()


# --- targets -----------------------------------------------------------------------------

def addrs(spec, family=socket.AF_INET):
    return [t.addr for t in parse_target(spec, family)]


def test_target_forms():
    assert addrs("198.18.0.1") == ["198.18.0.1"]
    assert addrs("198.18.0.0/30") == ["198.18.0.0", "198.18.0.1", "198.18.0.2", "198.18.0.3"]
    assert addrs("198.18.1-2.1,3") == ["198.18.1.1", "198.18.1.3", "198.18.2.1", "198.18.2.3"]
    assert len(addrs("198.18.0.*")) == 256 and len(addrs("198.18.0.-")) == 256
    assert addrs("fd53::1", socket.AF_INET6) == ["fd53::1"]
    assert addrs("fd53::/126", socket.AF_INET6)[-1] == "fd53::3"
    t = parse_target("localhost")[0]
    assert t.addr == "127.0.0.1" and t.name == "localhost" and t.display == "localhost (127.0.0.1)"
    assert len(parse_targets(["198.18.0.1", "198.18.0.2/31"])) == 3


@pytest.mark.parametrize("spec, message", [
    ("300.1.1.1", 'Failed to resolve "300.1.1.1".'), ("bad..host", 'Failed to resolve'),
    ("-bad", 'Failed to resolve'), ("a b", 'Failed to resolve'),
    ("198.18.0.1/33", 'Illegal netmask in "198.18.0.1/33".'),
    ("fd53::1", "you have to use the -6 option"), ("1.2.3.4-1", 'Failed to resolve'),
])
def test_bad_targets(spec, message):
    with pytest.raises(TargetError) as exc:
        parse_target(spec)
    assert message in str(exc.value)


def test_discovery_ping_ports_fall_back_to_the_default():
    from scanwatch.scan.discovery import _ports
    assert _ports("22,80-82", [443]) == [22, 80, 81, 82]
    assert _ports(None, [443]) == [443] and _ports("", [80]) == [80]
    assert _ports("x", [443]) == [443]  # nothing usable: the default, as nmap's -PS alone
