"""The fleet over TLS (issue 15): rediss:// to a redis-server that only speaks TLS,
verified against FLEET_CA_FILE; a server whose certificate another CA signed is refused in
one line."""
import shutil
import tempfile

import pytest

from fleetproc import Fleet, blocked_everywhere, conf, fresh_scanner, nmap_hosts, stream_count
from lab import FleetLab
from redisproc import Certs, RedisServer
from resilience import Sentry


@pytest.fixture(scope="module")
def flab():
    with FleetLab(hosts=2) as lab:
        lab.wait_reachable()
        certdir = tempfile.mkdtemp(prefix="swtls-")
        lab.certs = Certs(certdir, lab.service_ip4)
        lab.other_ca = Certs(certdir, lab.service_ip4, name="stranger")
        lab.redis = RedisServer(lab, port=6380, tls=lab.certs)
        try:
            yield lab
        finally:
            lab.redis.close()
            shutil.rmtree(certdir, ignore_errors=True)


def test_blocks_are_shared_over_tls(flab):
    scanner = fresh_scanner(flab)
    with Fleet(flab, FLEET_CA_FILE=str(flab.certs.ca)) as fl:
        assert "rediss://" in (fl.sws[0].dir / "scanwatch.conf").read_text()
        nmap_hosts(flab, "-sS", "-p", "1-200", hosts=flab.hosts[:1])
        fl.wait(lambda: blocked_everywhere(fl.sws, scanner), 15, "blocked on both over TLS")
        assert stream_count(flab.redis, scanner) == 1


def test_a_certificate_from_another_ca_is_refused_in_one_line(flab, tmp_path):
    text = conf(flab.redis, tmp_path, "web2", FLEET_CA_FILE=str(flab.other_ca.ca))
    sw = Sentry(flab.hosts[1], tmp_path, args=("-stcp",), conf=text)
    try:
        sw.wait_log("error: fleet: Redis unreachable", timeout=20)
        log = sw.log()
        assert "certificate verify failed" in log and "Traceback" not in log, log
        assert log.count("error: fleet:") == 1, log
        assert not sw.status()["fleet"]["connected"]
    finally:
        sw.stop()
