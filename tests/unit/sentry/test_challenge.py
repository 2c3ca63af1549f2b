"""Pure parts of the return-routability challenge: cookie, SYN-ACK bytes, rate limit."""
import ipaddress
import struct

from scanwatch.sentry.respond.challenge import RateLimit, checksum, cookie, syn_ack


def test_cookie_is_keyed_and_depends_on_the_tuple():
    a = cookie(b"k" * 16, "10.0.0.1", "10.0.0.2", 1, 2)
    assert a == cookie(b"k" * 16, "10.0.0.1", "10.0.0.2", 1, 2)
    assert a != cookie(b"j" * 16, "10.0.0.1", "10.0.0.2", 1, 2)
    assert a != cookie(b"k" * 16, "10.0.0.3", "10.0.0.2", 1, 2)
    assert a != cookie(b"k" * 16, "10.0.0.1", "10.0.0.2", 1, 3)
    assert 0 <= a < 2 ** 32


def _verify(local, remote, seg):
    local, remote = ipaddress.ip_address(local), ipaddress.ip_address(remote)
    if local.version == 4:
        pseudo = local.packed + remote.packed + struct.pack("!BBH", 0, 6, len(seg))
    else:
        pseudo = local.packed + remote.packed + struct.pack("!IxxxB", len(seg), 6)
    return checksum(pseudo + seg) == 0


def test_syn_ack_fields_and_checksum_v4_v6():
    for local, remote in (("192.0.2.1", "192.0.2.9"), ("2001:db8::1", "2001:db8::9")):
        seg = syn_ack(local, remote, 40001, 5555, 7, 0xDEADBEEF)
        sport, dport, seq, ack, off, flags = struct.unpack("!HHIIBB", seg[:14])
        assert (sport, dport, seq, ack, off >> 4, flags) == (40001, 5555, 7, 0xDEADBEEF, 5, 0x12)
        assert _verify(local, remote, seg)
        bad = seg[:4] + b"\0\0\0\1" + seg[8:]
        assert not _verify(local, remote, bad)


def test_rate_limit():
    now = [100.0]
    rl = RateLimit(3, clock=lambda: now[0])
    assert [rl.take() for _ in range(5)] == [True, True, True, False, False]
    now[0] += 0.34
    assert rl.take() and not rl.take()
    now[0] += 10
    assert sum(rl.take() for _ in range(10)) == 3
    assert not RateLimit(0, clock=lambda: now[0]).take()


def test_sources_that_kept_probing_have_a_second_challenge_budget():
    from scanwatch.sentry.respond.challenge import Challenger
    now = [0.0]
    c = Challenger(2, expect=lambda a, k: None, clock=lambda: now[0])
    assert c.limit.take() and c.limit.take() and not c.limit.take()  # a flood spent it
    assert c.priority.take() and c.priority.take() and not c.priority.take()
