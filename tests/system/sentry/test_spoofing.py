"""Issue 13: spoof-aware response against real nmap -D and a spoofing hping3, in namespaces.

Decoys are addresses of the lab's own subnet with nothing behind them (never RND): the
return-routability challenge sends each one a SYN-ACK, which must stay inside the lab."""
import re
import time

import pytest

from sentryproc import SentryProcess, connect, nmap, wait_for

NDECOYS = 10


def decoys(lab, v6):
    if v6:
        base = lab.target_ip6.rsplit("::", 1)[0]
        return [f"{base}::{100 + i:x}" for i in range(NDECOYS)]
    base = lab.target_ip4.rsplit(".", 1)[0]
    return [f"{base}.{100 + i}" for i in range(NDECOYS)]


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_decoy_scan_blocks_the_real_scanner_only(lab, web, v6):
    lab.wait_reachable()
    me = lab.scanner_ip6 if v6 else lab.scanner_ip4
    fam = 6 if v6 else 4
    target = lab.target_ip6 if v6 else lab.target_ip4
    fakes = decoys(lab, v6)
    assert connect(lab, target, web)
    with SentryProcess(lab) as sw:
        # ME in the middle of the decoys, as an attacker would place it.
        order = fakes[:5] + ["ME"] + fakes[5:]
        nmap(lab, "-sS", "-D", ",".join(order), "-p", "1-40", v6=v6)
        sw.wait_history(me, timeout=15)
        wait_for(lambda: sw.log().count("possibly spoofed") >= NDECOYS, timeout=15,
                 what="every decoy logged as possibly spoofed")
        log = sw.log()
        # The real scanner: full block, reported by name as proven.
        assert me in sw.nft_set(fam), log
        deny = sw.read("hosts_deny")
        assert (f"[{me}]" if v6 else me) in deny, deny
        assert re.search(rf"Host {re.escape(me)} has been blocked via nftables .*"
                         r"\(evidence: proven", log), log
        # No decoy in hosts.deny or nft; each in XDP only, logged "possibly spoofed".
        nft = sw.nft_set(fam)
        for d in fakes:
            assert d not in nft, (d, nft)
            assert d not in deny, (d, deny)
            assert re.search(rf"Host {re.escape(d)} \(possibly spoofed: decoy in a cohort of "
                             rf"\d+ probing in lockstep; the real scanner is {re.escape(me)}\) "
                             r"dropped in XDP only", log), (d, log)
        st = sw.status()
        assert st["spoof"]["evidence"]["proven"] >= 1, st["spoof"]
        assert st["spoof"]["evidence"]["decoy"] >= NDECOYS, st["spoof"]
        assert st["spoof"]["challenges_answered"] >= 1
        assert [b["strength"] for b in st["blocked"]] == ["proven"], st["blocked"]
        spoofed = [e for e in sw.events() if e.get("type") == "spoofed"]
        assert {e["addr"] for e in spoofed} == set(fakes), spoofed
        assert all(e["strength"] == "decoy" and e["real"] == [me] for e in spoofed)
        assert not connect(lab, target, web), "the real scanner still connects"


def test_portsentry_response_blocks_every_decoy(lab):
    """EVIDENCE_RESPONSE=portsentry keeps PortSentry's behaviour: everything full."""
    lab.wait_reachable()
    fakes = decoys(lab, False)[:3]
    with SentryProcess(lab, conf='EVIDENCE_RESPONSE="portsentry"\n') as sw:
        nmap(lab, "-sS", "-D", ",".join(fakes + ["ME"]), "-p", "1-40")
        for a in fakes + [lab.scanner_ip4]:
            sw.wait_history(a, timeout=15)
        assert all(a in sw.read("hosts_deny") for a in fakes)
        assert "possibly spoofed" not in sw.log()
