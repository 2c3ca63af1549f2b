"""Classic and advanced modes (PortSentry's -tcp/-udp/-atcp/-audp) against real clients."""
import re
import sys
import time

import pytest

from sentryproc import SentryProcess, connect, listen, nmap

BANNER = "** UNAUTHORIZED ACCESS PROHIBITED *** YOUR CONNECTION ATTEMPT HAS BEEN LOGGED."


def read_banner(lab, port):
    code = ("import socket\n"
            f"s=socket.create_connection(('{lab.target_ip4}', {port}), timeout=3)\n"
            "print(s.recv(4096).decode().strip())\n")
    res = lab.run(lab.scanner_ns, sys.executable, "-c", code, timeout=20)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_classic_tcp_catches_a_connect_scan_and_sends_the_banner(lab):
    lab.wait_reachable()
    busy = listen(lab, 11)  # a port in TCP_PORTS already taken: skipped with a log line
    try:
        with SentryProcess(lab, args=("-tcp",), conf=f'PORT_BANNER="{BANNER}"\n') as sw:
            assert "could not bind TCP socket: 11" in sw.log()
            st = sw.status()
            assert st["modes"] == ["tcp"] and st["watched"]["TCP"]["in_use"] == 1
            assert read_banner(lab, 15) == BANNER
            sw.wait_history(lab.scanner_ip4)
            assert re.search(rf"attackalert: Connect from host: {lab.scanner_ip4}/"
                             rf"{lab.scanner_ip4} to TCP port: 15$", sw.log(), re.M), sw.log()
            ev = [e for e in sw.events() if e["action"] == "block"][0]
            assert ev["evidence"] == "connect" and ev["mode"] == "tcp"
            assert sw.status()["blocked"][0]["evidence"] == "connect"
            assert (sw.paths["blocked"].parent / "blocked.tcp").read_text().count("Blocked") == 1
            assert not connect(lab, lab.target_ip4, 1)
    finally:
        busy.kill()
        busy.wait()


@pytest.mark.parametrize("family", [4, 6])
def test_classic_tcp_with_nmap_connect_scan(lab, family):
    """A completed handshake is the strongest evidence (issue 13): "proven" in the log line,
    status and events.jsonl, over IPv4 and IPv6."""
    lab.wait_reachable()
    addr = lab.scanner_ip6 if family == 6 else lab.scanner_ip4
    with SentryProcess(lab, args=("--tcp-mode", "classic")) as sw:
        nmap(lab, "-sT", "-p", "1-40", v6=family == 6)
        ev = sw.wait_block_event()
        assert ev["addr"] == addr and ev["strength"] == "proven", ev
        log = sw.log()
        assert f"attackalert: Connect from host: {addr}/{addr} to TCP port:" in log, log
        assert re.search(rf"Host {re.escape(addr)} has been blocked via nftables .*"
                         r"\(evidence: proven", log), log
        assert [b["strength"] for b in sw.status()["blocked"]] == ["proven"]


def test_classic_udp_catches_a_udp_probe(lab):
    lab.wait_reachable()
    with SentryProcess(lab, args=("-udp",)) as sw:
        nmap(lab, "-sU", "-p", "7")
        sw.wait_block_event()
        assert re.search(rf"attackalert: UDP scan from host: {lab.scanner_ip4}/{lab.scanner_ip4}"
                         r" to UDP port: 7$", sw.log(), re.M), sw.log()
        ev = [e for e in sw.events() if e["action"] == "block"][0]
        assert ev["evidence"] == "datagram" and ev["mode"] == "udp"


def test_advanced_tcp_watches_unlisted_ports_and_skips_exclusions(lab):
    lab.wait_reachable()
    with SentryProcess(lab, args=("-atcp", "-sudp"), conf='SWEEP_PORTS="0"\n') as sw:
        st = sw.status()
        assert st["modes"] == ["atcp", "sudp"]
        assert st["watched"]["TCP"]["configured"] == 1023 - 2  # below 1024, minus 113 and 139
        for _ in range(3):
            nmap(lab, "-sS", "-p", "113,139")
        time.sleep(0.3)
        assert sw.status()["blocked"] == [] and sw.status()["counters"]["tripwire"] == 0
        nmap(lab, "-sS", "-p", "600")  # not in TCP_PORTS: only advanced mode sees it
        sw.wait_block_event()
        assert "to TCP port: 600" in sw.log()
        assert (sw.paths["blocked"].parent / "blocked.atcp").exists()


def test_advanced_mode_follows_services_that_start_and_stop(lab):
    lab.wait_reachable()
    with SentryProcess(lab, args=("-atcp",), conf='ADVANCED_PORTS_TCP="10000"\n') as sw:
        svc = listen(lab, 8080)
        try:
            for _ in range(3):
                nmap(lab, "-sS", "-p", "8080")
            assert connect(lab, lab.target_ip4, 8080)
            assert sw.status()["blocked"] == []
        finally:
            svc.kill()
            svc.wait()
        nmap(lab, "-sS", "-p", "8080")  # the service is gone: 8080 is a trap again
        sw.wait_block_event()
        assert "to TCP port: 8080" in sw.log()
