"""SSH peers are never blocked (an admin's session), but only once their connection has
outlived sshd's LoginGraceTime: an unauthenticated TCP connection to port 22, held while
scanning, used to make a scanner unblockable (nmap -sT hit it by chance when its connect
to an open 22 was established as the daemon read the TCP table)."""
import subprocess
import sys
import time

from sentryproc import SentryProcess, nmap

# stands for sshd before authentication: accepts and keeps the connection open
SSHD = ("import socket,time\n"
        "s=socket.create_server(('', 22), family=socket.AF_INET6, dualstack_ipv6=True)\n"
        "print('ready', flush=True)\nconns=[]\n"
        "while True:\n c,_=s.accept(); conns.append(c)\n")
HOLD = ("import socket,sys,time\n"
        "c=socket.create_connection((sys.argv[1], 22))\n"
        "print('connected', flush=True)\ntime.sleep(60)\n")


def test_a_held_tcp_connection_to_port_22_does_not_protect_a_scanner(lab):
    lab.wait_reachable()
    sshd = lab.popen(lab.target_ns, sys.executable, "-c", SSHD, stdout=subprocess.PIPE,
                     text=True)
    assert sshd.stdout.readline().strip() == "ready"
    hold = None
    try:
        with SentryProcess(lab) as sw:
            hold = lab.popen(lab.scanner_ns, sys.executable, "-c", HOLD, lab.target_ip4,
                             stdout=subprocess.PIPE, text=True)
            assert hold.stdout.readline().strip() == "connected"
            time.sleep(6)  # an SSH-peer refresh (every 5 s) has seen the connection
            nmap(lab, "-sS", "-p", "1-40")
            ev = sw.wait_block_event(timeout=10)
            assert ev["addr"] == lab.scanner_ip4, ev
            sw.wait_history(lab.scanner_ip4, timeout=10)
            assert lab.scanner_ip4 in sw.nft_set(4), sw.log()
    finally:
        for p in (hold, sshd):
            if p is not None:
                p.kill()
                p.wait()
