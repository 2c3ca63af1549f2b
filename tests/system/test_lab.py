"""The test lab itself: namespaces, addressing, clean-up, sysctl isolation."""

from __future__ import annotations

import subprocess

from lab import Lab, netns_list


def _root_veths() -> dict[str, str]:
    """Root-namespace veths: name -> the rest of the `ip -o link` line."""
    out = subprocess.run(["ip", "-o", "link", "show", "type", "veth"],
                         capture_output=True, text=True, check=True).stdout
    veths = {}
    for line in out.splitlines():
        if line.strip():
            # "12: name@peer: <...> ... link-netns NS" -> name
            _, name, rest = line.split(":", 2)
            veths[name.strip().split("@")[0]] = rest
    return veths


def test_namespaces_exist_and_ping_v4_v6(module_lab):
    lab = module_lab
    names = netns_list()
    assert lab.target_ns in names and lab.scanner_ns in names
    lab.wait_reachable()
    for ns, addrs in ((lab.scanner_ns, (lab.target_ip4, lab.target_ip6)),
                      (lab.target_ns, (lab.scanner_ip4, lab.scanner_ip6))):
        for addr in addrs:
            res = lab.run(ns, "ping", "-n", "-c1", "-W2", addr)
            assert res.returncode == 0, f"ping {addr} from {ns}: {res.stdout}{res.stderr}"
    addrs = lab.run(lab.target_ns, "ip", "-o", "addr", "show", "dev", lab.target_if).stdout
    assert f"{lab.target_ip4}/24" in addrs and f"{lab.target_ip6}/64" in addrs


def test_close_leaves_nothing_behind():
    lab = Lab().start()
    names = (lab.target_ns, lab.scanner_ns)
    assert set(names) <= set(netns_list())
    sleeper = lab.popen(lab.target_ns, "sleep", "300")
    lab.popen(lab.scanner_ns, "sleep", "300")
    lab.close()
    lab.close()  # a second close is harmless
    assert sleeper.poll() is not None
    assert [n for n in netns_list() if n in names] == []
    # No veth of the lab in the root namespace, and none pointing into it.
    for name, rest in _root_veths().items():
        assert name not in (lab.target_if, lab.scanner_if)
        assert not any(f"link-netns {ns}" in rest for ns in names), name


def test_icmp_ratelimit_lifted_in_target_only(lab, root_sysctls):
    at_start, read_root = root_sysctls
    assert lab.sysctl("target", "net.ipv4.icmp_ratelimit") == "0"
    assert lab.sysctl("target", "net.ipv6.icmp.ratelimit") == "0"
    assert lab.sysctl("target", "net.ipv4.icmp_msgs_per_sec") == "100000"
    # The scanner namespace keeps the kernel default.
    assert lab.sysctl("scanner", "net.ipv4.icmp_ratelimit") != "0"
    # The root namespace: same as before any lab was made, during and after.
    assert read_root() == at_start
    with Lab() as other:
        assert other.sysctl("target", "net.ipv4.icmp_ratelimit") == "0"
        assert read_root() == at_start
    assert read_root() == at_start
