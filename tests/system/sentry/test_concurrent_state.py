"""Issue 14: per-source state stays right when several CPUs handle one scanner at once.

A second veth pair with two queues joins the lab's namespaces; two sender processes in the
scanner namespace, pinned to different CPUs, write with PACKET_QDISC_BYPASS (queue = CPU),
so the XDP program runs for one source on both CPUs at the same time, as RSS does."""
import ipaddress
import os
import sys

import pytest

from scanwatch.sentry.ignore import to_key
from resilience import Sentry, daemon_bpf, ipv4, tcp
from sentryproc import wait_for

pytestmark = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two CPUs")

# Two children pinned to CPUs 0 and 1 send the same frame list; every `sync` frames they
# meet at a barrier, so both CPUs work on the same sources at the same moment.
BLAST = r"""
import multiprocessing as mp, os, socket, sys
ifname, sync, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
frames = bytes.fromhex(sys.stdin.read().strip())
frames = [frames[i:i + size] for i in range(0, len(frames), size)]
bar = mp.Barrier(2)
def run(cpu):
    os.sched_setaffinity(0, {cpu})
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.setsockopt(263, 20, 1)  # SOL_PACKET, PACKET_QDISC_BYPASS: tx queue = CPU
    s.bind((ifname, 0))
    for i, f in enumerate(frames):
        if i % sync == 0:
            bar.wait()
        s.send(f)
ps = [mp.Process(target=run, args=(c,)) for c in (0, 1)]
[p.start() for p in ps]
[p.join() for p in ps]
print(sum(p.exitcode == 0 for p in ps))
"""


@pytest.fixture
def mq_link(lab):
    """(target ifname, its MAC, scanner ifname): a two-queue veth pair between the lab's
    namespaces, deleted afterwards."""
    t, s = f"swmq{os.getpid() % 10000}t", f"swmq{os.getpid() % 10000}s"
    lab.run(lab.target_ns, "ip", "link", "add", t, "numtxqueues", "2", "numrxqueues", "2",
            "type", "veth", "peer", "name", s, "numtxqueues", "2", "numrxqueues", "2")
    lab.run(lab.target_ns, "ip", "link", "set", s, "netns", lab.scanner_ns)
    lab.run(lab.target_ns, "ip", "addr", "add", "192.0.2.201/24", "dev", t)
    lab.run(lab.target_ns, "ip", "link", "set", t, "up")
    lab.run(lab.scanner_ns, "ip", "link", "set", s, "up")
    mac = lab.run(lab.target_ns, "cat", f"/sys/class/net/{t}/address").stdout.strip()
    try:
        yield t, bytes.fromhex(mac.replace(":", "")), s
    finally:
        lab.run(lab.target_ns, "ip", "link", "del", t)


def blast(lab, ifname, frames, sync):
    size = len(frames[0])
    assert all(len(f) == size for f in frames)
    res = lab.run(lab.scanner_ns, sys.executable, "-c", BLAST, ifname, str(sync), str(size),
                  input=b"".join(frames).hex(), timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "2", res.stderr


def eth(mac, l3):
    return mac + b"\x02\0\0\0\0\x01" + b"\x08\x00" + l3


def source_value(pid, addr):
    """The raw `sources` value of one address in the daemon's map, or None."""
    from scanwatch.sentry.kernel import contract as K
    from scanwatch.sentry.kernel.bpfsys import Map, MapInfo, _bpf, obj_info
    from resilience import BPF_MAP_GET_FD_BY_ID, _GetFd
    for map_id in daemon_bpf(pid)["map"]:
        fd = _bpf(BPF_MAP_GET_FD_BY_ID, _GetFd(map_id, 0, 0))
        try:
            if obj_info(fd, MapInfo()).name.decode() == "sources":
                raw = Map(fd).lookup(to_key(addr))
                return None if raw is None else K.Source.from_buffer_copy(raw)
        finally:
            os.close(fd)
    raise AssertionError("no sources map")


def test_counts_from_two_cpus_add_up(lab, workdir, mq_link):
    """40,000 tripwire probes of one source, half from each CPU at once: its kernel entry
    counts all of them (before: increments raced and were lost)."""
    tif, mac, sif = mq_link
    sw = Sentry(lab, workdir, conf=f'INTERFACES="{tif}"\nSCAN_TRIGGER="1000000000"\n'
                                   'SWEEP_PORTS="0"\nSLOW_PORTS="0"\n')
    src, dst, n = "198.51.100.77", "192.0.2.201", 20000
    frames = [eth(mac, ipv4(src, dst, tcp(src, dst, 1, sport=1024 + i % 60000)))
              for i in range(n)]
    try:
        c0 = sw.status()["counters"]
        blast(lab, sif, frames, sync=500)
        wait_for(lambda: sw.status()["counters"]["tripwire"] >= c0["tripwire"] + 2 * n, 20,
                 what="every probe counted in the per-CPU counters")
        s = source_value(sw.pid, src)
        assert s is not None
        assert (s.tripwire[0], s.hits[0]) == (2 * n, 2 * n), "lost per-source increments"
    finally:
        sw.stop()


def test_one_trigger_per_source_when_two_cpus_cross_it_together(lab, workdir, mq_link):
    """1,000 sources each send their first probes from both CPUs at the same moment: each
    is blocked by the kernel once, with one TRIGGER (before: both CPUs could see the
    threshold crossed, each blocking and reporting)."""
    tif, mac, sif = mq_link
    sw = Sentry(lab, workdir, conf=f'INTERFACES="{tif}"\nSWEEP_PORTS="0"\nSLOW_PORTS="0"\n'
                                   'BLOCK_RATE="100000"\n')
    dst, m, burst = "192.0.2.201", 1000, 4
    srcs = [str(ipaddress.IPv4Address("198.18.0.1") + i) for i in range(m)]
    frames = [eth(mac, ipv4(a, dst, tcp(a, dst, 1, sport=2000 + k)))
              for a in srcs for k in range(burst)]
    try:
        c0 = sw.status()["counters"]
        blast(lab, sif, frames, sync=burst)
        wait_for(lambda: sw.status()["counters"]["packets"] >= c0["packets"] + 2 * len(frames),
                 20, what="every frame seen")
        c1 = sw.status()["counters"]
        lost = c1["events_lost"] - c0["events_lost"]
        assert c1["kernel_blocks"] - c0["kernel_blocks"] == m, \
            f"{c1['kernel_blocks'] - c0['kernel_blocks']} kernel blocks for {m} sources " \
            f"({lost} events lost)"
    finally:
        sw.stop()
