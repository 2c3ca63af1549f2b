"""Kernel cost (issues 13, 14): the verdict cache (`fast`) in front of the XDP program's maps
decides nothing the full path would not.

A peer streaming over an established connection gets a "clean" verdict, after which its
ACKs to the listening port skip the socket lookup. The same peer ACK-scanning closed ports
must still be caught: only ACKs to a port with a listener (never probes) take the cache."""
import json
import pathlib
import subprocess
import sys
import time

import pytest

from sentryproc import SentryProcess, block_key, nmap, wait_for

PORT = 8022

SINK = f"""
import socket, threading
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('::', {PORT}))
s.listen(8)
print('ready', flush=True)
def drain(c):
    while c.recv(65536):
        pass
while True:
    c, _ = s.accept()
    threading.Thread(target=drain, args=(c,), daemon=True).start()
"""

STREAM = f"""
import socket, sys, time
c = socket.create_connection((sys.argv[1], {PORT}))
print('up', flush=True)
while True:
    c.sendall(b'x' * 100)
    time.sleep(0.005)
"""


@pytest.mark.parametrize("family", [4, 6])
def test_connected_peer_is_clean_yet_its_ack_scan_is_caught(lab, family):
    lab.wait_reachable()
    addr, target = ((lab.scanner_ip6, lab.target_ip6) if family == 6
                    else (lab.scanner_ip4, lab.target_ip4))
    procs = []
    try:
        with SentryProcess(lab) as sw:
            sink = lab.popen(lab.target_ns, sys.executable, "-c", SINK,
                             stdout=subprocess.PIPE, text=True)
            procs.append(sink)
            assert sink.stdout.readline().strip() == "ready"
            peer = lab.popen(lab.scanner_ns, sys.executable, "-c", STREAM, target,
                             stdout=subprocess.PIPE, text=True)
            procs.append(peer)
            assert peer.stdout.readline().strip() == "up"
            # Some hundreds of segments: the verdict is cached after the first and renewed
            # each second. None of them is a probe.
            time.sleep(2.5)
            assert peer.poll() is None, "the connection broke"
            assert not sw.events(), sw.events()
            ack_before = sw.status()["packets"]["ACK/Window"]
            # IPv4: nmap's raw packets carry a TTL of its own; with another hop count than
            # the connection's, the hop-count filter would rightly call the probes forged
            # (issue 13: not blocked). The same TTL as the stack's makes them the peer's.
            nmap(lab, "-sA", "-p", "1-40", *(() if family == 6 else ("--ttl", "64")),
                 v6=family == 6)
            ev = sw.wait_block_event(timeout=10)
            assert ev["addr"] == addr and ev["scan_type"] == "ACK/Window", ev
            wait_for(lambda: block_key(addr) in sw.nft_blocked(), timeout=5, what="nft element")
            # The probes were counted one by one; the stream's segments were not.
            assert sw.status()["packets"]["ACK/Window"] - ack_before <= 60
    finally:
        for p in procs:
            p.kill()
            p.wait()


# The program itself, run on crafted frames (BPF_PROG_TEST_RUN) in the target's namespace:
# which exit each packet took shows in the raw counters (the cache's exits count their own).
EXITS = r"""
import json, struct, sys
sys.path.insert(0, sys.argv[1])
from progrun import ether, loaded_sentry, run
from resilience import ipv4, ipv6, tcp
from scanwatch.sentry.kernel import contract as K
from scanwatch.sentry.ignore import to_key

here, blocked, caught, fresh = sys.argv[2:6]
s = loaded_sentry(sweep_ports=20)
names = {"full": K.CNT_PACKETS, "cache_drop": K.CNT_FAST_DROPPED,
         "cache_pass": K.CNT_FAST_KIND + K.KIND_SYN, "tripwire": K.CNT_TRIPWIRE,
         "fin": K.KIND_FIN, "cache_fin": K.CNT_FAST_KIND + K.KIND_FIN}
trace = []

def step(what, src, port, flags="S"):
    before = s.maps["counters"].percpu_sums(K.NCOUNTERS)
    l4 = tcp(src, here, port, flags)
    frame = ether(ipv6(src, here, 6, l4) if ":" in here else ipv4(src, here, l4))
    action = run(s.prog_fd, frame)[0]
    after = s.maps["counters"].percpu_sums(K.NCOUNTERS)
    trace.append([what, {1: "drop", 2: "pass"}.get(action, action),
                  sorted(n for n, i in names.items() if after[i] != before[i])])

s.block(blocked)
step("blocked, first packet", blocked, 3000)
step("blocked, again", blocked, 3000)
s.maps["blocked"].delete(to_key(blocked))  # behind the daemon's back: no forget_verdicts
step("block gone, cache not emptied", blocked, 3000)
s.forget_verdicts()
step("cache emptied", blocked, 3000)
for port in range(2000, 2020):  # SWEEP_PORTS distinct ports: caught at the last
    step("sweep", caught, port)
step("caught, first probe after", caught, 3001)
step("caught, next probe", caught, 3002)
step("caught, FIN probe", caught, 3003, "F")
step("caught, FIN again", caught, 3004, "F")
step("caught, SYN again", caught, 3005)
step("new source, tripwire", fresh, 1)
s.maps["full_path"].delete(struct.pack("<I", 0))
step("no full path", fresh, 1)
print(json.dumps(trace))
"""


@pytest.mark.parametrize("family", [4, 6])
def test_each_exit_of_the_cache_and_userspace_emptying_it(lab, family):
    """The attached program ends a cached drop or a caught source's probe itself, and
    tail-calls the full path for the rest. Its hits compare no generation, so only
    userspace emptying the cache (every change, every second) ends a cached verdict: a
    block removed behind the daemon's back still drops until then."""
    if family == 4:
        here, srcs = lab.target_ip4, ["198.18.250.1", "198.18.250.2", "198.18.250.3"]
    else:
        here, srcs = lab.target_ip6, ["fd53:fa::1", "fd53:fa::2", "fd53:fa::3"]
    system_dir = pathlib.Path(__file__).resolve().parent.parent
    res = lab.run(lab.target_ns, sys.executable, "-c", EXITS, system_dir, here, *srcs)
    assert res.returncode == 0, res.stderr[-2000:]
    trace = json.loads(res.stdout.strip().splitlines()[-1])
    sweep = [t for t in trace if t[0] == "sweep"]
    rest = [t for t in trace if t[0] != "sweep"]
    assert all(t[1] == "pass" and t[2] == ["full"] for t in sweep), sweep
    assert rest == [
        ["blocked, first packet", "drop", ["full"]],
        ["blocked, again", "drop", ["cache_drop"]],
        ["block gone, cache not emptied", "drop", ["cache_drop"]],
        ["cache emptied", "pass", ["full"]],
        ["caught, first probe after", "pass", ["full"]],
        ["caught, next probe", "pass", ["cache_pass"]],
        # The slot passes probes like the one that filled it (protocol and flags): another
        # kind is counted by the full path, and does not take the slot over.
        ["caught, FIN probe", "pass", ["fin", "full"]],
        ["caught, FIN again", "pass", ["fin", "full"]],
        ["caught, SYN again", "pass", ["cache_pass"]],
        ["new source, tripwire", "pass", ["full", "tripwire"]],
        ["no full path", "pass", []],
    ], rest
