"""policy.py: PortSentry's reaction rules over kernel reports, with an injected clock."""
import dataclasses
import ipaddress

import pytest
from hypothesis import given, settings, strategies as st

from scanwatch.sentry.model import BlockEntry, ScanEvent
from scanwatch.sentry.policy import (ALERT, ALREADY, BLOCK, IGNORE, QUIET, RUN, BlockBudget, Decision,
                              Policy, SourceTable, proven)

T0 = 1_700_000_000.0
A = "192.0.2.7"
B = "198.51.100.9"
V6 = "2001:db8::bad"


class FakeClock:
    """A wall clock that moves only when the test says so."""

    def __init__(self, start=T0):
        self.now = start

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def event(addr=A, *, proto="TCP", port=31337, kind=None, reason="trigger", tripwire=1,
          sweep=0, ports=None, mono=100.0, evidence="stealth"):
    if kind is None:
        kind = "UDP" if proto == "UDP" else "SYN/Normal"
    if ports is None:
        ports = ((proto, port),)
    return ScanEvent(addr=ipaddress.ip_address(addr), mono=mono, proto=proto, port=port,
                     kind=kind, reason=reason, tripwire=tripwire, sweep=sweep, ports=ports,
                     evidence=evidence)


def policy(clock=None, **kw):
    return Policy(clock=clock or FakeClock(), **kw)


# --- SCAN_TRIGGER -----------------------------------------------------------------------

@pytest.mark.parametrize("reason", ["trigger", "hit"])
def test_trigger_zero_blocks_first_hit(reason):
    clock = FakeClock()
    p = policy(clock, scan_trigger=0, block_timeout=3600)
    d = p.on_event(event(A, port=31337, kind="FIN", reason=reason, tripwire=1))
    assert isinstance(d, Decision)
    assert d.action == BLOCK
    assert d.mode == "stcp"
    b = d.block
    assert isinstance(b, BlockEntry)
    assert b.addr == A
    assert b.since == T0
    assert b.expires == T0 + 3600
    assert b.scan_type == "FIN"
    assert (b.proto, b.port, b.mode, b.reason) == ("TCP", 31337, "stcp", "tripwire")
    assert b.ports == ["31337/tcp"]
    assert p.blocks == {A: b}


def test_trigger_two_third_hit_blocks():
    """As the kernel reports it: two `hit`s below the trigger, then the `trigger`."""
    p = policy(scan_trigger=2)
    assert p.on_event(event(reason="hit", tripwire=1, port=1)).action == QUIET
    assert p.on_event(event(reason="hit", tripwire=2, port=11)).action == QUIET
    assert p.blocks == {}
    d = p.on_event(event(reason="trigger", tripwire=3, port=15))
    assert d.action == BLOCK
    assert d.block.port == 15
    assert d.block.ports == ["1/tcp", "11/tcp", "15/tcp"]


def test_trigger_two_hit_counted_above_trigger_blocks():
    p = policy(scan_trigger=2)
    actions = [p.on_event(event(reason="hit", tripwire=n)).action for n in (1, 2, 3)]
    assert actions == [QUIET, QUIET, BLOCK]


def test_quiet_decision_carries_event_and_mode():
    p = policy(scan_trigger=1)
    ev = event(proto="UDP", reason="hit", tripwire=1, port=161)
    d = p.on_event(ev)
    assert d == Decision(QUIET, ev, "sudp")
    assert d.block is None


@settings(max_examples=50)
@given(st.integers(0, 30))
def test_first_reaction_is_hit_number_trigger_plus_one(trigger):
    p = policy(scan_trigger=trigger)
    actions = []
    for n in range(1, trigger + 3):
        reason = "hit" if n <= trigger else "trigger"
        actions.append(p.on_event(event(reason=reason, tripwire=n)).action)
    assert actions[:trigger] == [QUIET] * trigger
    assert actions[trigger] == BLOCK
    assert actions[trigger + 1] == ALREADY


@pytest.mark.parametrize("tripwire", [0, 1, 5])
def test_sweep_blocks_regardless_of_tripwire_count(tripwire):
    p = policy(scan_trigger=5)
    ports = tuple(("TCP", 2000 + i) for i in range(20))
    d = p.on_event(event(reason="sweep", tripwire=tripwire, sweep=20, port=2019, ports=ports))
    assert d.action == BLOCK
    assert d.block.reason == "sweep"
    assert d.block.ports == [f"{2000 + i}/tcp" for i in range(20)]


# --- BLOCK_TCP / BLOCK_UDP --------------------------------------------------------------

def test_block_level_zero_alerts_once_and_records_the_host():
    # PortSentry with BLOCK_TCP="0" logs "Ignoring TCP response", still writes the host to
    # its blocked/history files, and answers later hits with "already blocked".
    p = policy(block_levels={"TCP": 0, "UDP": 1})
    d = p.on_event(event(A))
    assert d.action == ALERT and d.block.level == 0 and p.blocks[A].level == 0
    assert p.on_event(event(A, tripwire=2, reason="hit")).action == ALREADY
    # UDP is governed by BLOCK_UDP.
    d = p.on_event(event(B, proto="UDP", port=161))
    assert d.action == BLOCK and d.block.level == 1


def test_log_only_reports_each_protocol_once_like_portsentrys_two_processes():
    # nmap -sF, -sN, -sX, then -sU from one host with BLOCK_TCP=0 and BLOCK_UDP=0: the TCP
    # scans are one TCP report and then "already"; the UDP scan is a report of its own.
    clock = FakeClock()
    p = policy(clock, block_levels={"TCP": 0, "UDP": 0}, block_timeout=600)
    d = p.on_event(event(A, kind="FIN"))
    assert (d.action, d.mode) == (ALERT, "stcp")
    for kind in ("NULL", "XMAS"):
        assert p.on_event(event(A, kind=kind, reason="hit")).action == ALREADY
    clock.advance(5)
    d = p.on_event(event(A, proto="UDP", port=161))
    assert (d.action, d.mode, d.block.level) == (ALERT, "sudp", 0)
    assert p.blocks[A].modes == ["stcp", "sudp"] and len(p.blocks) == 1
    assert p.on_event(event(A, proto="UDP", port=162, reason="hit")).action == ALREADY
    assert p.on_event(event(A, kind="XMAS", reason="hit")).action == ALREADY


@pytest.mark.parametrize("second, level", [(1, 1), (2, 2), (0, 0)])
def test_a_logged_host_is_blocked_when_the_other_protocol_blocks(second, level):
    # BLOCK_TCP=0, BLOCK_UDP=1: a UDP scan after a logged TCP scan is blocked, with a full
    # block time from then; a block never shrinks back to "logged".
    clock = FakeClock()
    p = policy(clock, block_levels={"TCP": 0, "UDP": second}, block_timeout=600)
    p.on_event(event(A))
    clock.advance(100)
    d = p.on_event(event(A, proto="UDP", port=161))
    assert d.action == {0: ALERT, 1: BLOCK, 2: RUN}[second] and d.block.level == level
    if second == 1:
        assert (d.block.since, d.block.expires) == (T0 + 100, T0 + 700)
    else:
        assert d.block.expires == T0 + 600
    p2 = policy(clock, block_levels={"TCP": 1, "UDP": 0})
    p2.on_event(event(A))
    assert p2.on_event(event(A, proto="UDP", port=161)).block.level == 1


def test_block_level_two_runs_command_only():
    p = policy(block_levels={"TCP": 2, "UDP": 2})
    d = p.on_event(event(A))
    assert d.action == RUN and d.block.level == 2
    d = p.on_event(event(B, proto="UDP", port=161))
    assert (d.action, d.mode) == (RUN, "sudp")


def test_block_level_zero_for_sweep_too():
    p = policy(block_levels={"TCP": 0, "UDP": 0})
    d = p.on_event(event(reason="sweep", tripwire=0, sweep=20))
    assert d.action == ALERT and d.block.reason == "sweep"


def test_log_only_entry_expires_and_reports_again():
    clock = FakeClock()
    p = policy(clock, block_levels={"TCP": 0, "UDP": 0}, block_timeout=60)
    assert p.on_event(event(A)).action == ALERT
    clock.advance(61)
    assert [e.addr for e in p.expire()] == [A]
    assert p.on_event(event(A, tripwire=2)).action == ALERT


# --- ignore -----------------------------------------------------------------------------

def test_ignored_address():
    ignored = {ipaddress.ip_address(A)}
    p = policy(is_ignored=lambda addr: addr in ignored)
    for reason in ("hit", "trigger", "sweep"):
        d = p.on_event(event(A, reason=reason))
        assert d.action == IGNORE
        assert d.block is None
    assert p.blocks == {}
    assert A not in p.sources.rows
    assert p.on_event(event(B)).action == BLOCK


def test_is_ignored_gets_the_event_address():
    seen = []
    p = policy(is_ignored=lambda addr: seen.append(addr) or False)
    p.on_event(event(V6))
    assert seen == [ipaddress.ip_address(V6)]


# --- already blocked and expiry ---------------------------------------------------------

def test_second_trigger_while_blocked_is_already():
    clock = FakeClock()
    p = policy(clock, block_timeout=600)
    first = p.on_event(event(A, port=1)).block
    clock.advance(10)
    d = p.on_event(event(A, port=11, reason="trigger"))
    assert d.action == ALREADY
    assert d.block is first
    assert p.blocks[A] is first
    assert first.since == T0  # not renewed
    # A sweep from a blocked source is also "already".
    assert p.on_event(event(A, reason="sweep", tripwire=0)).action == ALREADY
    # Over UDP it is reported once more, under sudp, as PortSentry's UDP process would
    # (no new offence, the block keeps its time); then that protocol is "already" too.
    d = p.on_event(event(A, proto="UDP", port=161))
    assert (d.action, d.mode, d.block) == (BLOCK, "sudp", first)
    assert first.modes == ["stcp", "sudp"] and first.offences == 1 and first.since == T0
    assert p.on_event(event(A, proto="UDP", port=162, reason="hit")).action == ALREADY
    # A probe the block dropped (EV_PERSIST) is no scan seen over another protocol.
    q = policy(clock, block_timeout=600)
    q.on_event(event(A))
    assert q.on_event(event(A, proto="UDP", port=161, reason="persist")).action == ALREADY


def test_expiry():
    clock = FakeClock()
    p = policy(clock, block_timeout=60)
    b = p.on_event(event(A)).block
    assert b.expires == T0 + 60
    assert b.left(clock()) == 60
    clock.advance(59)
    assert p.expire() == []
    assert p.on_event(event(A)).action == ALREADY
    clock.advance(1)
    assert b.left(clock()) == 0
    assert p.expire() == [b]
    assert p.blocks == {}
    assert p.expire() == []
    d = p.on_event(event(A))
    assert d.action == BLOCK
    assert d.block is not b
    assert d.block.since == T0 + 60
    # A repeat offender within REPEAT_WINDOW: the block doubles.
    assert d.block.offences == 2 and d.block.expires == T0 + 60 + 120


def test_repeat_offenders_double_up_to_the_cap_and_reset_after_the_window():
    clock = FakeClock()
    p = policy(clock, block_timeout=60, timeout_max=300, repeat_window=1000)
    lengths = []
    for _ in range(5):
        b = p.on_event(event(A)).block
        lengths.append(b.seconds())
        clock.advance(b.seconds())
        assert p.expire() == [b]
    assert lengths == [60, 120, 240, 300, 300]
    clock.advance(1001)  # a quiet window: back to the first offence
    b = p.on_event(event(A)).block
    assert (b.offences, b.seconds()) == (1, 60)
    # Another address is judged on its own record.
    assert p.on_event(event(B)).block.offences == 1


def test_permanent_blocks_stay_permanent_for_repeat_offenders():
    p = policy(block_timeout=0)
    b = p.on_event(event(A)).block
    assert b.expires is None and b.seconds() == 0
    p.unblock(A)
    b = p.on_event(event(A)).block
    assert b.offences == 2 and b.expires is None


def test_expired_but_not_yet_swept_blocks_again():
    clock = FakeClock()
    p = policy(clock, block_timeout=60)
    p.on_event(event(A))
    clock.advance(61)
    d = p.on_event(event(A))
    assert d.action == BLOCK
    assert d.block.since == T0 + 61
    assert p.expire() == []  # the new block replaced the stale one


def test_expire_only_the_due_ones():
    clock = FakeClock()
    p = policy(clock, block_timeout=100)
    a = p.on_event(event(A)).block
    clock.advance(50)
    b = p.on_event(event(B)).block
    clock.advance(50)
    assert p.expire() == [a]
    assert p.blocks == {B: b}


def test_timeout_zero_never_expires():
    clock = FakeClock()
    p = policy(clock, block_timeout=0)
    b = p.on_event(event(A)).block
    assert b.expires is None
    assert b.left(clock()) is None
    clock.advance(10 * 365 * 86400)
    assert p.expire() == []
    assert p.on_event(event(A)).action == ALREADY


def test_unblock():
    p = policy()
    b = p.on_event(event(A)).block
    assert p.unblock(A) is b
    assert p.unblock(A) is None
    assert p.blocks == {}
    assert p.on_event(event(A)).action == BLOCK


def test_unblock_ipv6_any_spelling():
    p = policy()
    b = p.on_event(event(V6)).block
    assert b.addr == V6
    assert p.unblock("2001:0DB8:0000::0BAD") is b


def test_unblock_v4_mapped_spelling():
    p = policy()
    b = p.on_event(event(A)).block
    assert p.unblock(f"::ffff:{A}") is b


def test_unblock_rejects_non_address():
    with pytest.raises(ValueError):
        policy().unblock("not-an-ip")


def _entry(addr, since, expires):
    return BlockEntry(addr=addr, since=since, expires=expires, scan_type="SYN/Normal",
                      proto="TCP", port=1, mode="stcp", reason="tripwire", ports=["1/tcp"])


def test_restore_keeps_only_unexpired():
    clock = FakeClock()
    p = policy(clock)
    past = _entry("192.0.2.1", T0 - 7200, T0 - 3600)
    now_due = _entry("192.0.2.2", T0 - 3600, T0)
    alive = _entry("192.0.2.3", T0 - 10, T0 + 3590)
    forever = _entry("2001:db8::3", T0 - 10, None)
    assert p.restore([past, now_due, alive, forever]) == [alive, forever]
    assert p.blocks == {"192.0.2.3": alive, "2001:db8::3": forever}
    assert p.on_event(event("192.0.2.3")).action == ALREADY
    assert p.on_event(event("2001:db8::3")).action == ALREADY
    assert p.on_event(event("192.0.2.1")).action == BLOCK
    clock.advance(3590)
    assert p.expire() == [alive]


def test_restore_nothing():
    p = policy()
    assert p.restore([]) == []
    assert p.blocks == {}


# --- modes ------------------------------------------------------------------------------

def test_udp_event_maps_to_sudp():
    p = policy()
    d = p.on_event(event(A, proto="UDP", port=31335, reason="trigger"))
    assert d.action == BLOCK
    assert d.mode == "sudp"
    assert (d.block.mode, d.block.proto, d.block.scan_type) == ("sudp", "UDP", "UDP")
    assert d.block.ports == ["31335/udp"]


def test_tcp_event_maps_to_stcp_and_custom_modes():
    assert policy().on_event(event()).mode == "stcp"
    p = policy(modes={"TCP": "atcp", "UDP": "audp"})
    assert p.on_event(event(A)).block.mode == "atcp"
    assert p.on_event(event(B, proto="UDP")).mode == "audp"


def test_ipv6_source():
    d = policy().on_event(event(V6, port=12345))
    assert d.action == BLOCK
    assert d.block.addr == V6


# --- SourceTable ------------------------------------------------------------------------

def test_source_table_is_bounded_oldest_first():
    t = SourceTable(limit=3)
    for i in range(1, 6):
        t.note(event(f"192.0.2.{i}"), T0 + i)
    assert list(t.rows) == ["192.0.2.3", "192.0.2.4", "192.0.2.5"]


def test_source_table_recently_seen_survives():
    t = SourceTable(limit=3)
    for i in (1, 2, 3):
        t.note(event(f"192.0.2.{i}"), T0 + i)
    t.note(event("192.0.2.1"), T0 + 4)  # seen again: now the newest
    t.note(event("192.0.2.4"), T0 + 5)
    assert list(t.rows) == ["192.0.2.3", "192.0.2.1", "192.0.2.4"]


def test_source_table_row():
    t = SourceTable()
    t.note(event(A, port=1, kind="SYN/Normal", ports=(("TCP", 1),)), T0)
    t.note(event(A, port=11, kind="FIN", ports=(("TCP", 1), ("TCP", 11))), T0 + 5)
    t.note(event(A, proto="UDP", port=161, ports=(("TCP", 1), ("TCP", 11), ("UDP", 161))), T0 + 9)
    row = t.note(event(A, reason="sweep", port=2000, kind="SYN/Normal",
                       ports=(("TCP", 11), ("UDP", 161), ("TCP", 2000))), T0 + 10)
    assert row is t.rows[A]
    assert row["first"] == T0 and row["last"] == T0 + 10
    assert row["ports"] == ["1/tcp", "11/tcp", "161/udp", "2000/tcp"]
    assert row["kinds"] == {"SYN/Normal": 1, "FIN": 1, "UDP": 1}  # the sweep is no tripwire hit


def test_source_table_event_port_listed_even_without_ring():
    t = SourceTable()
    row = t.note(event(A, port=635, ports=()), T0)
    assert row["ports"] == ["635/tcp"]


def test_source_table_ports_kept_limit():
    t = SourceTable(ports_kept=4)
    ports = tuple(("TCP", p) for p in range(100, 110))
    row = t.note(event(A, port=109, ports=ports), T0)
    assert row["ports"] == ["100/tcp", "101/tcp", "102/tcp", "103/tcp"]


def test_policy_notes_sources():
    clock = FakeClock()
    p = policy(clock, scan_trigger=1)
    p.on_event(event(A, reason="hit", tripwire=1, port=1))
    clock.advance(3)
    p.on_event(event(A, reason="trigger", tripwire=2, port=11,
                     ports=(("TCP", 1), ("TCP", 11))))
    row = p.sources.rows[A]
    assert row["first"] == T0 and row["last"] == T0 + 3
    assert row["ports"] == ["1/tcp", "11/tcp"]
    assert p.blocks[A].ports == ["1/tcp", "11/tcp"]


# --- BLOCK_RATE: withdrawn blocks, proven sources, the two budgets ----------------------

def test_a_withdrawn_block_is_judged_afresh_and_is_no_repeat_offence():
    clock = FakeClock()
    p = policy(clock, block_timeout=60, repeat_window=1000)
    first = p.on_event(event(A)).block
    assert p.withdraw(A) == first and A not in p.blocks
    # It comes back (EV_PERSIST): blocked now, still as a first offence.
    again = p.on_event(event(A, reason="persist"))
    assert again.action == BLOCK and (again.block.offences, again.block.seconds()) == (1, 60)
    # A real repeat after that block ends still doubles.
    clock.advance(60)
    p.expire()
    assert p.on_event(event(A)).block.offences == 2


def test_withdrawing_a_repeat_offence_keeps_the_earlier_ones():
    clock = FakeClock()
    p = policy(clock, block_timeout=60, repeat_window=1000)
    clock.advance(p.on_event(event(A)).block.seconds())
    p.expire()
    assert p.on_event(event(A)).block.offences == 2
    p.withdraw(A)
    assert p.on_event(event(A, reason="persist")).block.offences == 2
    assert p.withdraw("192.0.2.200") is None  # never seen: nothing to take back


@pytest.mark.parametrize("reason, evidence, strength, real", [
    ("trigger", "stealth", "", False),   # one probe: could be spoofed
    ("sweep", "stealth", "", False),
    # Issue 14: probing on after the block is no proof: a forger sends what it likes.
    ("persist", "stealth", "", False),
    ("hit", "stealth", "", False),
    ("persist", "stealth", "unverified", False),
    ("persist", "stealth", "decoy", False),
    ("trigger", "stealth", "proven", True),  # the return-routability challenge answered
    ("hit", "connect", "", True),        # completed a TCP handshake (classic -tcp)
    ("hit", "datagram", "", False),      # a UDP datagram (classic -udp) proves nothing
])
def test_proven_sources(reason, evidence, strength, real):
    ev = dataclasses.replace(event(reason=reason, evidence=evidence), strength=strength)
    assert proven(ev) is real


def test_forged_persistent_source_never_gets_the_proven_budget():
    """A spoofed flood spends the first budget; a forged source that keeps 'probing after
    its block' (EV_PERSIST) must not reach a full block (nft, hosts.deny) as proven."""
    b = BlockBudget(2, clock=lambda: 0.0)
    assert b.take(proven(event("192.0.2.1"))) and b.take(proven(event("192.0.2.2")))
    for i in range(10):
        assert not b.take(proven(event(f"192.0.2.{50 + i}", reason="persist")))
    answered = dataclasses.replace(event("192.0.2.99", reason="persist"), strength="proven")
    assert b.take(proven(answered))


def test_block_budget_per_minute_with_a_second_budget_for_proven_sources():
    now = [0.0]
    b = BlockBudget(3, clock=lambda: now[0])
    assert [b.take(False) for _ in range(4)] == [True, True, True, False]
    # The flood spent the first budget; proven sources still get theirs.
    assert [b.take(True) for _ in range(4)] == [True, True, True, False]
    assert not b.take(False)
    now[0] = 60.5  # a minute later both refill
    assert b.take(False) and b.take(True)
    b.per_minute = 0  # BLOCK_RATE=0 (SIGHUP can change it): nothing is written in full
    assert not b.take(True)


def test_proven_sources_spend_the_first_budget_while_it_lasts():
    b = BlockBudget(2, clock=lambda: 0.0)
    assert b.take(True) and b.take(True)
    assert len(b.spent[0]) == 2 and not b.spent[1]


def test_ipv6_sources_are_blocked_per_prefix_and_unblocked_by_any_address_in_it():
    """issue 14: with V6_PREFIX=64 the kernel counts a /64 as one source; the block is the
    prefix's, a second address of it is ALREADY blocked, IPv4 stays per address, and an
    admin may name the prefix or any address inside it."""
    p = Policy(clock=FakeClock(), v6_prefix=64)
    d = p.on_event(event("2001:db8:1:2::1005", reason="sweep"))
    assert d.action == BLOCK and d.block.addr == "2001:db8:1:2::/64"
    assert p.on_event(event("2001:db8:1:2::77", reason="sweep")).action == ALREADY
    assert p.on_event(event("2001:db8:1:3::1", reason="sweep")).action == BLOCK
    assert p.on_event(event(A, reason="sweep")).block.addr == A
    assert p.key_of("2001:db8:1:2::abc") == "2001:db8:1:2::/64"
    assert p.key_of("2001:db8:1:9::1") == "2001:db8:1:9::1"  # nothing covers it
    assert p.unblock("2001:db8:1:2::abc").addr == "2001:db8:1:2::/64"
    assert p.unblock("2001:DB8:1:3::/64").addr == "2001:db8:1:3::/64"
    assert set(p.blocks) == {A}


def test_ipv6_per_address_when_v6_prefix_is_128():
    p = Policy(clock=FakeClock(), v6_prefix=128)
    assert p.on_event(event(V6, reason="sweep")).block.addr == V6
