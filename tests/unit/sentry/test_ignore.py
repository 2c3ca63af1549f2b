"""ignore.py: PortSentry's ignore file, the kernel's 16-byte address form, IgnoreList."""
import ipaddress
from pathlib import Path

import pytest
from hypothesis import assume, given, settings, strategies as st

from scanwatch.sentry import ignore
from scanwatch.errors import ConfigError
from scanwatch.sentry.ignore import IgnoreList, from_key, to_key, to_lpm

ip4 = ipaddress.IPv4Address
ip6 = ipaddress.IPv6Address
net = ipaddress.ip_network
DEBIAN_IGNORE = Path("/etc/portsentry/portsentry.ignore.static")


# --- parse ------------------------------------------------------------------------------

def test_parse_addresses_and_cidrs():
    text = ("192.0.2.1\n"
            "198.51.100.0/24\n"
            "10.0.0.0/255.0.0.0\n"
            "2001:db8::1\n"
            "2001:db8:1::/48\n"
            "::1\n")
    assert ignore.parse(text) == [net("192.0.2.1/32"), net("198.51.100.0/24"), net("10.0.0.0/8"),
                                  net("2001:db8::1/128"), net("2001:db8:1::/48"), net("::1/128")]


def test_parse_host_bits_are_masked():
    assert ignore.parse("192.168.1.77/24\n2001:db8::77/64\n") == [
        net("192.168.1.0/24"), net("2001:db8::/64")]


def test_parse_comments_and_blanks():
    text = ("# Put hosts in here you never want blocked.\n"
            "\n"
            "   # indented comment\n"
            "  192.0.2.5   # the gateway\n"
            "\t2001:db8::5\t\n"
            "192.0.2.6#no space\n")
    assert ignore.parse(text) == [net("192.0.2.5/32"), net("2001:db8::5/128"),
                                  net("192.0.2.6/32")]


def test_portsentry_zero_entry_is_one_address_not_everyone():
    nets = ignore.parse("127.0.0.1/32\n0.0.0.0\n")
    assert nets == [net("127.0.0.1/32"), net("0.0.0.0/32")]
    lst = IgnoreList(nets)
    assert "0.0.0.0" in lst
    assert "192.0.2.1" not in lst
    assert "8.8.8.8" not in lst


def test_parse_empty():
    assert ignore.parse("") == []
    assert ignore.parse("# only a comment\n\n") == []


@pytest.mark.parametrize("bad", ["300.1.1.1", "10.0.0.0/33", "2001:db8::/129", "gateway.example",
                                 "192.0.2.1 192.0.2.2", "192.0.2", "::g", "10.0.0.0/8/8",
                                 "192.0.2.1-192.0.2.9", "-1"])
def test_parse_bad_line_names_line(bad):
    text = f"# header\n192.0.2.1\n\n{bad}  # comment\n10.0.0.1\n"
    with pytest.raises(ConfigError) as exc:
        ignore.parse(text, "/etc/sw.ignore")
    assert exc.value.lineno == 4
    assert exc.value.path == "/etc/sw.ignore"
    assert str(exc.value).startswith("/etc/sw.ignore:4: ")
    assert repr(bad) in str(exc.value)


@pytest.mark.parametrize("sep", ["\x0c", "\x0b", "\x85", "\u2028"])
def test_commented_out_entry_stays_commented(sep):
    assert ignore.parse(f"# old:{sep}10.0.0.0/8\n192.0.2.1\n") == [net("192.0.2.1/32")]


# --- load -------------------------------------------------------------------------------

def test_load_missing_file_is_empty(tmp_path):
    assert ignore.load(str(tmp_path / "absent.ignore")) == []


def test_load_file(tmp_path):
    p = tmp_path / "sw.ignore"
    p.write_text("# x\n192.0.2.0/24\n2001:db8::/32\n")
    assert ignore.load(str(p)) == [net("192.0.2.0/24"), net("2001:db8::/32")]


def test_load_bad_line_names_file(tmp_path):
    p = tmp_path / "sw.ignore"
    p.write_text("192.0.2.1\nnot-an-address\n")
    with pytest.raises(ConfigError) as exc:
        ignore.load(str(p))
    assert str(exc.value).startswith(f"{p}:2: ")


def test_load_directory_is_an_error(tmp_path):
    with pytest.raises(ConfigError) as exc:
        ignore.load(str(tmp_path))
    assert str(exc.value).startswith(f"{tmp_path}: ")


def test_load_binary_is_an_error(tmp_path):
    p = tmp_path / "sw.ignore"
    p.write_bytes(b"192.0.2.1\n\0\n")
    with pytest.raises(ConfigError):
        ignore.load(str(p))


def test_load_under_a_file_is_an_error_not_empty(tmp_path):
    f = tmp_path / "plain"
    f.write_text("")
    # ENOTDIR is not "missing": only FileNotFoundError means an empty list.
    with pytest.raises(ConfigError):
        ignore.load(str(f / "sw.ignore"))


def test_debian_static_ignore_file():
    if not DEBIAN_IGNORE.exists():
        pytest.skip(f"{DEBIAN_IGNORE} not installed")
    nets = ignore.load(str(DEBIAN_IGNORE))
    assert net("127.0.0.1/32") in nets or net("0.0.0.0/32") in nets


# --- kernel key forms -------------------------------------------------------------------

def test_to_key_v4_is_mapped():
    k = to_key("192.0.2.1")
    assert k == bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 1])
    assert len(k) == 16
    assert to_key(ip4("192.0.2.1")) == k
    assert to_key("::ffff:192.0.2.1") == k


def test_to_key_v6():
    assert to_key("2001:db8::1") == bytes.fromhex("20010db8000000000000000000000001")
    assert to_key(ip6("::1")) == bytes(15) + b"\x01"


@pytest.mark.parametrize("addr", ["192.0.2.1", "0.0.0.0", "255.255.255.255", "2001:db8::1",
                                  "::1", "::", "fe80::1"])
def test_key_round_trip(addr):
    assert from_key(to_key(addr)) == ipaddress.ip_address(addr)


def test_from_key_maps_back_to_ipv4():
    assert from_key(bytes(10) + b"\xff\xff" + bytes([10, 1, 2, 3])) == ip4("10.1.2.3")
    assert isinstance(from_key(bytearray(bytes(10) + b"\xff\xff" + bytes(4))), ipaddress.IPv4Address)
    # IPv4-compatible (::a.b.c.d, deprecated) is not mapped: stays IPv6.
    assert from_key(bytes(12) + bytes([10, 1, 2, 3])) == ip6("::a01:203")


@given(st.ip_addresses())
def test_key_round_trip_any(addr):
    back = from_key(to_key(addr))
    if addr.version == 6 and addr.ipv4_mapped is not None:
        assert back == addr.ipv4_mapped
    else:
        assert back == addr
    assert len(to_key(addr)) == 16


@pytest.mark.parametrize("text,plen,key", [
    ("192.0.2.0/24", 120, to_key("192.0.2.0")),
    ("192.0.2.77/24", 120, to_key("192.0.2.0")),
    ("10.0.0.1", 128, to_key("10.0.0.1")),
    ("10.0.0.0/8", 104, to_key("10.0.0.0")),
    ("0.0.0.0/0", 96, to_key("0.0.0.0")),
    ("2001:db8::/32", 32, to_key("2001:db8::")),
    ("2001:db8::1", 128, to_key("2001:db8::1")),
    ("::/0", 0, bytes(16)),
])
def test_to_lpm(text, plen, key):
    assert to_lpm(text) == (plen, key)
    assert to_lpm(net(text, strict=False)) == (plen, key)


def _lpm_matches(entry, addr):
    """What the kernel's LPM trie does: compare the first prefixlen bits of the keys."""
    plen, key = to_lpm(entry)
    a = int.from_bytes(to_key(addr), "big")
    k = int.from_bytes(key, "big")
    shift = 128 - plen
    return (a >> shift) == (k >> shift)


# --- IgnoreList -------------------------------------------------------------------------

@pytest.mark.parametrize("addr", ["127.0.0.1", "127.1.2.3", "127.255.255.254", "::1",
                                  "::ffff:127.0.0.1"])
def test_loopback_always_ignored(addr):
    assert addr in IgnoreList()
    assert ipaddress.ip_address(addr) in IgnoreList()


def test_empty_list_ignores_nobody_else():
    lst = IgnoreList()
    for addr in ["192.0.2.1", "10.0.0.1", "2001:db8::1", "::2", "128.0.0.1"]:
        assert addr not in lst


def test_own_addresses():
    lst = IgnoreList(own_addrs=["192.0.2.10", "2001:db8::10"])
    assert "192.0.2.10" in lst
    assert "2001:db8::10" in lst
    assert "::ffff:192.0.2.10" in lst
    assert "192.0.2.11" not in lst
    assert "2001:db8::11" not in lst


def test_file_networks():
    lst = IgnoreList(ignore.parse("198.51.100.0/24\n2001:db8:5::/48\n"))
    assert "198.51.100.200" in lst
    assert "198.51.101.1" not in lst
    assert "2001:db8:5:ffff::1" in lst
    assert "2001:db8:6::1" not in lst


def test_v4_mapped_form_of_ignored_v4_matches():
    lst = IgnoreList(ignore.parse("198.51.100.0/24\n"), own_addrs=["203.0.113.9"])
    assert "::ffff:198.51.100.7" in lst
    assert ip6("::ffff:198.51.100.7") in lst
    assert ip6("::ffff:203.0.113.9") in lst
    assert "::ffff:198.51.101.7" not in lst


def test_v4_entry_does_not_match_v6_lookalikes():
    lst = IgnoreList(ignore.parse("0.0.0.0/0\n"))
    assert "203.0.113.1" in lst
    assert "2001:db8::1" not in lst
    # IPv4-compatible ::a.b.c.d is a plain IPv6 address, not a mapped one.
    assert "::203.0.113.1" not in lst


def test_networks_lists_everything():
    lst = IgnoreList(ignore.parse("198.51.100.0/24\n"), own_addrs=["192.0.2.10", "2001:db8::10"])
    nets = lst.networks()
    assert net("127.0.0.0/8") in nets
    assert net("::1/128") in nets
    assert net("198.51.100.0/24") in nets
    assert net("192.0.2.10/32") in nets
    assert net("2001:db8::10/128") in nets
    assert len(nets) == 5
    for n in nets:  # the kernel trie accepts every one of them
        plen, key = to_lpm(n)
        assert 0 <= plen <= 128 and len(key) == 16


V4_MAPPED = net("::ffff:0:0/96")


@settings(max_examples=500)
@given(st.ip_addresses(), st.integers(0, 128), st.ip_addresses())
def test_ignore_list_agrees_with_kernel_trie(base, plen, addr):
    """For entries outside the mapped space, Python's membership equals the LPM lookup."""
    entry = net(f"{base}/{min(plen, base.max_prefixlen)}", strict=False)
    assume(not (entry.version == 6 and entry.overlaps(V4_MAPPED)))
    lst = IgnoreList([entry])
    for a in (addr, base, entry.network_address, entry.broadcast_address):
        kernel = any(_lpm_matches(n, a) for n in ("127.0.0.0/8", "::1/128", entry))
        assert (a in lst) == kernel, (entry, a)


@pytest.mark.parametrize("entry,addr", [("::ffff:192.0.2.0/120", "192.0.2.7"),
                                        ("::ffff:192.0.2.0/120", "::ffff:192.0.2.7"),
                                        ("::ffff:0:0/96", "203.0.113.1"),
                                        ("::/0", "203.0.113.1")])
def test_v6_written_entry_covering_mapped_space(entry, addr):
    assert _lpm_matches(entry, addr)  # the kernel ignores this source
    assert addr in IgnoreList(ignore.parse(entry + "\n"))


# --- fuzz -------------------------------------------------------------------------------

@settings(max_examples=400, deadline=None)
@given(st.text())
def test_fuzz_parse(text):
    try:
        nets = ignore.parse(text, "fz")
    except ConfigError as err:
        assert str(err).startswith("fz:")
        assert err.lineno >= 1
    else:
        assert all(isinstance(n, (ipaddress.IPv4Network, ipaddress.IPv6Network)) for n in nets)
        for n in nets:
            to_lpm(n)


LINE = st.one_of(
    st.ip_addresses().map(str),
    st.builds(lambda a, p: f"{a}/{p}", st.ip_addresses(v=4), st.integers(-2, 40)),
    st.builds(lambda a, p: f"{a}/{p}", st.ip_addresses(v=6), st.integers(-2, 140)),
    st.from_regex(r"[0-9a-fA-F:./% #-]{0,24}", fullmatch=True),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(LINE, max_size=10))
def test_fuzz_parse_address_like(lines):
    text = "\n".join(lines)
    try:
        nets = ignore.parse(text)
    except ConfigError as err:
        assert 1 <= err.lineno <= len(lines)
    else:
        assert len(nets) <= len(lines)


def test_covered_matches_the_lpm_trie_semantics():
    from scanwatch.sentry.ignore import covered
    nets = [to_lpm("198.51.100.0/24"), to_lpm("2001:db8::/64")]
    assert covered(to_key("198.51.100.31"), nets)
    assert not covered(to_key("198.51.101.1"), nets)
    assert covered(to_key("2001:db8::5"), nets)
    assert not covered(to_key("2001:db8:0:1::5"), nets)
    assert covered(to_key("10.1.2.3"), [to_lpm("::ffff:0:0/96")])  # all of IPv4
    assert covered(to_key("2001:db8:1::"), [to_lpm("::/0")])
    assert not covered(to_key("10.1.2.3"), [])
