"""A spoofed flood: status answers, memory is bounded, blocks and logs are capped, a real
scanner is still reported (issue 6)."""
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from sentryproc import block_key, connect, listen, nmap, wait_for
from resilience import (ADMIN_DENY, STATUS_WITHIN_S, Sentry, daemon_map, figure, kernel_blocked,
                        nft_all)


# --- 7. spoofed flood --------------------------------------------------------------------------
FLOOD_S = 10
FLOOD_RATE, FLOOD_DENY_MAX = 120, 50  # BLOCK_RATE default; HOSTS_DENY_MAX below it, so it bites


def hping_flood(lab):
    return lab.popen(lab.scanner_ns, "hping3", "-n", "-q", "--rand-source", "--flood", "-S",
                     "-p", "1", lab.target_ip4, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                     text=True)


def stop_flood(proc):
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=10)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]


@pytest.fixture(scope="class")
def flooded():
    """`hping3 --rand-source --flood -S -p 1` (a tripwire) for FLOOD_S seconds against one
    daemon, measured while it runs, with a real IPv6 nmap scan in the middle of it; then a
    real IPv4 nmap scan; then SIGTERM under a second flood."""
    from lab import Lab
    d = Path(tempfile.mkdtemp(prefix="swres-"))
    r = {"sock_s": [], "cli_s": [], "cli_errors": []}

    def timed_status(sw, timeout):
        t = time.monotonic()
        try:
            reply = sw.request({"cmd": "status"}, timeout=timeout)
        except OSError:
            return float("inf"), None
        return time.monotonic() - t, reply

    try:
        with Lab() as lab:
            lab.wait_reachable()
            web_proc = listen(lab, 8080)
            # A --rand-source flood on one port is a lockstep cohort (decoys, XDP only by
            # default): decoy:full here makes it spend BLOCK_RATE, the caps under test. The
            # real scanner inside it is proven by the challenge (issue 13), not by persisting.
            sw = Sentry(lab, d, conf=f'BLOCK_RATE="{FLOOD_RATE}"\nHOSTS_DENY_MAX="{FLOOD_DENY_MAX}"\n'
                        'EVIDENCE_RESPONSE="proven:full,unverified:full,decoy:full,suspect:log"\n')
            try:
                r["rss_before_kb"] = int(re.search(r"VmRSS:\s+(\d+)", Path(
                    f"/proc/{sw.pid}/status").read_text()).group(1))
                r["status_idle_s"] = timed_status(sw, 5)[0]
                flood = hping_flood(lab)
                t0 = time.monotonic()

                def by_socket():  # raw control-socket requests, back to back
                    while time.monotonic() - t0 < FLOOD_S - 3:
                        r["sock_s"].append(timed_status(sw, 3 * STATUS_WITHIN_S)[0])
                        time.sleep(0.2)

                def by_cli():  # `scanwatch status`, which gives up after 5 s
                    while time.monotonic() - t0 < FLOOD_S - 5:
                        t = time.monotonic()
                        res = sw.cli("status", "--json", "--run-dir", str(sw.paths["run"]),
                                     check=False)
                        r["cli_s"].append(time.monotonic() - t if res.returncode == 0
                                          else float("inf"))
                        if res.returncode:
                            r["cli_errors"].append((res.stdout + res.stderr).strip())
                        time.sleep(0.2)
                probes = [threading.Thread(target=f, daemon=True) for f in (by_socket, by_cli)]
                try:
                    time.sleep(1)
                    for th in probes:
                        th.start()
                    # A real scan (IPv6, the scanner's own address) in the middle of the
                    # flood, while the event ring overflows and BLOCK_RATE is spent.
                    time.sleep(max(0.0, 3 - (time.monotonic() - t0)))
                    nmap(lab, "-sS", "-p", "1-40", v6=True)
                    r["mid_scan_at"] = time.monotonic() - t0
                    time.sleep(max(0.0, FLOOD_S - 0.5 - (time.monotonic() - t0)))
                    r["log_during"] = sw.log().splitlines()
                    time.sleep(max(0.0, FLOOD_S - (time.monotonic() - t0)))
                finally:
                    out = stop_flood(flood)
                for th in probes:
                    th.join(timeout=FLOOD_S)
                r["alive"] = sw.proc.poll() is None
                m = re.search(r"(\d+) packets transmitted", out)
                r["sent"] = int(m.group(1)) if m else None
                # The maps as the flood left them (a walk during the flood counts churn).
                for name in ("sources", "blocked"):
                    r[name + "_map"] = daemon_map(sw.pid, name)[:2]
                # Reports held for their challenge's answer (issue 13) are decided within
                # 1.5 s; then the last summaries (written once a second).
                wait_for(lambda: not sw.request({"cmd": "status"}, timeout=10)["spoof"]["pending"],
                         15, what="no report waiting for its challenge")
                # The daemon may still be draining the flood's events: wait until the last
                # summary covers every capped block (not a fixed sleep, which a loaded
                # machine outlasted: status 6647 against summaries 6536).
                def summarised():
                    total = sw.request({"cmd": "status"}, timeout=10)["capped_total"]
                    said = sum(map(int, re.findall(r"cap \(BLOCK_RATE=\d+/min\) reached: "
                                                   r"(\d+) more", sw.log())))
                    return total and total == said
                wait_for(summarised, 20, step=0.5,
                         what="a block-rate summary for every capped block")
                # The first answer may wait for requests the flood left queued; the second
                # one is what any status now costs.
                r["status_after_s"] = [timed_status(sw, 10)[0]]
                took, st = timed_status(sw, 10)
                r["status_after_s"].append(took)
                r["counters"] = st["counters"]
                r["capped_total"] = st["capped_total"]
                r["mid_scanner_listed"] = block_key(lab.scanner_ip6) in {
                    b["addr"] for b in st["blocked"]}  # its /64 (issue 14)
                r["hwm_kb"] = sw.vmhwm_kb()
                r["log"] = sw.log().splitlines()
                r["mid_scanner_logged"] = f"from host: {lab.scanner_ip6}/" in sw.log()
                r["deny"] = [l for l in sw.read("hosts_deny").splitlines() if l.startswith("ALL: ")]
                r["deny_text"] = sw.read("hosts_deny")
                r["nft_addrs"] = set(nft_all(lab))
                r["nft"] = len(r["nft_addrs"])
                r["scanner_ip6"] = lab.scanner_ip6
                # A real scan from the scanner's own address right after the flood.
                r["web_before"] = connect(lab, lab.target_ip4, 8080)
                nmap(lab, "-sS", "-p", "1-40")
                r["web_after"] = connect(lab, lab.target_ip4, 8080, timeout=1.0)
                r["scanner_in_xdp"] = lab.scanner_ip4 in kernel_blocked(sw.pid)
                time.sleep(1.2)
                st = timed_status(sw, 10)[1]
                r["scanner_listed"] = lab.scanner_ip4 in {b["addr"] for b in st["blocked"]}
                r["scanner_logged"] = f"from host: {lab.scanner_ip4}/" in sw.log()
                # SIGTERM while a flood runs.
                flood = hping_flood(lab)
                try:
                    time.sleep(1.5)
                    t = time.monotonic()
                    sw.proc.send_signal(signal.SIGTERM)
                    try:
                        sw.proc.wait(timeout=2.5)
                        r["sigterm_s"] = time.monotonic() - t
                    except subprocess.TimeoutExpired:
                        r["sigterm_s"] = float("inf")
                finally:
                    stop_flood(flood)
            finally:
                sw.stop()
                web_proc.kill()
                web_proc.wait()
            yield r
    finally:
        shutil.rmtree(d, ignore_errors=True)


class TestSpoofedFlood:
    def test_figures(self, flooded):
        r, c = flooded, flooded["counters"]
        med = sorted(r["cli_s"])[len(r["cli_s"]) // 2]
        figure("flood", f"hping3 {FLOOD_S} s: {r['sent']} packets sent, XDP saw {c['packets']}, "
               f"dropped {c['dropped']}, kernel blocks {c['kernel_blocks']}, events lost "
               f"{c['events_lost']}")
        figure("flood: status answers", f"idle {r['status_idle_s']:.3f} s; during the flood: socket "
               f"{[round(x, 2) for x in r['sock_s']]} s, CLI {[round(x, 2) for x in r['cli_s']]} s "
               f"(median {med:.2f} s; inf = no answer; goal {STATUS_WITHIN_S} s) "
               f"{r['cli_errors'][:1]}; after it (source map full) "
               f"{[round(x, 2) for x in r['status_after_s']]} s")
        figure("flood: memory and maps", f"VmRSS before {r['rss_before_kb'] / 1024:.1f} MB, "
               f"VmHWM after {r['hwm_kb'] / 1024:.1f} MB; sources {r['sources_map'][0]}/"
               f"{r['sources_map'][1]}, blocked {r['blocked_map'][0]}/{r['blocked_map'][1]}")
        capped = [l for l in r["log"] if "block rate cap" in l]
        figure("flood: caps", f"nft {r['nft']} elements (BLOCK_RATE {FLOOD_RATE}/min), hosts.deny "
               f"{len(r['deny'])} lines (HOSTS_DENY_MAX {FLOOD_DENY_MAX}), log {len(r['log'])} "
               f"lines ({len(r['log_during'])} during the flood), {len(capped)} cap summaries")
        figure("flood: real scan during it", f"IPv6 nmap at {r['mid_scan_at']:.1f} s: listed in "
               f"status {r['mid_scanner_listed']}, logged {r['mid_scanner_logged']}")
        figure("flood: then", f"real nmap scan: XDP-blocked {r['scanner_in_xdp']}, listed in status "
               f"{r['scanner_listed']}, logged {r['scanner_logged']}; SIGTERM under a flood: "
               f"exit after {r['sigterm_s']:.2f} s")
        assert r["alive"] and c["kernel_blocks"] > 10 * FLOOD_RATE, "the flood did not reach the caps"

    def test_memory_and_maps_stay_bounded(self, flooded):
        r = flooded
        assert r["hwm_kb"] < 80 * 1024  # 57 MB measured; 126 MB when status copied whole maps
        assert r["sources_map"][0] <= r["sources_map"][1]
        assert r["blocked_map"][0] <= r["blocked_map"][1]
        assert r["sources_map"][0] > r["sources_map"][1] // 2, "the flood did not fill the map"

    def test_blocks_hosts_deny_and_log_are_capped(self, flooded):
        r = flooded
        alerts = [l for l in r["log"] if "attackalert: TCP SYN/Normal scan" in l
                  and r["scanner_ip6"] not in l]
        # BLOCK_RATE spoofed sources in full; the real scanner of the middle of the flood
        # on top, from the second budget (proven sources).
        mid = block_key(r["scanner_ip6"])  # blocked as its /64 (issue 14)
        spoofed = r["nft_addrs"] - {mid}
        assert len(spoofed) == FLOOD_RATE and len(alerts) == FLOOD_RATE
        assert mid in r["nft_addrs"]
        assert len(r["deny"]) == FLOOD_DENY_MAX and r["deny_text"].startswith(ADMIN_DENY)
        assert any(f"HOSTS_DENY_MAX={FLOOD_DENY_MAX}" in l for l in r["log"])
        capped = [int(re.search(r"reached: (\d+) more", l).group(1))
                  for l in r["log"] if "block rate cap (BLOCK_RATE=120/min) reached" in l]
        assert capped and sum(capped) > 1000
        assert sum(capped) == r["capped_total"], "status and the summaries disagree"
        assert len(r["log"]) < 8 * FLOOD_RATE + 100, "one log line per packet?"

    def test_a_real_scan_right_after_the_flood_is_still_blocked(self, flooded):
        r = flooded
        assert r["web_before"], "the scanner could not connect before its scan"
        assert r["scanner_in_xdp"] and not r["web_after"]

    def test_a_real_scan_during_the_flood_is_reported(self, flooded):
        """The flood overflows the event ring and spends BLOCK_RATE; the scanner keeps
        probing after the kernel blocked it, which the kernel reports on its own ring."""
        assert flooded["mid_scan_at"] < FLOOD_S - 1, "the scan did not run during the flood"
        assert flooded["mid_scanner_listed"] and flooded["mid_scanner_logged"]

    def test_a_real_scan_right_after_the_flood_is_reported(self, flooded):
        assert flooded["scanner_listed"] and flooded["scanner_logged"]

    def test_status_answers_within_a_second_during_the_flood(self, flooded):
        assert max(flooded["sock_s"]) < STATUS_WITHIN_S
        assert max(flooded["cli_s"]) < STATUS_WITHIN_S

    def test_status_answers_within_a_second_after_the_flood(self, flooded):
        assert flooded["status_idle_s"] < STATUS_WITHIN_S  # before the flood it does
        assert min(flooded["status_after_s"]) < STATUS_WITHIN_S

    def test_periodic_work_and_sigterm_keep_working_during_the_flood(self, flooded):
        during = [l for l in flooded["log_during"] if "block rate cap" in l]
        assert len(during) >= FLOOD_S - 3, f"{len(during)} cap summaries during {FLOOD_S} s"
        assert flooded["sigterm_s"] < 2.0
