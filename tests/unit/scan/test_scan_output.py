"""scan/options.py and the output formats (normal, -oG, -oX, --json) on canned results."""
import json
import socket
import xml.etree.ElementTree as ET

import pytest

from scanwatch.scan import output, xmlout
from scanwatch.scan.main import main
from scanwatch.scan.options import UsageError, parse_args
from scanwatch.scan.results import HostResult, PortResult, ignored_states, not_shown


# --- options -----------------------------------------------------------------------------

def test_nmap_spellings():
    o = parse_args(["-sSV", "-p22,80", "-T4", "-Pn", "-n", "-v", "-v", "-oG", "g", "-oX", "x",
                    "--max-retries=3", "-O", "198.18.0.1"])
    assert (o.tcp_scan == "syn" and o.version and o.no_ping and o.no_resolve and o.os_detect)
    assert o.ports == "22,80" and o.timing == 4 and o.verbose == 2 and o.max_retries == 3
    assert (o.out_grep, o.out_xml, o.targets) == ("g", "x", ["198.18.0.1"])
    o = parse_args(["-sS", "-p", "-", "-Tinsane", "-max-retries", "1", "-vv", "t"])
    assert o.tcp_scan == "syn" and o.ports == "-" and o.timing == 5 and o.max_retries == 1
    assert o.verbose == 2
    assert parse_args(["-sT", "t"]).tcp_scan == "connect"
    for flag, kind in (("-sF", "fin"), ("-sX", "xmas"), ("-sN", "null"), ("-sA", "ack")):
        assert parse_args([flag, "t"]).tcp_scan == kind
    assert parse_args(["-sU", "t"]).udp and parse_args(["-sP", "t"]).ping_only
    assert parse_args(["-sn", "-PE", "t"]).ping_types == {"E"}
    assert parse_args(["-sn", "-PI", "t"]).ping_types == {"E"}
    o = parse_args(["-sR", "t"])
    assert o.version and o.rpc_alias
    o = parse_args(["-oA", "base", "--json", "-F", "--top-ports", "5", "-6", "t"])
    assert (o.out_normal, o.out_grep, o.out_xml) == ("base.nmap", "base.gnmap", "base.xml")
    assert o.json and o.fast and o.top_ports == 5 and o.ipv6
    o = parse_args(["--min-rtt-timeout", "50ms", "--host-timeout", "2m", "--scan-delay=1s", "t"])
    assert (o.min_rtt, o.host_timeout, o.scan_delay) == (0.05, 120, 1)


@pytest.mark.parametrize("argv, message", [
    (["-sS", "-sT", "t"], "more than one type of TCP scan"),
    (["-sn", "-sS", "t"], "-sL and -sn (skip port scan) are not valid"),
    (["-sn", "-p", "22", "t"], "when not doing a port scan"),
    (["-F", "-p", "22", "t"], "You cannot use -F (fast scan) with -p"),
    (["-T9", "t"], "Unknown timing mode"),
    (["--max-retries", "-1", "t"], "max-retries must be positive"),
    (["--host-timeout", "x", "t"], "Bogus --host-timeout argument"),
    (["--nope", "t"], "unrecognized option '--nope'"),
    (["-sZ", "t"], "Scantype Z not supported"),
    (["-p"], "option requires an argument"),
    (["-PZ", "t"], "Illegal Argument to -P"),
])
def test_refusals(argv, message):
    with pytest.raises(UsageError) as exc:
        parse_args(argv)
    assert message in str(exc.value)


def test_main_errors_are_one_line_exit_1(capsys):
    for argv in (["-p", "70000", "198.18.0.1"], ["-T9", "198.18.0.1"], ["300.1.1.1"], [],
                 ["-sS", "--unprivileged", "198.18.0.1"], ["-O", "--unprivileged", "x"]):
        assert main(argv) == 1
        out, err = capsys.readouterr()
        assert out == "" and len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert main(["-h"]) == 0
    assert "Usage: scanwatch scan" in capsys.readouterr().out


# --- canned results ------------------------------------------------------------------------

def host(closed=995, filtered=(25, 110), opened=(22, 80, 443)):
    h = HostResult("198.18.7.1", socket.AF_INET, up=True, reason="arp-response",
                   latency=7e-6, mac="AA:6E:EE:95:10:3F")
    names = {22: "ssh", 80: "http", 443: "https", 25: "smtp", 110: "pop3"}
    for p in opened:
        h.ports.append(PortResult(p, "tcp", "open", "syn-ack", 64, names.get(p)))
    for p in filtered:
        h.ports.append(PortResult(p, "tcp", "filtered", "no-response", 0, names.get(p)))
    for p in range(1000, 1000 + closed):
        h.ports.append(PortResult(p, "tcp", "closed", "reset", 64, None))
    h.srtt, h.rttvar, h.timeout = 7e-6, 5e-6, 0.1
    return h


class Opts:
    verbose = debug = 0
    reason = open_only = False


def test_latency_and_summary_numbers():
    assert output.sigdigits(7e-6) == "0.0000070"
    assert output.sigdigits(3.0e-5) == "0.000030"
    assert output.sigdigits(0.00012) == "0.00012"
    assert output.sigdigits(1.234) == "1.2"
    assert output.done_summary(1, 1, 1.346) == "1 IP address (1 host up) scanned in 1.35 seconds"
    assert output.done_summary(4, 3, 0.5) == "4 IP addresses (3 hosts up) scanned in 0.50 seconds"
    assert output.done_summary(2, 0, 0) == "2 IP addresses (0 hosts up) scanned in 0.00 seconds"


def test_normal_report_is_nmaps_shape():
    lines = output.normal_host(host(), Opts(), True)
    assert lines == [
        "Nmap scan report for 198.18.7.1",
        "Host is up (0.0000070s latency).",
        "Not shown: 995 closed tcp ports (reset)",
        "PORT    STATE    SERVICE",
        "22/tcp  open     ssh",
        "25/tcp  filtered smtp",
        "80/tcp  open     http",
        "110/tcp filtered pop3",
        "443/tcp open     https",
        "MAC Address: AA:6E:EE:95:10:3F (Unknown)",
        "",
    ]


def test_ignored_states_follow_nmaps_rule():
    few = host(closed=25)
    assert ignored_states(few) == []
    lines = output.normal_host(few, Opts(), True)
    assert lines[2] == "" and lines[3].startswith("PORT")      # nothing hidden: blank line
    many = host(closed=26)
    assert ignored_states(many) == ["closed"]
    opts = Opts()
    opts.verbose = 1                       # -v shows up to 50 of a state
    assert ignored_states(host(closed=50), verbose=1) == []
    assert ignored_states(host(closed=51), verbose=1) == ["closed"]
    assert ignored_states(host(closed=5), open_only=True) == ["closed", "filtered"]
    assert ignored_states(host(), debug=3) == []
    mixed = host(closed=30, filtered=range(20000, 20040))
    mixed.ports += [PortResult(p, "tcp", "filtered", "admin-prohibited", 64)
                    for p in range(21000, 21030)]
    assert not_shown(mixed, ignored_states(mixed)) == [
        (30, "closed", "tcp", "reset"), (40, "filtered", "tcp", "no-response"),
        (30, "filtered", "tcp", "admin-prohibited")]
    allhidden = host(closed=30, filtered=(), opened=())
    lines = output.normal_host(allhidden, Opts(), True)
    assert lines[2] == "All 30 scanned ports on 198.18.7.1 are in ignored states."
    assert lines[3] == "Not shown: 30 closed tcp ports (reset)"


def test_reason_column_and_down_hosts():
    opts = Opts()
    opts.reason = True
    lines = output.normal_host(host(), opts, True)
    assert lines[1] == "Host is up, received arp-response (0.0000070s latency)."
    assert lines[3] == "PORT    STATE    SERVICE REASON"
    assert lines[4] == "22/tcp  open     ssh     syn-ack ttl 64"
    assert lines[5] == "25/tcp  filtered smtp    no-response"
    down = HostResult("198.18.7.9", socket.AF_INET)
    assert output.normal_host(down, Opts(), True) == []
    opts.verbose = 1
    assert output.normal_host(down, opts, True) == ["Nmap scan report for 198.18.7.9 [host down]"]


def test_grepable_lines():
    lines = output.grepable_host(host(), Opts(), True)
    assert lines[0] == "Host: 198.18.7.1 ()\tStatus: Up"
    assert lines[1] == ("Host: 198.18.7.1 ()\tPorts: 22/open/tcp//ssh///, 25/filtered/tcp//smtp"
                        "///, 80/open/tcp//http///, 110/filtered/tcp//pop3///, 443/open/tcp//"
                        "https///\tIgnored State: closed (995)")
    assert output.ports_scanned({"tcp": [1, 2, 3, 80], "udp": []}) == \
        "# Ports scanned: TCP(4;1-3,80) UDP(0;) SCTP(0;) PROTOCOLS(0;)"


def test_xml_document_parses_with_nmaps_names():
    h = host()
    doc = (xmlout.xml_header(0, ["-sS", "--max-retries", "1", "198.18.7.1"],
                             [("syn", "tcp", [p.port for p in h.ports])], Opts())
           + xmlout.xml_host(h, Opts(), True) + xmlout.xml_footer(1, 1, 1, 1.0))
    root = ET.fromstring(doc)
    assert root.tag == "nmaprun" and root.get("scanner") == "scanwatch"
    assert "-&#45;max-retries" in doc       # no "--" inside the XML comment
    assert root.find("scaninfo").get("numservices") == "1000"
    h_el = root.find("host")
    assert h_el.find("status").attrib == {"state": "up", "reason": "arp-response",
                                          "reason_ttl": "0"}
    assert [a.get("addrtype") for a in h_el.findall("address")] == ["ipv4", "mac"]
    extra = h_el.find("ports/extraports")
    assert extra.attrib == {"state": "closed", "count": "995"}
    assert extra.find("extrareasons").get("ports") == "1000-1994"
    port = h_el.find("ports/port[@portid='22']")
    assert port.find("state").get("state") == "open"
    assert port.find("service").attrib == {"name": "ssh", "method": "table", "conf": "3"}
    assert root.find("runstats/hosts").attrib == {"up": "1", "down": "0", "total": "1"}
    assert root.find("runstats/finished").get("exit") == "success"


def test_json_document():
    h = host()
    doc = json.loads(xmlout.json_document(0, 1, ["x"], [("syn", "tcp", [22])], [h], 1, Opts(),
                                          True))
    assert doc["scanner"] == "scanwatch" and doc["stats"] == {"total": 1, "up": 1, "down": 0}
    (hj,) = doc["hosts"]
    assert hj["address"] == "198.18.7.1" and len(hj["ports"]) == 5
    assert hj["extraports"] == [{"count": 995, "state": "closed", "protocol": "tcp",
                                 "reason": "reset", "ports": "1000-1994"}]
