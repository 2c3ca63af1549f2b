"""Restarts and crashes: blocks survive a restart with their remaining time, a kill -9
loses nothing reported, a large block table is restored fast (issue 6)."""
import ipaddress
import json
import random
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from sentryproc import connect, nmap, wait_for
from resilience import (RESTORED_RE, Sentry, block_rows, daemon_bpf, daemon_map, figure,
                        history_rows, ipv4, kernel_blocked, nft_all, nft_elems, prog_exists,
                        scan_both, send_l3, tcp, v6_block, v6_deny, write_snapshot,
                        xdp_attached)


# --- 1. restart --------------------------------------------------------------------------------
def test_restart_keeps_blocks_with_their_remaining_time(lab, web, workdir):
    lab.wait_reachable()
    v4, v6 = lab.scanner_ip4, v6_block(lab.scanner_ip6)  # IPv6: blocked per /64 (issue 14)
    sw = Sentry(lab, workdir)
    try:
        scan_both(lab, sw)
        before = nft_all(lab)
        assert set(before) == {v4, v6}, before
        left_before = {b["addr"]: b["left"] for b in sw.status()["blocked"]}
        deny, history = sw.read("hosts_deny"), sw.read("history")
        assert deny.count(f"ALL: {v4}\n") == 1 and deny.count(v6_deny(lab)) == 1, deny
        assert sw.stop() == 0
    finally:
        sw.stop()
    assert xdp_attached(lab) == []
    # The blocks must come back from the state dir, not from a table left in place.
    assert lab.run(lab.target_ns, "nft", "delete", "table", "inet", "scanwatch").returncode == 0
    assert nft_all(lab) == {} and connect(lab, lab.target_ip4, web), "nothing blocks while it is down"
    down = time.monotonic()
    sw2 = Sentry(lab, workdir)
    try:
        elapsed = time.monotonic() - down
        m = re.search(r"restored (\d+) blocks from \S+ in ([\d.]+)s", sw2.log())
        assert m and int(m.group(1)) == 2, sw2.log()
        after = nft_all(lab)
        assert set(after) == {v4, v6}, after
        for addr, (_timeout, expires) in after.items():
            # nft's `expires` is whole seconds, truncated; restore rounds up by one second
            assert before[addr][1] - elapsed - 2 <= expires <= before[addr][1], (addr, before, after)
        st = sw2.status()
        left_after = {b["addr"]: b["left"] for b in st["blocked"]}
        assert set(left_after) == {v4, v6}, st["blocked"]
        assert all(left_after[a] <= left_before[a] for a in left_after), (left_before, left_after)
        assert all(b["scan_type"] == "SYN/Normal" for b in st["blocked"])
        dropped = st["counters"]["dropped"]
        assert not connect(lab, lab.target_ip4, web) and not connect(lab, lab.target_ip6, web)
        assert sw2.status()["counters"]["dropped"] > dropped, "XDP did not drop the restored block"
        # Nothing is reported twice: the restored blocks are not new blocks.
        assert sw2.read("hosts_deny") == deny and sw2.read("history") == history
        figure("restart: restore time (daemon log)", f"{m.group(2)} s for 2 blocks; "
               f"remaining nft time {before[v4][1]} s before stop -> {after[v4][1]} s after "
               f"({elapsed:.1f} s down+start)")
    finally:
        sw2.stop()


# --- 2. kill -9 ----------------------------------------------------------------------------------
FLOOD_CONF = 'BLOCK_RATE="100000"\nHOSTS_DENY_MAX="100000"\n'


def spoofed_sources(n, base="100.64.0.0"):
    first = int(ipaddress.IPv4Address(base)) + 1
    return [str(ipaddress.IPv4Address(first + i + i // 250 * 6)) for i in range(n)]


def test_kill_9_loses_no_reported_block_and_the_new_daemon_takes_xdp_over(lab, workdir):
    lab.wait_reachable()
    seed = random.randrange(1 << 30)
    delay = random.Random(seed).uniform(0.0, 1.0)
    sources = spoofed_sources(300)
    sw = Sentry(lab, workdir, conf=FLOOD_CONF)
    old_prog = daemon_bpf(sw.pid)["prog"]
    assert len(old_prog) == 1 and xdp_attached(lab) == old_prog
    journal_path = sw.paths["state"] / "blocks.journal"
    # 300 sources each hit tripwire TCP port 1: 300 blocks, reported one by one. The kill
    # comes at a random moment once the first block is applied.
    send_l3(lab, [ipv4(a, lab.target_ip4, tcp(a, lab.target_ip4, 1)) for a in sources])
    wait_for(lambda: journal_path.stat().st_size > 0, 5, step=0.005, what="first block")
    time.sleep(delay)
    sw.kill9()
    log1 = sw.log()
    assert xdp_attached(lab) == old_prog, "the dead daemon's program stays attached until taken over"
    alerted = re.findall(r"attackalert: TCP SYN/Normal scan from host: \S+/(\S+) to TCP port: 1$",
                         log1, re.M)
    rows, bad = history_rows(sw.read("history"))
    assert bad == [], f"torn or malformed history lines: {bad}"
    history = [r[2] for r in rows]
    assert len(set(history)) == len(history), "an address was recorded twice"
    # Every line reported is in the history, but for the one report in flight at the kill.
    assert set(history) <= set(alerted)
    assert len(set(alerted) - set(history)) <= 1, sorted(set(alerted) - set(history))
    journaled = set()
    for line in journal_path.read_text().splitlines():
        try:
            journaled.add(json.loads(line)["entry"]["addr"])
        except ValueError:  # torn by the kill: state.py skips it too
            pass
    assert journaled and set(history) <= journaled
    # A kill in the middle of a journal append leaves a torn last line: simulate one.
    with open(sw.paths["state"] / "blocks.journal", "a") as fh:
        fh.write('{"op": "add", "entry": {"addr": "100.64.9')
    sw2 = Sentry(lab, workdir)
    try:
        new_prog = daemon_bpf(sw2.pid)["prog"]
        assert len(new_prog) == 1 and new_prog != old_prog
        assert xdp_attached(lab) == new_prog
        net = json.loads(lab.run(lab.target_ns, "bpftool", "-j", "net", "show", "dev",
                                 lab.target_if).stdout)[0]["xdp"]
        assert [x["id"] for x in net] == new_prog, net
        wait_for(lambda: not prog_exists(old_prog[0]), 5, what="old program freed")
        m = re.search(r"restored (\d+) blocks from \S+ in ([\d.]+)s", sw2.log())
        assert m and int(m.group(1)) == len(journaled), (len(journaled), sw2.log())
        in_nft, in_xdp = set(nft_elems(lab, 4)), kernel_blocked(sw2.pid)
        assert journaled <= in_nft and journaled <= in_xdp
        assert {b["addr"] for b in sw2.status()["blocked"]} == journaled
        # The new program drops a restored source.
        dropped = sw2.status()["counters"]["dropped"]
        a = sorted(journaled)[0]
        send_l3(lab, [ipv4(a, lab.target_ip4, tcp(a, lab.target_ip4, 8080))])
        wait_for(lambda: sw2.status()["counters"]["dropped"] > dropped, 3, what="drop")
        figure("kill -9", f"killed {delay:.2f}s after the first of 300 blocks (seed {seed}): "
               f"{len(alerted)} alerted, {len(history)} in history, {len(journaled)} journaled, "
               f"{m.group(1)} restored in {m.group(2)} s; XDP prog {old_prog[0]} -> {new_prog[0]}")
    finally:
        sw2.stop()


def test_torn_last_record_does_not_swallow_the_next_one(lab, workdir):
    """A crash mid-append (power loss; kill -9 during a long write) leaves a line without
    its newline; the next record must still be a line of its own."""
    lab.wait_reachable()
    good = "1795748737 - 11/27/2026 03:05:37 Host: 192.0.2.1/192.0.2.1 Port: 1 TCP Blocked\n"
    torn = "1795748738 - 11/27/2026 03:05:38 Host: 192.0.2.2/192.0"
    (workdir / "history").write_text(good + torn)
    (workdir / "state").mkdir(mode=0o700)
    (workdir / "state" / "events.jsonl").write_text('{"type": "scan"}\n{"type": "sc')
    sw = Sentry(lab, workdir)
    try:
        nmap(lab, "-sS", "-p", "1-40")
        events_path = sw.paths["state"] / "events.jsonl"
        wait_for(lambda: lab.scanner_ip4 in sw.read("history"), 5, what="history record")
        wait_for(lambda: lab.scanner_ip4 in events_path.read_text(), 5, what="JSON event")
        text = sw.read("history")
        rows, bad = history_rows(text)
        print(f"history after the restart: {text!r}")
        assert text.endswith("\n") and text.startswith(good)
        assert [r[2] for r in rows] == ["192.0.2.1", lab.scanner_ip4], (rows, bad)
        events = events_path.read_text().splitlines()
        assert json.loads(events[-1])["addr"] == lab.scanner_ip4
    finally:
        sw.stop()


# --- 3. restoring many blocks ------------------------------------------------------------------


RESTORE_N = 20000


@pytest.fixture(scope="class")
def restored():
    """One daemon started on a snapshot of RESTORE_N blocks (+100 expired ones)."""
    from lab import Lab
    d = Path(tempfile.mkdtemp(prefix="swres-"))
    try:
        with Lab() as lab:
            rows = block_rows(RESTORE_N, expired=100)
            write_snapshot(d / "state", rows)
            t0 = time.monotonic()
            sw = Sentry(lab, d)
            try:
                wall = time.monotonic() - t0
                m = RESTORED_RE.search(sw.log())
                yield {"lab": lab, "sw": sw, "rows": rows, "wall": wall,
                       "count": int(m.group(1)) if m else None,
                       "seconds": float(m.group(2)) if m else None}
            finally:
                sw.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)


class TestRestoreManyBlocks:
    def test_every_live_block_is_back_in_nft_xdp_and_status(self, restored):
        lab, sw, rows = restored["lab"], restored["sw"], restored["rows"]
        live = {r["addr"]: r["expires"] for r in rows[:RESTORE_N]}
        assert restored["count"] == RESTORE_N, sw.log()
        # A big set's dump can skip elements while the kernel resizes its hash: read again.
        for _ in range(5):
            t, now = time.monotonic(), time.time()
            elems = nft_all(lab)
            list_s = time.monotonic() - t
            if set(elems) == set(live):
                break
        assert set(elems) == set(live), f"{len(elems)} elements, {len(set(live) - set(elems))} missing"
        late = [a for a, (_t, exp) in elems.items() if exp > live[a] - now + 1]
        assert not late, f"{len(late)} blocks restored longer than they had left, e.g. {late[:3]}"
        n_xdp, cap, _ = daemon_map(sw.pid, "blocked")
        assert kernel_blocked(sw.pid) == set(live)
        st = sw.status()
        assert len(st["blocked"]) == RESTORE_N
        figure(f"restore {RESTORE_N}", f"{restored['seconds']:.2f} s (daemon log), start to active "
               f"{restored['wall']:.1f} s; nft {len(elems)} elements (listed in {list_s:.1f} s), "
               f"XDP map {n_xdp}/{cap}, status {len(st['blocked'])} blocked")
