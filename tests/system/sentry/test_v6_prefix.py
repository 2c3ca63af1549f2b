"""IPv6 sources are counted per prefix (issue 14): a scanner that rotates its source
address inside its /64 (any host with a /64 can) adds up, and the kernel's block covers
the prefix."""
import ipaddress
import json
import sys

from sentryproc import SentryProcess, connect, listen, wait_for
from resilience import Sentry, ipv6, send_l3, tcp


def rotated(lab, first, n):
    net = ipaddress.ip_network(f"{lab.scanner_ip6}/64", strict=False)
    return [str(net.network_address + first + i) for i in range(n)]


def test_a_scanner_rotating_addresses_in_its_64_is_caught_and_its_prefix_dropped(lab):
    server = listen(lab, 8080)
    try:
        with SentryProcess(lab, args=["-i", lab.target_if]) as sw:
            assert connect(lab, lab.target_ip6, 8080)
            # 25 closed ports, each from an address of its own: no address reaches
            # SWEEP_PORTS (20), the /64 does.
            srcs = rotated(lab, 0x1000, 25)
            send_l3(lab, [ipv6(s, lab.target_ip6, 6, tcp(s, lab.target_ip6, 30001 + i))
                          for i, s in enumerate(srcs)])
            ev = sw.wait_block_event(timeout=15)
            assert ev["addr"] in srcs, ev
            # Another address of the same /64 (the scanner's own, never reported) is
            # dropped in XDP: the block covers the prefix.
            assert not connect(lab, lab.target_ip6, 8080)
            assert sw.status()["counters"]["dropped"] > 0
            # ... while the scanner's IPv4 address, another source, is not.
            assert connect(lab, lab.target_ip4, 8080)
    finally:
        server.kill()
        server.wait()


def test_per_address_when_v6_prefix_is_128(lab):
    with SentryProcess(lab, args=["-i", lab.target_if], conf="V6_PREFIX=128\n") as sw:
        srcs = rotated(lab, 0x3000, 25)
        send_l3(lab, [ipv6(s, lab.target_ip6, 6, tcp(s, lab.target_ip6, 30001 + i))
                      for i, s in enumerate(srcs)])
        wait_for(lambda: sw.status()["counters"].get("SYN/Normal", 0) >= 25, 10,
                 what="the 25 probes counted")
        assert [e for e in sw.events() if e.get("action") == "block"] == []


def nft_prefixes(lab):
    """{prefix: timeout} of set prefix6, read with `nft -j list` in the target namespace."""
    res = lab.run(lab.target_ns, "nft", "-j", "list", "set", "inet", "scanwatch", "prefix6")
    out = {}
    for obj in json.loads(res.stdout)["nftables"] if res.returncode == 0 else ():
        for el in obj.get("set", {}).get("elem", []):
            e = el.get("elem", el)
            p = e.get("val", e)["prefix"]
            out[f"{p['addr']}/{p['len']}"] = e.get("timeout")
    return out


def connect_from(lab, src, addr, port, timeout=2.0):
    code = ("import socket,sys\n"
            f"try:\n socket.create_connection(('{addr}', {port}), timeout={timeout}, "
            f"source_address=('{src}', 0)).close()\n"
            "except OSError:\n sys.exit(1)\n")
    return lab.run(lab.scanner_ns, sys.executable, "-c", code, timeout=timeout + 10).returncode == 0


def sweep_from_the_64(lab, first):
    srcs = rotated(lab, first, 25)
    send_l3(lab, [ipv6(s, lab.target_ip6, 6, tcp(s, lab.target_ip6, 30001 + i))
                  for i, s in enumerate(srcs)])
    return srcs


def test_the_prefix_is_blocked_in_nft_and_hosts_deny_sparing_an_ignored_address(lab, tmp_path):
    """issue 14: the /64's block reaches nftables (set prefix6) and hosts.deny
    ([net]/64), spares an ignored address inside the /64 (nft and XDP), is restored after
    a restart, lifted by `unblock` with any address inside it, and expires."""
    net = ipaddress.ip_network(f"{lab.scanner_ip6}/64", strict=False)
    prefix, admin = str(net), str(net.network_address + 0x77)
    wrappers = f"ALL: [{net.network_address}]/64"
    lab.run(lab.scanner_ns, "ip", "-6", "addr", "add", f"{admin}/64", "dev", lab.scanner_if,
            "nodad", check=True)
    (tmp_path / "ignore").write_text(f"{admin}\n")
    server = listen(lab, 8080)
    try:
        sw = Sentry(lab, tmp_path, args=["-i", lab.target_if], conf="BLOCK_TIMEOUT=3600\n")
        try:
            assert connect_from(lab, admin, lab.target_ip6, 8080)
            srcs = sweep_from_the_64(lab, 0x5000)
            ev = sw.wait_block_event(timeout=15)
            assert ev["addr"] in srcs, ev
            wait_for(lambda: prefix in nft_prefixes(lab), 10, what="prefix in nft set prefix6")
            wait_for(lambda: wrappers in sw.read("hosts_deny"), 10, what="hosts.deny line")
            line = next(ln for ln in sw.read("hosts_deny").splitlines() if wrappers in ln)
            assert " EXCEPT " in line and f"[{admin}]" in line, line  # tcpd spares it too
            assert [b["addr"] for b in sw.status()["blocked"]] == [prefix]
            assert not connect_from(lab, lab.scanner_ip6, lab.target_ip6, 8080)  # the scanner's
            assert connect_from(lab, admin, lab.target_ip6, 8080)  # ignored: spared
            assert connect(lab, lab.target_ip4, 8080)  # IPv4 is another source
        finally:
            sw.stop()
        # A restart with the table gone: the prefix comes back from the saved blocks.
        lab.run(lab.target_ns, "nft", "delete", "table", "inet", "scanwatch", check=True)
        sw = Sentry(lab, tmp_path, args=["-i", lab.target_if], conf="BLOCK_TIMEOUT=3600\n")
        try:
            assert prefix in nft_prefixes(lab)
            spared = lab.run(lab.target_ns, "nft", "-j", "list", "set", "inet", "scanwatch",
                             "spared6", check=True).stdout
            assert admin in spared
            assert not connect_from(lab, lab.scanner_ip6, lab.target_ip6, 8080)
            assert connect_from(lab, admin, lab.target_ip6, 8080)
            out = sw.cli("unblock", str(net.network_address + 0x5003), "--run-dir",
                         str(sw.paths["run"])).stdout
            assert "unblocked" in out and "not blocked" not in out, out
            assert nft_prefixes(lab) == {}
            assert wrappers not in sw.read("hosts_deny")
            assert "sshd: 192.0.2.7" in sw.read("hosts_deny")  # the admin's own line stays
            wait_for(lambda: connect_from(lab, lab.scanner_ip6, lab.target_ip6, 8080), 10,
                     what="lifted in XDP")
        finally:
            sw.stop()
    finally:
        server.kill()
        server.wait()


def test_a_prefix_block_expires_everywhere(lab):
    net = ipaddress.ip_network(f"{lab.scanner_ip6}/64", strict=False)
    with SentryProcess(lab, args=["-i", lab.target_if], conf="BLOCK_TIMEOUT=3\n") as sw:
        sweep_from_the_64(lab, 0x6000)
        sw.wait_block_event(timeout=15)
        wait_for(lambda: str(net) in nft_prefixes(lab), 10, what="prefix in nft")
        wait_for(lambda: f"[{net.network_address}]/64" in sw.read("hosts_deny"), 10,
                 what="hosts.deny line")
        wait_for(lambda: "expired" in sw.log(), 15, what="the block's expiry")
        wait_for(lambda: nft_prefixes(lab) == {}, 10, what="prefix gone from nft")
        assert f"[{net.network_address}]/64" not in sw.read("hosts_deny")
        assert sw.status()["blocked"] == []
