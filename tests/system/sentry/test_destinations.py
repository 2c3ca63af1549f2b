"""False alarms on routers and container hosts (issue 14): only packets to this host's own
addresses count, and ports the host's DNAT/redirect rules forward are open."""
import subprocess
import sys

from sentryproc import SentryProcess, listen


def _ip(*argv):
    subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=30)


def _scan(lab, addr, ports):
    res = lab.run(lab.scanner_ns, "nmap", "-n", "-Pn", "-sS", "-T5", "--max-retries", "0",
                  "-p", ports, "-oG", "-", addr, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


def reported(sw, addr):
    return [e for e in sw.events() if e.get("addr") == addr]


def test_router_forwarding_a_scan_of_an_inner_host_reports_nothing_about_itself(lab):
    """scanner -> target (routing, scanwatch on its scanner-facing link) -> inner host."""
    x = lab.subnet
    inner_ns = f"swi-{lab.target_ns[4:]}"
    router_ip, inner_ip = f"198.19.{x}.1", f"198.19.{x}.2"
    _ip("netns", "add", inner_ns)
    try:
        _ip("link", "add", "swr0", "netns", lab.target_ns, "type", "veth", "peer", "name",
            "swi0", "netns", inner_ns)
        _ip("-n", lab.target_ns, "addr", "add", f"{router_ip}/24", "dev", "swr0")
        _ip("-n", lab.target_ns, "link", "set", "swr0", "up")
        _ip("-n", inner_ns, "addr", "add", f"{inner_ip}/24", "dev", "swi0")
        _ip("-n", inner_ns, "link", "set", "swi0", "up")
        _ip("-n", inner_ns, "link", "set", "lo", "up")
        _ip("-n", inner_ns, "route", "add", "default", "via", router_ip)
        _ip("-n", lab.scanner_ns, "route", "add", f"198.19.{x}.0/24", "via", lab.target_ip4)
        assert lab.run(lab.target_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1").returncode == 0
        with SentryProcess(lab, args=["-i", lab.target_if]) as sw:
            out = _scan(lab, inner_ip, "1-200")
            assert "Ports: " in out and "closed" in out, f"the scan did not reach the inner host: {out}"
            # Time for a report to be made, had one been due (the kernel reports at once).
            lab.run(lab.scanner_ns, sys.executable, "-c", "import time; time.sleep(2)")
            assert reported(sw, lab.scanner_ip4) == [], sw.log()
            assert sw.read("history") == ""
            assert sw.status()["blocked"] == []
            # The same scan of the router itself is reported: the detector is on.
            _scan(lab, lab.target_ip4, "1-200")
            sw.wait_history(lab.scanner_ip4, timeout=10)
    finally:
        subprocess.run(["ip", "netns", "del", inner_ns], capture_output=True, timeout=30)


CONNECT_ALL = """
import socket, sys, time
addr, ports = sys.argv[1], [int(p) for p in sys.argv[2].split(",")]
ok, t0 = 0, time.monotonic()
for p in ports:
    try:
        s = socket.create_connection((addr, p), timeout=2)
        ok += s.recv(16).startswith(b"hello")
        s.close()
    except OSError:
        pass
print(ok, round(time.monotonic() - t0, 2))
"""


def test_clients_of_25_dnat_and_redirected_ports_are_no_sweep(lab):
    """A container host: 25 published ports (DNAT to a service, or redirect), each
    connected once within 5 s by one client. XDP runs before NAT, so none has a socket."""
    server = listen(lab, 8080)
    ports = list(range(10001, 10026))
    rules = (f"table ip dock {{\n chain pre {{\n type nat hook prerouting priority -100;\n"
             f" tcp dport 10001-10012 dnat to {lab.target_ip4}:8080\n"
             f" tcp dport 10013-10025 redirect to :8080\n }}\n}}\n")
    try:
        res = lab.run(lab.target_ns, "nft", "-f", "-", input=rules)
        assert res.returncode == 0, res.stderr
        with SentryProcess(lab, args=["-i", lab.target_if]) as sw:
            res = lab.run(lab.scanner_ns, sys.executable, "-c", CONNECT_ALL, lab.target_ip4,
                          ",".join(map(str, ports)), timeout=120)
            ok, took = res.stdout.split()
            assert int(ok) == 25, f"only {ok} of 25 published ports answered: {res.stderr}"
            assert float(took) < 5.0, f"the 25 connections took {took} s"
            lab.run(lab.scanner_ns, sys.executable, "-c", "import time; time.sleep(2)")
            assert reported(sw, lab.scanner_ip4) == [], sw.log()
            assert sw.read("history") == "" and sw.status()["blocked"] == []
            # A sweep of 25 ports nothing forwards is still a sweep.
            _scan(lab, lab.target_ip4, "20001-20025")
            sw.wait_history(lab.scanner_ip4, timeout=10)
    finally:
        server.kill()
        server.wait()


def test_an_address_added_or_removed_counts_from_the_netlink_event(lab):
    """Own addresses follow RTM_NEWADDR/RTM_DELADDR (issue 14): a probe of an address added
    while the sentry runs is counted at once (well before the 60 s resync), and after the
    address is removed it is not counted any more."""
    from resilience import ipv4, send_l3, tcp
    from sentryproc import wait_for
    new = f"198.18.{lab.subnet}.50"

    def probe():
        send_l3(lab, [ipv4(lab.scanner_ip4, new, tcp(lab.scanner_ip4, new, 40123))])

    def counted():
        return sw.status()["counters"].get("SYN/Normal", 0)

    with SentryProcess(lab, args=["-i", lab.target_if]) as sw:
        events0 = sw.status()["destinations"]["own_address_events"]
        for _ in range(3):
            probe()
        lab.run(lab.scanner_ns, sys.executable, "-c", "import time; time.sleep(1)")
        assert counted() == 0, "a packet to an address that is not ours was counted"
        lab.run(lab.target_ns, "ip", "addr", "add", f"{new}/32", "dev", lab.target_if,
                check=True)
        wait_for(lambda: probe() or counted() > 0, 5, what="the new address counted",
                 step=0.2)
        assert sw.status()["destinations"]["own_address_events"] > events0
        lab.run(lab.target_ns, "ip", "addr", "del", f"{new}/32", "dev", lab.target_if,
                check=True)
        lab.run(lab.scanner_ns, sys.executable, "-c", "import time; time.sleep(1)")
        before = counted()
        for _ in range(3):
            probe()
        lab.run(lab.scanner_ns, sys.executable, "-c", "import time; time.sleep(1)")
        assert counted() == before, "a packet to a removed address was counted"


def test_iptables_multiport_legacy_ranges_and_one_to_one_nat_added_while_running(lab):
    """Rules added after the start are read at once from nftables' change events
    (iptables-nft's -m multiport through iptables-nft-save), iptables-legacy's from its own
    save (it sends no events), and a 1:1 DNAT (no port) takes its address out of `local`."""
    from resilience import ipv4, send_l3, tcp
    from sentryproc import wait_for
    server = listen(lab, 8080)
    extra = f"198.18.{lab.subnet}.60"
    ports = list(range(21001, 21026))
    try:
        lab.run(lab.target_ns, "ip", "addr", "add", f"{extra}/32", "dev", lab.target_if,
                check=True)
        with SentryProcess(lab, args=["-i", lab.target_if]) as sw:
            reads0 = sw.status()["destinations"]["nat_reads"]
            for argv in (
                    ["iptables-nft", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "-m",
                     "multiport", "--dports", "21001,21002:21012", "-j", "REDIRECT",
                     "--to-ports", "8080"],
                    ["nft", f"add table ip one; add chain ip one pre {{ type nat hook "
                     f"prerouting priority -100; }}; add rule ip one pre ip daddr {extra} "
                     f"dnat to 198.19.{lab.subnet}.9"]):
                res = lab.run(lab.target_ns, *argv)
                assert res.returncode == 0, res.stderr
            dest = wait_for(lambda: (lambda d: d if d["forwarded_ports"]["tcp"] >= 12
                                     and d["forwarded_addresses"] else None)(
                sw.status()["destinations"]), 5, what="nft/iptables-nft change read")
            assert dest["nat_reads"] > reads0 and dest["forwarded_addresses"] == [f"{extra}/32"]
            res = lab.run(lab.target_ns, "iptables-legacy", "-t", "nat", "-A", "PREROUTING",
                          "-p", "tcp", "--dport", "21013:21025", "-j", "REDIRECT",
                          "--to-ports", "8080")
            assert res.returncode == 0, res.stderr
            wait_for(lambda: sw.status()["destinations"]["forwarded_ports"]["tcp"] >= 25, 15,
                     what="iptables-legacy rule read")
            res = lab.run(lab.scanner_ns, sys.executable, "-c", CONNECT_ALL, lab.target_ip4,
                          ",".join(map(str, ports)), timeout=120)
            ok, _took = res.stdout.split()
            assert int(ok) == 25, f"only {ok} of 25 forwarded ports answered: {res.stderr}"
            # 25 closed ports of the 1:1 NAT'd address: forwarded whole, no sweep here
            send_l3(lab, [ipv4(lab.scanner_ip4, extra, tcp(lab.scanner_ip4, extra, 20001 + i))
                          for i in range(25)])
            lab.run(lab.scanner_ns, sys.executable, "-c", "import time; time.sleep(2)")
            assert reported(sw, lab.scanner_ip4) == [], sw.log()
            assert sw.read("history") == "" and sw.status()["blocked"] == []
            _scan(lab, lab.target_ip4, "20001-20025")  # the detector is on
            sw.wait_history(lab.scanner_ip4, timeout=10)
    finally:
        server.kill()
        server.wait()
