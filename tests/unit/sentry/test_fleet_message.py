"""Fleet stream entries: what we write validates; what a hostile member writes is refused."""

import pytest

from scanwatch.errors import ConfigError
from scanwatch.sentry import config
from scanwatch.sentry.fleet import member, message
from scanwatch.sentry.fleet.message import Refused, decode, encode
from scanwatch.sentry.fleet.spool import Spool

NOW = 1_800_000_000.0


def entry(**over):
    e = encode("block", "198.51.100.7", host="web1", left=3600, evidence="proven",
               scan="SYN", ports=(22, 80), ts=NOW - 0.5, uid="1-web1")
    e.update(over)
    return e


def test_round_trip():
    e = decode(entry(), now=NOW, max_left=604800)
    assert (e.kind, e.addr, e.host, e.ports, e.evidence) == \
        ("block", "198.51.100.7", "web1", (22, 80), "proven")
    assert 3599 < message.remaining(e, NOW) <= 3599.5


def test_bytes_as_redis_returns_them():
    raw = {k.encode(): v.encode() for k, v in entry().items()}
    assert decode(raw, now=NOW, max_left=604800).addr == "198.51.100.7"


@pytest.mark.parametrize("over, why", [
    ({"addr": "not-an-ip"}, "bad address"),
    ({"addr": "0.0.0.0"}, "cannot be a scanner"),
    ({"addr": "127.0.0.1"}, "cannot be a scanner"),
    ({"addr": "224.0.0.1"}, "cannot be a scanner"),
    ({"host": "x" * 5000}, "bytes"),
    ({"scan": b"\xff\xfe"}, "not text"),
    ({"ports": "22,99999"}, "bad port"),
    ({"ports": "22;rm -rf"}, "bad port"),
    ({"left": "-5"}, "not a whole number"),
    ({"left": "0"}, "must end"),
    ({"left": "99999999"}, "outside"),
    ({"ts": "yesterday"}, "not a time"),
    ({"ts": f"{NOW - 86400}"}, "from now"),
    ({"evidence": "certain"}, "unknown evidence"),
    ({"kind": "exec"}, "unknown kind"),
    ({"v": "9"}, "version"),
    ({"left": 3600}, "is a int"),
    ({"host": "web1; DROP"}, "bad host"),
])
def test_hostile_entries_are_refused(over, why):
    with pytest.raises(Refused, match=why):
        decode(entry(**over), now=NOW, max_left=604800)


def test_missing_and_too_many_fields():
    e = entry()
    del e["addr"]
    with pytest.raises(Refused, match="no addr"):
        decode(e, now=NOW, max_left=604800)
    e = entry(**{f"x{i}": "1" for i in range(20)})
    with pytest.raises(Refused, match="fields"):
        decode(e, now=NOW, max_left=604800)
    with pytest.raises(Refused):
        decode([1, 2], now=NOW, max_left=1)


def test_keys_share_a_slot_per_source():
    k = message.Keys("prod")
    assert k.sweep("198.51.100.7") == "prod:sweep:{198.51.100.7}"
    assert all(x.startswith("prod:") for x in (k.stream, k.members, k.sweep("::1")))
    assert k.pattern() == "~prod:*"
    with pytest.raises(ValueError):
        message.Keys("a b")


def test_judge_protects_and_deduplicates():
    seen = member.Seen(size=2)
    e = decode(entry(), now=NOW, max_left=604800)
    kw = dict(now=NOW, is_protected=lambda a: False, is_blocked=lambda a: False, seen=seen)
    assert member.judge(e, me="web1", **kw)[0] == member.SKIP  # our own publication
    v, _, secs = member.judge(e, me="web2", **kw)
    assert v == member.APPLY and secs > 3598
    assert member.judge(e, me="web2", **kw)[:2] == (member.SKIP, "already applied")
    e2 = decode(entry(id="2-web1"), now=NOW, max_left=604800)
    kw["is_protected"] = lambda a: a == "198.51.100.7"
    assert member.judge(e2, me="web2", **kw)[0] == member.REFUSE
    e3 = decode(entry(id="3-web1", left="1", ts=f"{NOW - 5}"), now=NOW, max_left=604800)
    kw["is_protected"] = lambda a: False
    assert member.judge(e3, me="web2", **kw)[1] == "expired on the way"
    # bounded: the oldest id is forgotten
    assert len(seen.ids) == 2


def test_share_never_includes_possibly_spoofed():
    share = member.parse_share(("proven", "unverified", "suspect", "decoy"))
    assert share == {"proven", "unverified"}
    assert not member.should_share("suspect", share)
    assert member.should_share("unverified", share)


def test_refusal_lines_are_rate_limited():
    lim = member.LineLimiter(per_second=3)
    assert [lim.allow(NOW + 0.1 * i) for i in range(5)] == [True] * 3 + [False] * 2
    assert lim.take_suppressed() == 2
    assert lim.allow(NOW + 1.0)


def test_sightings_are_batched_and_bounded():
    s = member.Sightings("web1", interval=0.2, per_source=3, max_sources=2)
    s.add("198.51.100.7", [("TCP", 22), ("TCP", 23)])
    s.add("198.51.100.7", [("TCP", 22), ("UDP", 53), ("TCP", 99)])
    s.add("198.51.100.8", [("TCP", 1)])
    s.add("198.51.100.9", [("TCP", 1)])
    assert s.dropped == 1
    assert not s.due(NOW)
    assert s.due(NOW + 0.3)
    batch = s.take(NOW + 0.3)
    assert batch["198.51.100.7"] == ["web1:t22", "web1:t23", "web1:u53"]
    assert not s.pending and not s.due(NOW + 1)
    assert member.sweep_verdict(12, 12) and not member.sweep_verdict(11, 12)
    assert not member.sweep_verdict(100, 0)


def test_spool_survives_a_restart_and_is_bounded(tmp_path):
    path = str(tmp_path / "fleet.queue")
    sp = Spool(path, limit=3)
    for i in range(5):
        sp.push({"n": i})
    assert [x["n"] for x in Spool(path, limit=3).items] == [2, 3, 4]
    sp.drop(2)
    with open(path, "a") as fh:
        fh.write('{"torn')  # a crash mid-line
    assert [x["n"] for x in Spool(path, limit=3).items] == [4]


def write(tmp_path, text):
    p = tmp_path / "scanwatch.conf"
    p.write_text(text)
    return str(p)


def test_fleet_settings(tmp_path):
    cfg = config.load(write(tmp_path, 'FLEET_URL="rediss://web1@redis.internal:6380/2"\n'))
    assert message.parse_url(cfg.FLEET_URL) == (True, "web1", "redis.internal", 6380, 2)
    assert cfg.FLEET_SHARE == ("proven", "unverified")
    for bad, why in (('FLEET_URL="redis://u:secret@h"', "password"),
                     ('FLEET_URL="http://h"', "not redis"),
                     ('FLEET_SHARE="proven,maybe"', "maybe"),
                     ('FLEET_NAME="a:b"', "fleet name")):
        with pytest.raises(ConfigError, match=why) as ei:
            config.load(write(tmp_path, "# x\n" + bad + "\n"))
        assert str(ei.value).endswith(ei.value.message) and ":2:" in str(ei.value)


def test_sightings_kept_while_redis_is_away_merged_and_bounded():
    s = member.Sightings("web1", per_source=3, max_sources=2)
    s.add("198.51.100.7", [("TCP", 22)], now=NOW)
    batch = s.take(NOW + 1)
    assert batch == {"198.51.100.7": ["web1:t22"]}
    assert s.queued() == 1  # in flight still counts as queued (for status)
    s.add("198.51.100.7", [("TCP", 23), ("TCP", 24)], now=NOW + 2)
    s.add("198.51.100.8", [("TCP", 1)], now=NOW + 2)
    s.restore()  # the send failed: merged back, one source, within per_source
    assert sorted(s.pending) == ["198.51.100.7", "198.51.100.8"]
    assert sorted(s.pending["198.51.100.7"]) == ["web1:t22", "web1:t23", "web1:t24"]
    assert s.first["198.51.100.7"] == NOW  # its oldest pair
    s.restore()  # nothing in flight: nothing twice
    assert len(s.pending["198.51.100.7"]) == 3
    s.add("198.51.100.9", [("TCP", 1)], now=NOW + 3)  # max_sources
    assert s.dropped == 1
    # back after longer than the window: what is older than it is not counted any more
    batch = s.take(NOW + 650, max_age=600)
    assert batch == {} and s.stale == 2
    s.sent()
    assert s.queued() == 0
