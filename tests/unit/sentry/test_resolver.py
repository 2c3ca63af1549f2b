"""resolver.py: reverse DNS that never stalls, never leaks a hostile name, caches."""
import threading
import time

import pytest

from scanwatch.sentry.respond.resolver import Resolver, clean_name


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class _FakeDNS:
    """Stands in for socket.gethostbyaddr (the system resolver), counting calls."""

    def __init__(self, answers=None, delay=0.0):
        self.answers, self.delay = answers or {}, delay
        self.calls = []

    def __call__(self, addr):
        self.calls.append(addr)
        if self.delay:
            time.sleep(self.delay)
        answer = self.answers.get(addr)
        if answer is None:
            raise OSError(1, "Unknown host")
        return answer, [], [addr]


def test_disabled_returns_the_address_at_once():
    dns = _FakeDNS({"192.0.2.1": "host.example"})
    r = Resolver(False, lookup=dns)
    fut = r.lookup("192.0.2.1")
    assert fut.done() and fut.result() == "192.0.2.1"
    assert r.cached("192.0.2.1") == "192.0.2.1"
    assert dns.calls == []
    r.close()


def test_resolves_and_caches():
    dns = _FakeDNS({"192.0.2.1": "scanner.example.net"})
    r = Resolver(True, lookup=dns)
    assert r.cached("192.0.2.1") is None
    assert r.lookup("192.0.2.1").result(timeout=5) == "scanner.example.net"
    assert r.cached("192.0.2.1") == "scanner.example.net"
    fut = r.lookup("192.0.2.1")
    assert fut.done() and fut.result() == "scanner.example.net"
    assert dns.calls == ["192.0.2.1"]  # the cache hit did not ask again
    r.close()


def test_ipv6_and_mapped_addresses_are_canonical():
    dns = _FakeDNS({"2001:db8::1": "six.example", "192.0.2.4": "four.example"})
    r = Resolver(True, lookup=dns)
    assert r.lookup("2001:DB8:0::1").result(timeout=5) == "six.example"
    assert r.lookup("::ffff:192.0.2.4").result(timeout=5) == "four.example"
    r.close()


def test_non_addresses_are_refused():
    r = Resolver(True, lookup=_FakeDNS())
    for bad in ("evil.example", "192.0.2.1; rm -rf /", "fe80::1%eth0"):
        with pytest.raises(ValueError):
            r.lookup(bad)
    r.close()


def test_slow_resolver_never_delays_past_the_timeout():
    dns = _FakeDNS({"192.0.2.2": "slow.example"}, delay=10)
    r = Resolver(True, timeout=0.5, lookup=dns)
    start = time.monotonic()
    fut = r.lookup("192.0.2.2")
    assert fut.result(timeout=0.5 + 0.2) == "192.0.2.2"
    assert time.monotonic() - start <= 0.5 + 0.2
    # a second caller while the stuck query still runs gets the address at once
    again = r.lookup("192.0.2.2")
    assert again.done() and again.result() == "192.0.2.2"
    assert dns.calls == ["192.0.2.2"]
    r.close()


def test_many_stuck_lookups_each_complete_by_the_timeout():
    dns = _FakeDNS(delay=10)
    r = Resolver(True, timeout=0.3, workers=2, lookup=dns)
    start = time.monotonic()
    futs = [r.lookup(f"192.0.2.{i}") for i in range(1, 30)]
    assert [f.result(timeout=1) for f in futs] == [f"192.0.2.{i}" for i in range(1, 30)]
    assert time.monotonic() - start < 0.3 + 0.5
    r.close()


@pytest.mark.parametrize("name", [
    "evil;rm -rf /",
    "a\nattackalert: Host 1.2.3.4 has been blocked",
    "x" * 300,
    "a b",
    "$(reboot)",
    "host/192.0.2.66",
    "10.0.0.1",  # an address that is not the scanner's
    "",
    "h\u00e9llo.example",
])
def test_hostile_names_become_the_address(name):
    dns = _FakeDNS({"198.51.100.9": name})
    r = Resolver(True, lookup=dns)
    assert r.lookup("198.51.100.9").result(timeout=5) == "198.51.100.9"
    assert r.cached("198.51.100.9") == "198.51.100.9"
    r.close()


def test_clean_name_accepts_ordinary_names():
    assert clean_name("mail-1.Example.ORG.", "192.0.2.1") == "mail-1.Example.ORG"
    assert clean_name(("a_b.example", [], []), "192.0.2.1") == "a_b.example"
    assert clean_name("x" * 253, "192.0.2.1") == "x" * 253
    assert clean_name("x" * 254, "192.0.2.1") == "192.0.2.1"
    assert clean_name(None, "192.0.2.1") == "192.0.2.1"


def test_negative_cache_expires_after_five_minutes():
    clock = _Clock()
    dns = _FakeDNS()
    r = Resolver(True, lookup=dns, clock=clock)
    assert r.lookup("192.0.2.8").result(timeout=5) == "192.0.2.8"
    clock.now += 299
    assert r.lookup("192.0.2.8").result(timeout=5) == "192.0.2.8"
    assert dns.calls == ["192.0.2.8"]
    clock.now += 2
    assert r.cached("192.0.2.8") is None
    dns.answers["192.0.2.8"] = "now.example"
    assert r.lookup("192.0.2.8").result(timeout=5) == "now.example"
    assert dns.calls == ["192.0.2.8", "192.0.2.8"]
    clock.now += 1000  # a positive entry outlives the negative TTL
    assert r.cached("192.0.2.8") == "now.example"
    r.close()


def test_cache_is_lru_bounded():
    dns = _FakeDNS({f"192.0.2.{i}": f"h{i}.example" for i in range(1, 6)})
    r = Resolver(True, cache_size=3, lookup=dns)
    for i in (1, 2, 3):
        r.lookup(f"192.0.2.{i}").result(timeout=5)
    assert r.cached("192.0.2.1") == "h1.example"  # 1 is now the most recent
    r.lookup("192.0.2.4").result(timeout=5)
    assert r.cached("192.0.2.2") is None
    assert [r.cached(f"192.0.2.{i}") for i in (1, 3, 4)] == ["h1.example", "h3.example",
                                                            "h4.example"]
    r.close()


def test_concurrent_lookups_of_one_address_share_one_query():
    gate = threading.Event()

    def dns(addr):
        gate.wait(5)
        return "shared.example", [], [addr]

    calls = []
    r = Resolver(True, timeout=5, lookup=lambda a: (calls.append(a), dns(a))[1])
    futs = [r.lookup("192.0.2.20") for _ in range(5)]
    gate.set()
    assert {f.result(timeout=5) for f in futs} == {"shared.example"}
    assert calls == ["192.0.2.20"]
    r.close()


def test_close_completes_pending_lookups():
    r = Resolver(True, timeout=30, lookup=_FakeDNS(delay=10))
    fut = r.lookup("192.0.2.30")
    r.close()
    assert fut.result(timeout=1) == "192.0.2.30"
    assert r.lookup("192.0.2.31").result(timeout=1) == "192.0.2.31"
