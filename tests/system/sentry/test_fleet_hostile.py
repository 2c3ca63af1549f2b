"""Never trust the fleet more than yourself (issue 15): entries written straight into the
stream by someone holding the Redis keys (bad address, own address, an ignored address,
huge fields, wrong types) are refused with one rate-limited line each, nothing of them is
blocked, and the member goes on applying the good entries behind them. A client without
the ACL password is refused by Redis and says so in one line."""
import json
import tempfile
import time
from pathlib import Path

import pytest

from fleetproc import Member, all_logs, blocked_in, conf
from lab import FleetLab
from redisproc import RedisServer
from resilience import Sentry
from sentryproc import wait_for

IGNORED = "198.51.100.77"


@pytest.fixture(scope="module")
def flab():
    with FleetLab(hosts=2) as lab:
        lab.wait_reachable()
        lab.redis = RedisServer(lab)
        try:
            yield lab
        finally:
            lab.redis.close()


def xadd(redis, entries):
    """XADD each entry as given (values may be anything redis-py sends), as the admin
    user: a fleet member's keys in the wrong hands."""
    redis.py(f"""
import time
r = client()
now = time.time()
for e in json.loads({json.dumps(json.dumps(entries))}):
    e = {{k: (f"{{now + v['ts+']:.3f}}" if isinstance(v, dict) else v) for k, v in e.items()}}
    r.xadd('scanwatch:{{blocks}}:stream', e)
""")


def entry(addr, **over):
    e = {"v": "1", "kind": "block", "addr": addr, "left": "600", "evidence": "proven",
         "scan": "SYN/Normal", "ports": "22,80", "host": "web9", "ts": {"ts+": 0},
         "id": f"web9:{addr}:{len(over)}"}
    e.update(over)
    return e


def member(lab, host):
    d = Path(tempfile.mkdtemp(prefix="swfleet-"))
    (d / "ignore").write_text(f"{IGNORED}\n")
    return Member(host, d, conf(lab.redis, d, f"web{host.n}"))


def test_hostile_entries_are_refused_one_line_each(flab):
    web1 = member(flab, flab.hosts[0])
    try:
        own = flab.hosts[0].target_ip4
        hostile = [
            (entry("not-an-address"), "bad address"),
            (entry(own), "protected here"),
            (entry(IGNORED), "protected here"),
            (entry("203.0.113.9", scan="X" * 100_000), "scan is 100000 bytes"),
            (entry("203.0.113.10", left="forever"), "not a whole number"),
            (entry("203.0.113.11", ts="yesterday"), "ts is not a time"),
            (entry("203.0.113.12", left="0"), "must end"),
            (entry("203.0.113.13", kind="drop"), "unknown kind"),
            (entry("203.0.113.14", ports="22,99999"), "bad port list"),
            (entry("203.0.113.15", ts={"ts+": -86400}), "from now"),
            (dict(entry("203.0.113.16"), **{f"f{i}": "x" for i in range(40)}), "fields"),
        ]
        # at most 5 lines a second are written: send them in groups of 4, a second apart
        for i in range(0, len(hostile), 4):
            xadd(flab.redis, [e for e, _why in hostile[i:i + 4]])
            n = min(i + 4, len(hostile))
            wait_for(lambda: web1.status()["fleet"]["refused"] == n, 10, f"{n} refused")
            time.sleep(1.0)
        good = "203.0.113.50"
        xadd(flab.redis, [entry(good, id="web9:good")])
        web1.wait_log(f"Host {good} has been blocked via fleet (reported by web9)", timeout=10)
        assert blocked_in(web1, good)

        log = all_logs(web1)
        refused = [line for line in log.splitlines() if "warning: fleet: entry" in line]
        assert len(refused) == len(hostile), log
        for (_e, why), line in zip(hostile, refused):
            assert why in line and len(line) < 300, (why, line)
        assert "X" * 300 not in log and "Traceback" not in log
        st = web1.status()
        assert st["fleet"]["refused"] == len(hostile)
        assert [b["addr"] for b in st["blocked"]] == [good], st["blocked"]
        assert not ({own, IGNORED} & set(web1.nft_set(4)))

        # a flood of bad entries: counted, but the log gets a few lines a second
        xadd(flab.redis, [entry(f"999.0.0.{i}", id=f"web9:f{i}") for i in range(60)])
        wait_for(lambda: web1.status()["fleet"]["refused"] == len(hostile) + 60, 10, "flood counted")
        lines = [ln for ln in all_logs(web1).splitlines() if "warning: fleet: entry" in ln]
        assert len(lines) - len(hostile) <= 15, len(lines)
    finally:
        web1.stop()


@pytest.mark.parametrize("secret", [None, "not-the-password"])
def test_no_or_wrong_password_is_refused_in_one_line(flab, tmp_path, secret):
    h = flab.hosts[1]
    text = conf(flab.redis, tmp_path, "web2")
    if secret is None:
        text = "".join(ln + "\n" for ln in text.splitlines() if "PASSWORD" not in ln)
    else:
        (tmp_path / "fleet.secret").write_text(secret + "\n")
    sw = Sentry(h, tmp_path, args=("-stcp",), conf=text)
    try:
        why = "no password given" if secret is None else "Redis refused the fleet user's password"
        sw.wait_log("error: fleet: Redis refused the fleet user", timeout=20)
        sw.wait_log(why)
        log = sw.log()
        assert "Traceback" not in log and "not-the-password" not in log, log
        assert log.count("Redis refused") == 1, log  # one line per outage, not per retry
        st = sw.status()["fleet"]
        assert not st["connected"] and "refused" in st["error"], st
    finally:
        sw.stop()


def test_a_forged_flood_neither_breaks_nor_burdens_the_member(flab):
    """hping3 --rand-source: blocks of addresses no member would accept (240/4 ...) are
    not offered, the member keeps running and answering, and what it sends the fleet stays
    within BLOCK_RATE."""
    web1 = member(flab, flab.hosts[0])
    try:
        flood = flab.popen(flab.scanner_ns, "hping3", "-n", "-q", "--rand-source", "--flood",
                           "-S", "-p", "++1000", flab.hosts[0].target_ip4)
        time.sleep(6)
        flood.terminate()
        flood.wait(timeout=10)
        assert web1.proc.poll() is None, all_logs(web1)
        st = web1.status()
        assert st["counters"]["packets"] > 10000
        fl = st["fleet"]
        assert fl["connected"] and fl["blocks_made"] <= 2 * 120, fl  # BLOCK_RATE (+ proven)
        wait_for(lambda: web1.status()["fleet"]["queued"] == 0, 15, "queue drained")
        log = all_logs(web1)
        assert "Traceback" not in log and "error: fleet" not in log, log[-3000:]
    finally:
        web1.stop()


def test_a_member_away_longer_than_the_stream_lasts_says_so(flab):
    web2 = member(flab, flab.hosts[1])
    try:
        xadd(flab.redis, [entry("203.0.113.60", id="web9:before")])
        web2.wait_log("Host 203.0.113.60 has been blocked via fleet", timeout=10)
        assert web2.stop() == 0
        # while it is away the stream moves on and is trimmed past its position
        flab.redis.py("""
import time
r = client()
for i in range(30):
    r.xadd('scanwatch:{blocks}:stream', {'v': '1', 'kind': 'block', 'addr': f'203.0.113.{100 + i}',
           'left': '600', 'evidence': 'proven', 'scan': 'SYN/Normal', 'ports': '22',
           'host': 'web9', 'ts': f'{time.time():.3f}', 'id': f'web9:away{i}'},
           maxlen=5, approximate=False)
""")
        web2 = web2.restart()
        web2.wait_log("warning: fleet: the stream no longer holds our position", timeout=15)
        # what is still in the stream is applied
        wait_for(lambda: "203.0.113.129" in web2.nft_set(4), 10, "the newest entry applied")
        assert web2.status()["fleet"]["gap"] == 1
        assert "Traceback" not in all_logs(web2)
    finally:
        web2.stop()
