"""Kernel cost (issues 13, 14): the verdict cache (`fast`) in front of the XDP program's maps
decides nothing the full path would not.

A peer streaming over an established connection gets a "clean" verdict, after which its
ACKs to the listening port skip the socket lookup. The same peer ACK-scanning closed ports
must still be caught: only ACKs to a port with a listener (never probes) take the cache."""
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
