"""Issue 14: the XDP program holds under hostile traffic (lockout, forged proof, corrupt state).

Real daemon in a Lab's target namespace, hand-built frames from the scanner namespace."""
import ipaddress
import os
import signal
import time

from scanwatch.ignore import to_key
from test_resilience import (Sentry, daemon_map, kernel_blocked, send_l3, ipv4, tcp, target_mac,
                             workdir)  # noqa: F401 (workdir is a fixture)
from sentry import wait_for


def test_a_source_tracked_before_it_was_ignored_is_never_blocked(lab, workdir):  # noqa: F811
    """An address with a kernel entry is added to the ignore file and SIGHUP'd, then trips
    the wire and sweeps: the kernel never blocks it (it did: the trie was only consulted
    when an entry was created, and the daemon undid the block afterwards)."""
    lab.wait_reachable()
    tgt, src = lab.target_ip4, "198.51.100.31"
    mac = target_mac(lab)
    sw = Sentry(lab, workdir, conf='SCAN_TRIGGER="2"\n')

    def probes(ports):
        send_l3(lab, [ipv4(src, tgt, tcp(src, tgt, p, sport=40000 + i))
                      for i, p in enumerate(ports)], mac)

    try:
        c0 = sw.status()["counters"]
        probes([1, 1])  # two hits: below the trigger, but the source now has an entry
        wait_for(lambda: sw.status()["counters"]["tripwire"] >= c0["tripwire"] + 2, 3,
                 what="2 hits counted")
        assert to_key(src) in daemon_map(sw.pid, "sources")[2]
        n = sw.log().count("(1 ignore entries)")
        sw.ignore_file.write_text(f"{src}\n")
        os.kill(sw.pid, signal.SIGHUP)
        wait_for(lambda: sw.log().count("(1 ignore entries)") > n, 5, what="reload")
        c1 = sw.status()["counters"]
        probes([1, 1, 1] + list(range(2000, 2030)))  # tripwire hits and a sweep
        wait_for(lambda: sw.status()["counters"]["packets"] >= c1["packets"] + 33, 3,
                 what="33 probes seen")
        time.sleep(0.3)
        st = sw.status()
        c2 = st["counters"]
        assert c2["kernel_blocks"] == c1["kernel_blocks"], "the kernel blocked an ignored source"
        assert src not in kernel_blocked(sw.pid)
        assert src not in {b["addr"] for b in st["blocked"]}
        assert c2["ignored"] >= c1["ignored"] + 33, (c1["ignored"], c2["ignored"])
        assert to_key(src) not in daemon_map(sw.pid, "sources")[2]
        assert src not in (sw.paths["history"].read_text() if sw.paths["history"].exists()
                           else "")
    finally:
        sw.stop()


def test_no_kernel_block_without_its_record_when_the_events_ring_is_full(lab, workdir):  # noqa: F811
    """The daemon is stopped (SIGSTOP), so nothing drains the events ring, and 6,000 spoofed
    sources each trip the wire once: the kernel blocks exactly the sources whose record it
    could reserve; the rest are counted lost and stay unblocked (they were blocked with no
    record: a lockout nobody could see)."""
    lab.wait_reachable()
    tgt, mac = lab.target_ip4, target_mac(lab)
    sw = Sentry(lab, workdir)
    srcs = [str(ipaddress.IPv4Address("198.18.0.1") + i) for i in range(6000)]
    frames = [ipv4(s, tgt, tcp(s, tgt, 1)) for s in srcs]
    try:
        c0 = sw.status()["counters"]
        os.kill(sw.pid, signal.SIGSTOP)
        try:
            send_l3(lab, frames, mac)
            blocked = kernel_blocked(sw.pid)
        finally:
            os.kill(sw.pid, signal.SIGCONT)
        c1 = sw.status()["counters"]
        d = {k: c1[k] - c0[k] for k in ("tripwire", "kernel_blocks", "events_lost")}
        print(f"\nFIGURE ring full: {d}, {len(blocked)} in blocked", flush=True)
        assert d["events_lost"] > 0, d  # the ring did fill
        assert d["kernel_blocks"] + d["events_lost"] == d["tripwire"], d
        assert len(blocked) == d["kernel_blocks"], (len(blocked), d)
    finally:
        sw.stop()
