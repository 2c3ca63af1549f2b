"""The fleet when Redis goes away (issue 15): local blocks do not wait for it,
publications queue on disk (across a daemon restart), the queue drains when Redis is back,
a member that was stopped catches up from its saved stream position, and nothing is
applied or published twice."""
import os
import re
import signal
import time

import pytest

from fleetproc import Fleet, all_logs, blocked_everywhere, blocked_in, fresh_scanner, \
    nmap_hosts, stream_count
from lab import FleetLab
from redisproc import RedisServer


@pytest.fixture(scope="module")
def flab():
    with FleetLab(hosts=3) as lab:
        lab.wait_reachable()
        lab.redis = RedisServer(lab)
        try:
            yield lab
        finally:
            lab.redis.close()


def test_redis_killed_then_back_nothing_lost_nothing_twice(flab):
    scanner = fresh_scanner(flab)
    with Fleet(flab) as fl:
        web1, web2, web3 = fl.sws
        web3.stop()                     # away for the whole outage
        flab.redis.kill()               # SIGKILL: no goodbye to the clients
        fl.wait(lambda: not web1.status()["fleet"]["connected"], 15, "web1 sees the outage")

        # detection and the local block do not wait for Redis
        nmap_hosts(flab, "-sS", "-p", "1-200", hosts=flab.hosts[:1])
        web1.wait_history(scanner, timeout=10)
        assert blocked_in(web1, scanner)
        st = web1.status()["fleet"]
        assert not st["connected"] and st["queued"] >= 1 and "unreachable" in st["error"], st
        out = web1.cli("status", "--run-dir", web1.paths["run"]).stdout
        assert re.search(r"fleet:.*(down|unreachable)", out) and "queued" in out, out
        assert not blocked_in(web2, scanner)

        # the queue is on disk: it survives a restart of the daemon during the outage
        queue = web1.paths["state"] / "fleet.queue"
        fl.wait(lambda: queue.exists() and scanner in queue.read_text(), 5, "queued on disk")
        assert queue.read_text().count(scanner) == 1
        assert web1.stop() == 0
        web1 = fl.sws[0] = web1.restart(wait_connected=False)
        fl.wait(lambda: web1.status()["fleet"]["queued"] >= 1, 10, "queue reloaded")
        assert blocked_in(web1, scanner)  # the local block came back from the state dir

        flab.redis.start()              # the same data directory: the stream is kept
        fl.wait(lambda: blocked_in(web2, scanner), 20, "queued block reaches web2")
        fl.wait(lambda: web1.status()["fleet"]["queued"] == 0, 10, "queue drained")
        assert queue.read_text() == ""

        web3 = fl.sws[2] = web3.restart()  # catches up from its saved position
        fl.wait(lambda: blocked_in(web3, scanner), 20, "web3 catches up")

        # nothing twice: one stream entry, one fleet line on each receiver
        assert stream_count(flab.redis, scanner) == 1
        for sw in (web2, web3):
            log = all_logs(sw)
            assert log.count(f"Host {scanner} has been blocked via fleet (reported by web1)") \
                == 1, log
        # a further restart of a receiver replays nothing
        assert web2.stop() == 0
        web2 = fl.sws[1] = web2.restart()
        time.sleep(2)  # room for a replay, were there one
        assert all_logs(web2).count(f"Host {scanner} has been blocked via fleet") == 1
        assert blocked_everywhere(fl.sws, scanner)
        for sw in fl.sws:
            log = all_logs(sw)
            assert "Traceback" not in log, log
        # one line per outage, not one per retry
        assert all_logs(fl.sws[1]).count("error: fleet: Redis unreachable") <= 2, all_logs(fl.sws[1])


def test_redis_frozen_does_not_hold_up_the_local_block(flab):
    """SIGSTOP: Redis accepts connections (the kernel does) but answers nothing, the worst
    kind of slow. The local block and status do not wait; on SIGCONT the block travels and
    is applied once (a publication that timed out may be sent twice: receivers know its id)."""
    scanner = fresh_scanner(flab)
    with Fleet(flab, hosts=flab.hosts[:2]) as fl:
        web1, web2 = fl.sws
        os.kill(flab.redis.proc.pid, signal.SIGSTOP)
        try:
            nmap_hosts(flab, "-sS", "-p", "1-200", hosts=flab.hosts[:1])
            web1.wait_history(scanner, timeout=10)
            assert blocked_in(web1, scanner)
            t0 = time.monotonic()
            st = web1.status()
            assert time.monotonic() - t0 < 5 and st["fleet"]["queued"] + st["fleet"]["sent"] >= 1
            assert not blocked_in(web2, scanner)
        finally:
            os.kill(flab.redis.proc.pid, signal.SIGCONT)
        fl.wait(lambda: blocked_in(web2, scanner), 30, "the block travels after SIGCONT")
        fl.wait(lambda: web1.status()["fleet"]["queued"] == 0, 15, "queue drained")
        assert stream_count(flab.redis, scanner) >= 1
        log = all_logs(web2)
        assert log.count(f"Host {scanner} has been blocked via fleet (reported by web1)") == 1, log
        assert "Traceback" not in all_logs(web1) + log


def test_a_horizontal_scan_during_an_outage_is_caught_when_redis_is_back(flab):
    """Sightings are kept (merged per source, bounded) while Redis is away, and gathered
    on: a scan spread thin over the fleet during a short outage is blocked fleet-wide once
    Redis is back, although every reconnection attempt meanwhile failed."""
    scanner = fresh_scanner(flab)
    with Fleet(flab) as fl:
        flab.redis.kill()
        fl.wait(lambda: not any(sw.status()["fleet"]["connected"] for sw in fl.sws), 15,
                "every member sees the outage")
        nmap_hosts(flab, "-sS", "-p", "22,80,443,3306,5432")  # 3 hosts x 5 ports: 15 pairs
        fl.wait(lambda: all(sw.status()["fleet"]["sightings_queued"] >= 1 for sw in fl.sws),
                10, "sightings kept")
        out = fl.sws[0].cli("status", "--run-dir", fl.sws[0].paths["run"]).stdout
        assert "sightings of 1 sources" in out, out
        time.sleep(6)  # reconnection attempts fail meanwhile (the backoff reaches 5 s)
        assert not any(scanner in sw.nft_set(4) for sw in fl.sws)
        flab.redis.start()
        fl.wait(lambda: blocked_everywhere(fl.sws, scanner), 30,
                "blocked fleet-wide once Redis is back")
        assert stream_count(flab.redis, scanner, kind="sweep") == 1
        fl.wait(lambda: all(sw.status()["fleet"]["sightings_queued"] == 0 for sw in fl.sws),
                10, "nothing left queued")
        assert "Traceback" not in "".join(all_logs(sw) for sw in fl.sws)
