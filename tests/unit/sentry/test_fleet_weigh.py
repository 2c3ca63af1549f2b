"""Fleet sweeps weighed by spoof evidence (issue 15 after issue 13): the pure decisions."""
from scanwatch.sentry.evidence import parse_response
from scanwatch.sentry.fleet import member, message
from scanwatch.sentry.fleet.message import decode, encode

NOW = 1_700_000_000.0
MS = 1_000_000
WIN = 250 * MS
PORTS = (("TCP", 443), ("TCP", 22), ("TCP", 80))


def test_a_decoy_cohort_is_in_lockstep_and_a_lone_scanner_is_not():
    rows = [("10.0.0.1", 1000 * MS, PORTS), ("10.0.0.2", 1001 * MS, PORTS),
            ("10.0.0.3", 1002 * MS, PORTS), ("10.0.0.9", 5000 * MS, PORTS)]
    assert member.lockstep(rows, WIN) == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}
    # another order of the same ports is another scan, not a decoy of this one
    other = [("10.0.0.1", 1000 * MS, PORTS), ("10.0.0.2", 1001 * MS, PORTS[::-1])]
    assert member.lockstep(other, WIN) == set()
    assert member.lockstep([("10.0.0.1", 0, PORTS)], WIN) == set()


def test_a_walk_between_two_members_probes_of_one_port_still_finds_the_cohort():
    # the second member has not yet sent its last probe when the table is walked
    rows = [("10.0.0.1", 1000 * MS, PORTS), ("10.0.0.2", 1000 * MS, PORTS[:2])]
    assert member.lockstep(rows, WIN) == {"10.0.0.1", "10.0.0.2"}


def test_a_flood_of_one_port_is_linear_and_all_marked():
    rows = [(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", i * 1000, (("TCP", 80),))
            for i in range(20000)]
    assert len(member.lockstep(rows, WIN)) == 20000


def test_sweep_strength_follows_evidence_py():
    assert member.sweep_strength({"suspect", "decoy"}, answered=True) == "suspect"
    assert member.sweep_strength({"decoy"}, answered=True) == "proven"
    assert member.sweep_strength({"decoy"}, answered=False) == "decoy"
    assert member.sweep_strength(set(), answered=False) == "unverified"
    assert member.sweep_strength(set(), answered=True) == "proven"


def test_response_is_this_hosts_evidence_response():
    default = parse_response("proven:full,unverified:full,decoy:kernel,suspect:log")
    assert [member.response(s, default) for s in ("proven", "unverified", "decoy", "suspect")] \
        == ["full", "full", "kernel", "log"]
    strict = parse_response("proven:full,unverified:kernel,decoy:log,suspect:log")
    assert member.response("unverified", strict) == "kernel"
    assert member.response("made-up", default) == "log"


def test_possibly_spoofed_entries_are_refused_even_if_published():
    seen = member.Seen()
    kw = dict(now=NOW, is_protected=lambda a: False, is_blocked=lambda a: False, seen=seen)
    for i, ev in enumerate(("decoy", "suspect")):
        e = decode(encode("sweep", "198.51.100.7", host="web1", left=3600, evidence=ev,
                          ts=NOW, uid=f"web1:{i}"), now=NOW, max_left=604800)
        verdict, why, _ = member.judge(e, me="web2", **kw)
        assert verdict == member.REFUSE and "possibly spoofed" in why
    e = decode(encode("unblock", "198.51.100.7", host="web1", evidence="decoy", ts=NOW,
                      uid="web1:9"), now=NOW, max_left=604800)
    assert member.judge(e, me="web2", **kw)[0] == member.APPLY  # a lift is always fine


def test_marks_share_the_slot_of_the_sources_count():
    k = message.Keys("prod")
    assert k.spoof("198.51.100.7") == "prod:spoof:{198.51.100.7}"
    assert k.spoof("::1").startswith("prod:")
