"""evidence.py with synthetic events and an injected clock."""
import ipaddress

import pytest

from scanwatch.sentry.evidence import (DECOY, PROVEN, SUSPECT, UNVERIFIED, Evidence, hop_count,
                                       parse_response)
from scanwatch.sentry.model import ScanEvent

PORTS = (("TCP", 1), ("TCP", 11), ("TCP", 15))


def ev(addr, mono=10.0, ports=PORTS, **kw):
    return ScanEvent(addr=ipaddress.ip_address(addr), mono=mono, proto="TCP", port=15,
                     kind="SYN/Normal", reason="trigger", ports=ports, **kw)


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_connect_is_proven_at_once_and_hop_mismatch_is_suspect():
    e = Evidence(clock=Clock())
    assert [v.strength for v in e.admit(ev("10.0.0.1", evidence="connect"))] == [PROVEN]
    assert [v.strength for v in e.admit(ev("10.0.0.2", ttl=60, peer_hops=2))] == [SUSPECT]
    assert [v.strength for v in e.admit(ev("10.0.0.3", hop_mismatch=True))] == [SUSPECT]
    # Same hop count as learned (63 = 1 hop from 64): not suspect, so it waits.
    assert e.admit(ev("10.0.0.4", ttl=63, peer_hops=2)) == []


def test_lone_source_waits_then_unverified_or_proven_on_answer():
    clock = Clock()
    e = Evidence(wait=1.5, clock=clock)
    assert e.admit(ev("10.0.0.5")) == [] and e.is_pending("10.0.0.5")
    clock.t += 1.0
    assert e.due() == []
    clock.t += 0.6
    [v] = e.due()
    assert v.strength == UNVERIFIED and v.cohort == ()
    assert e.admit(ev("10.0.0.6")) == []
    [v] = e.answer("10.0.0.6")
    assert v.strength == PROVEN and not e.is_pending("10.0.0.6")
    assert e.due() == [] and e.answer("10.0.0.6") == []


def test_decoy_cohort_names_the_real_member():
    clock = Clock()
    e = Evidence(wait=1.5, clock=clock)
    addrs = [f"10.0.0.{i}" for i in range(20, 31)]
    for i, a in enumerate(addrs):  # nmap -D: same ports, same order, microseconds apart
        assert e.admit(ev(a, mono=10.0 + i * 0.0001)) == []
    e.admit(ev("10.0.9.9", mono=10.0, ports=(("TCP", 2), ("TCP", 3))))  # another scan
    [real] = e.answer("10.0.0.27")
    assert real.strength == PROVEN and real.cohort[0] == "10.0.0.27" and len(real.cohort) == 11
    clock.t += 2
    out = {str(v.addr): v for v in e.due()}
    assert {a for a, v in out.items() if v.strength == DECOY} == set(addrs) - {"10.0.0.27"}
    assert out["10.0.9.9"].strength == UNVERIFIED
    assert all(v.cohort[0] == "10.0.0.27" for a, v in out.items() if v.strength == DECOY)
    assert e.counts == {PROVEN: 1, DECOY: 10, SUSPECT: 0, UNVERIFIED: 1}


def test_not_lockstep_when_too_far_apart():
    clock = Clock()
    e = Evidence(wait=1.0, cohort_window=0.25, clock=clock)
    e.admit(ev("10.0.0.1", mono=10.0))
    e.admit(ev("10.0.0.2", mono=11.0))
    clock.t += 2
    assert {v.strength for v in e.due()} == {UNVERIFIED}


def test_hop_count():
    assert [hop_count(t) for t in (64, 63, 128, 120, 255, 250, 30)] == [0, 1, 0, 8, 0, 5, 2]


def test_parse_response():
    assert parse_response("portsentry") == dict.fromkeys((PROVEN, DECOY, SUSPECT, UNVERIFIED),
                                                         "full")
    d = parse_response("proven:full, unverified:full,decoy:kernel,suspect:log")
    assert d[DECOY] == "kernel" and d[SUSPECT] == "log"
    for bad in ("proven:full", "proven:block,unverified:full,decoy:kernel,suspect:log",
                "x:full", "proven"):
        with pytest.raises(ValueError):
            parse_response(bad)


def test_random_source_flood_is_one_bounded_cohort():
    """hping3 --rand-source on one port: thousands in lockstep, judged in O(1) each."""
    from scanwatch.sentry.evidence import COHORT_MAX
    e = Evidence(clock=Clock())
    out = []
    for i in range(5000):
        out += e.admit(ev(f"10.1.{i // 250}.{i % 250}", mono=10.0 + i * 1e-5,
                          ports=(("TCP", 1),)), challenged=False)
    assert out[0].strength == UNVERIFIED  # alone, so far
    assert all(v.strength == DECOY for v in out[1:])
    assert max(len(v.cohort) for v in out) == COHORT_MAX
    assert len(e.patterns) == 1


def test_addresses_of_one_v6_prefix_are_one_source_not_a_cohort():
    """issue 14: the kernel counts IPv6 sources per /64, so every address of a scanner
    rotating inside its /64 reports the same ports in the same order."""
    clock = Clock()
    e = Evidence(wait=1.5, clock=clock, v6_prefix=64)
    for i in range(3):
        assert e.admit(ev(f"2001:db8:1:2::{i + 1:x}", mono=10.0 + i * 0.0001)) == []
    e.admit(ev("2001:db8:9:9::1", mono=10.0001))  # another /64 in lockstep: a decoy cohort
    clock.t += 2
    out = {str(v.addr): v.strength for v in e.due()}
    assert out == {"2001:db8:1:2::1": DECOY, "2001:db8:1:2::2": DECOY,
                   "2001:db8:1:2::3": DECOY, "2001:db8:9:9::1": DECOY}
    e = Evidence(wait=1.5, clock=clock, v6_prefix=64)
    for i in range(3):
        e.admit(ev(f"2001:db8:1:2::{i + 1:x}", mono=20.0 + i * 0.0001))
    clock.t += 2
    assert {v.strength for v in e.due()} == {UNVERIFIED}
    e = Evidence(wait=1.5, clock=clock)  # per address (V6_PREFIX=128): a cohort
    for i in range(3):
        e.admit(ev(f"2001:db8:1:2::{i + 1:x}", mono=30.0 + i * 0.0001))
    clock.t += 2
    assert {v.strength for v in e.due()} == {DECOY}
