"""IPv6 sources are counted per prefix (issue 14): a scanner that rotates its source
address inside its /64 (any host with a /64 can) adds up, and the kernel's block covers
the prefix."""
import ipaddress

from sentryproc import SentryProcess, connect, listen, wait_for
from resilience import ipv6, send_l3, tcp


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
