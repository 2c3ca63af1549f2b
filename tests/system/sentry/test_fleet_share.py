"""The fleet (issue 15) on real daemons: five sentry namespaces on a bridge, Redis started
by the test in a service namespace, real nmap from a scanner namespace."""
import re
import sys
import time

import pytest

from fleetproc import Fleet, all_logs, blocked_everywhere, fresh_scanner, nmap_hosts, stream_count
from lab import FleetLab
from redisproc import RedisServer

N = 5


@pytest.fixture(scope="module")
def flab():
    with FleetLab(hosts=N) as lab:
        lab.wait_reachable()
        lab.redis = RedisServer(lab)
        try:
            yield lab
        finally:
            lab.redis.close()


def test_a_scanner_caught_by_one_host_is_blocked_on_all(flab):
    scanner = fresh_scanner(flab)
    with Fleet(flab, METRICS_LISTEN="127.0.0.1:9877") as fl:
        first, rest = fl.sws[0], fl.sws[1:]
        nmap_hosts(flab, "-sS", "-p", "1-200", hosts=flab.hosts[:1])
        first.wait_history(scanner, timeout=10)
        t0 = time.monotonic()
        fl.wait(lambda: blocked_everywhere(rest, scanner), 10, "blocked on hosts 2..5")
        took = time.monotonic() - t0
        for sw in rest:
            log = all_logs(sw)
            assert re.search(rf"attackalert: Host {re.escape(scanner)} has been blocked via "
                             rf"fleet \(reported by web1\)", log), log
            assert log.count(f"Host {scanner} has been blocked via fleet") == 1, log
            row = [b for b in sw.status()["blocked"] if b["addr"] == scanner]
            assert row and row[0]["reason"] == "fleet" and 3000 < row[0]["left"] <= 3600, row
            st = sw.status()["fleet"]
            assert st["connected"] and st["received"] >= 1 and st["queued"] == 0, st
        assert first.status()["fleet"]["sent"] >= 1
        assert stream_count(flab.redis, scanner) == 1
        # the goal is 100 ms p99 (bench/fleet.py measures it); here only a generous bound
        assert took < 10
        # /metrics carries the fleet's series (the dashboard's fleet panels draw them)
        code = ("import urllib.request;print(urllib.request.urlopen("
                "'http://127.0.0.1:9877/metrics', timeout=5).read().decode())")
        text = rest[0].lab.run(rest[0].lab.target_ns, sys.executable, "-c", code,
                               timeout=20).stdout
        assert re.search(r"^scanwatch_fleet_connected 1\.0$", text, re.M), text
        assert re.search(r'^scanwatch_fleet_entries_total\{what="applied"\} [1-9]', text, re.M)
        assert re.search(r"^scanwatch_fleet_lag_seconds \d", text, re.M), text
        # status --fleet lists every member from the members hash
        out = first.cli("status", "--fleet", "--run-dir", first.paths["run"]).stdout
        for n in range(1, N + 1):
            assert re.search(rf"^  web{n}\s+\d+s ago", out, re.M), out


def test_a_scan_spread_thin_is_blocked_fleet_wide_and_not_without_the_fleet(flab):
    ports = ("-sS", "-p", "22,80,443,3306,5432")
    scanner = fresh_scanner(flab)
    with Fleet(flab, fleet=False) as fl:
        nmap_hosts(flab, *ports)
        time.sleep(2)
        for sw in fl.sws:
            assert scanner not in sw.nft_set(4), sw.log()
            assert not sw.status()["blocked"], sw.status()["blocked"]
    scanner = fresh_scanner(flab)
    with Fleet(flab) as fl:
        nmap_hosts(flab, *ports)
        fl.wait(lambda: blocked_everywhere(fl.sws, scanner), 15, "blocked fleet-wide")
        logs = "".join(sw.log() for sw in fl.sws)
        assert "horizontal scan" in logs, logs
        for sw in fl.sws:  # no host saw enough by itself: no local scan report
            assert f"attackalert: TCP SYN/Normal scan from host: {scanner}" not in sw.log()


def test_unblock_fleet_lifts_everywhere(flab):
    scanner = fresh_scanner(flab)
    with Fleet(flab, hosts=flab.hosts[:3]) as fl:
        nmap_hosts(flab, "-sS", "-p", "1-200", hosts=flab.hosts[:1])
        fl.wait(lambda: blocked_everywhere(fl.sws, scanner), 15, "blocked on the three")
        res = fl.sws[1].cli("unblock", scanner, "--fleet", "--run-dir", fl.sws[1].paths["run"])
        assert "the fleet lifts it" in res.stdout
        fl.wait(lambda: all(scanner not in sw.nft_set(4) for sw in fl.sws), 10,
                "lifted everywhere")
