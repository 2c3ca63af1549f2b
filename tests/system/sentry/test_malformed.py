"""Malformed, fragmented, optioned and extension-header traffic is never misclassified
(issue 6)."""
import subprocess
import sys
import time

from resilience import (DSTOPTS, FRAGMENT, HOPOPTS, ROUTING, Sentry, ext_frag, ext_opts,
                        ext_routing, figure, ipv4, ipv6, send_l3, tcp)
from sentryproc import block_key, wait_for


# --- 8. malformed traffic ----------------------------------------------------------------------
def test_malformed_fragmented_and_optioned_packets_are_never_misclassified(lab, workdir):
    lab.wait_reachable()
    t4, t6 = lab.target_ip4, lab.target_ip6
    # Forged sources probing port 1 in lockstep would be decoys (XDP only): this test is
    # about classification, so PortSentry's response (everything in full).
    sw = Sentry(lab, workdir, conf='EVIDENCE_RESPONSE="portsentry"\n')
    try:
        before = sw.status()["counters"]
        s = {k: f"198.51.100.{40 + i}" for i, k in enumerate("ABCDEFGH")}
        s6 = {k: f"2001:db8::{0x40 + i:x}" for i, k in enumerate("GHIJK")}
        malformed = [
            ipv4(s["A"], t4, tcp(s["A"], t4, 1)[:10]),                    # TCP header cut at 10 bytes
            ipv4(s["B"], t4, tcp(s["B"], t4, 1))[:12],                    # IPv4 header cut at 12 bytes
            bytes([0x43]) + ipv4(s["B"], t4, tcp(s["B"], t4, 1))[1:],     # IHL 3 (< 20 bytes)
            ipv6(s6["I"], t6, HOPOPTS, ext_opts(6) + tcp(s6["I"], t6, 1)[:10]),
            ipv6(s6["J"], t6, HOPOPTS, ext_opts(6)[:4]),                  # extension header cut
        ]
        probes = [
            # RFC 1858 tiny first fragment (ports, no flags): a probe of its own
            ipv4(s["E"], t4, tcp(s["E"], t4, 1)[:8], frag=0x2000),
            # first fragment (MF, offset 0) holding a whole SYN header: classified as usual
            ipv4(s["C"], t4, tcp(s["C"], t4, 1, "S") + b"x" * 8, frag=0x2000, ident=9),
            # later fragment whose payload looks like a flagless TCP header: not a NULL scan
            ipv4(s["D"], t4, tcp(s["D"], t4, 1, ""), frag=0x0001, ident=9),
            # IP options (record route) on a FIN probe
            ipv4(s["F"], t4, tcp(s["F"], t4, 1, "F"),
                 options=bytes([7, 7, 4]) + b"\0" * 4 + b"\0"),
            # XMAS behind hop-by-hop, destination options, routing and fragment headers
            ipv6(s6["G"], t6, HOPOPTS, ext_opts(DSTOPTS) + ext_opts(ROUTING) + ext_routing(FRAGMENT)
                 + ext_frag(6) + tcp(s6["G"], t6, 1, "FPU")),
            # later IPv6 fragment whose payload looks like a flagless TCP header
            ipv6(s6["H"], t6, FRAGMENT, ext_frag(6, offset=8, more=False) + tcp(s6["H"], t6, 1, "")),
        ]
        send_l3(lab, malformed + probes)
        wait_for(lambda: len([e for e in sw.events() if e.get("action") == "block"]) >= 4, 5,
                 what="4 blocks")
        sw.wait_history(s["F"])
        time.sleep(0.5)
        st = sw.status()
        c = st["counters"]
        blocks = {e["addr"]: e for e in sw.events() if e.get("action") == "block"}
        log = sw.log()
        delta = {k: c[k] - before[k] for k in c}
        figure("malformed", f"counters delta {({k: v for k, v in delta.items() if v})}; blocks "
               f"{ {a: (e['scan_type'], e['ip_options']) for a, e in blocks.items()} }")
        assert sw.proc.poll() is None
        assert delta["malformed"] == len(malformed), delta
        assert set(blocks) == {s["C"], s["E"], s["F"], s6["G"]}, blocks
        assert blocks[s["E"]]["scan_type"] == "Tiny Fragment" and blocks[s["E"]]["fragmented"]
        assert blocks[s["C"]]["scan_type"] == "SYN/Normal" and not blocks[s["C"]]["ip_options"]
        assert blocks[s["F"]]["scan_type"] == "FIN" and blocks[s["F"]]["ip_options"]
        assert blocks[s6["G"]]["scan_type"] == "XMAS"
        assert {k: delta[k] for k in st["packets"]} == {
            "SYN/Normal": 1, "FIN": 1, "NULL": 0, "XMAS": 1, "Unknown Type": 0, "UDP": 0,
            "ACK/Window": 0, "Maimon": 0, "Tiny Fragment": 1, "SCTP INIT": 0,
            "SCTP COOKIE-ECHO": 0, "IP Protocol": 0}, delta
        assert (f"attackalert: Packet from host: {s['F']}/{s['F']} to TCP port: 1 has IP options "
                f"set (detection avoidance technique).") in log
        assert f"attackalert: TCP FIN scan from host: {s['F']}/{s['F']} to TCP port: 1" in log
        assert f"attackalert: TCP XMAS scan from host: {s6['G']}/{s6['G']} to TCP port: 1" in log
        assert not any(a in log for a in (s["A"], s["B"], s["D"], s6["H"], s6["I"], s6["J"]))
    finally:
        sw.stop()


def test_truncated_tcp_header_in_a_padded_frame_is_malformed_not_a_null_scan(lab, workdir):
    lab.wait_reachable()
    t4, t6 = lab.target_ip4, lab.target_ip6
    sw = Sentry(lab, workdir)
    try:
        before = sw.status()["counters"]
        a4, a6 = "198.51.100.60", "2001:db8::60"
        pad = lambda p: p + b"\0" * (46 - len(p))  # Ethernet's minimum: 60 bytes a frame
        send_l3(lab, [pad(ipv4(a4, t4, tcp(a4, t4, 1)[:10])),
                      ipv6(a6, t6, 6, tcp(a6, t6, 1)[:10] + b"\0" * 10, plen=10)])
        time.sleep(0.5)
        c = sw.status()["counters"]
        figure("padded truncated TCP", f"malformed +{c['malformed'] - before['malformed']}, "
               f"NULL +{c['NULL'] - before['NULL']}, blocks "
               f"{[e['addr'] for e in sw.events() if e.get('action') == 'block']}")
        assert c["NULL"] == before["NULL"] and c["malformed"] - before["malformed"] == 2
    finally:
        sw.stop()


SNIFF_TCP = r"""
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86dd))
s.bind((sys.argv[1], 0))
s.settimeout(0.2)
print("ready", flush=True)
end, n = time.time() + float(sys.argv[2]), 0
while time.time() < end:
    try:
        f = s.recv(4096)
    except OSError:
        continue
    if f[14 + 6] == 6 and f[14 + 40 + 13] & 0x04:  # TCP with RST, from the target's stack
        n += 1
print(n)
"""


def test_a_scan_behind_five_ipv6_extension_headers_is_still_seen(lab, workdir):
    lab.wait_reachable()
    s6, t6 = lab.scanner_ip6, lab.target_ip6
    sw = Sentry(lab, workdir)
    try:
        chain = [HOPOPTS, DSTOPTS, DSTOPTS, DSTOPTS, DSTOPTS]
        hdrs = b"".join(ext_opts(chain[i + 1] if i + 1 < len(chain) else 6)
                        for i in range(len(chain)))
        sniff = lab.popen(lab.scanner_ns, sys.executable, "-c", SNIFF_TCP, lab.scanner_if, "2",
                          stdout=subprocess.PIPE, text=True)
        assert sniff.stdout.readline().strip() == "ready"
        send_l3(lab, [ipv6(s6, t6, HOPOPTS, hdrs + tcp(s6, t6, port, sport=42000 + port))
                      for port in range(1, 41)])
        resets = int(sniff.communicate(timeout=10)[0])
        st = sw.status()
        figure("5 IPv6 extension headers", f"40 SYN probes (ports 1-40, tripwires 1, 11, 15): the "
               f"target's stack answered {resets} with RST; scanwatch counted "
               f"{st['packets']['SYN/Normal']} SYN, blocked {[b['addr'] for b in st['blocked']]}")
        # Port 1 is a tripwire: the first probe is caught and dropped, and so is the rest.
        assert [b["addr"] for b in st["blocked"]] == [block_key(s6)], st  # its /64 (issue 14)
        assert st["packets"]["SYN/Normal"] >= 1 and resets == 0
    finally:
        sw.stop()


# --- 9. hostile input ----------------------------------------------------------------------------
