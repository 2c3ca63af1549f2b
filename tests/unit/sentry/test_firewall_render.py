"""Exact nft commands rendered by scanwatch.sentry.respond.firewall (no root, no bindings needed)."""
import ipaddress
import struct

import pytest
from hypothesis import given, settings, strategies as st

from scanwatch.sentry.respond import firewall as fw
from scanwatch.errors import FirewallError


def test_setup_exact():
    assert fw.render_setup("scanwatch") == (
        "add table inet scanwatch\n"
        "add set inet scanwatch blocked4 { type ipv4_addr; flags timeout; }\n"
        "add set inet scanwatch blocked6 { type ipv6_addr; flags timeout; }\n"
        "add set inet scanwatch prefix6 { type ipv6_addr; flags interval, timeout; }\n"
        "add set inet scanwatch spared6 { type ipv6_addr; flags interval; }\n"
        "add chain inet scanwatch input { type filter hook input priority filter - 10; "
        "policy accept; }\n"
        "flush chain inet scanwatch input\n"
        "add rule inet scanwatch input ip saddr @blocked4 counter drop\n"
        "add rule inet scanwatch input ip6 saddr @blocked6 counter drop\n"
        "add rule inet scanwatch input ip6 saddr @prefix6 ip6 saddr != @spared6 counter drop\n"
        "flush set inet scanwatch spared6\n"
    )


def test_prefix_block_goes_to_the_interval_set():
    """issue 14: an IPv6 prefix block, host bits cleared, in prefix6."""
    assert fw.render_add("t", "2001:DB8:1:2::77/64", 60) == (
        "add element inet t prefix6 { 2001:db8:1:2::/64 }\n"
        "delete element inet t prefix6 { 2001:db8:1:2::/64 }\n"
        "add element inet t prefix6 { 2001:db8:1:2::/64 timeout 60s }\n"
    )
    assert fw.render_delete("t", "2001:db8:1:2::/64") == \
        "delete element inet t prefix6 { 2001:db8:1:2::/64 }\n"
    # a /128 is an address; IPv4 networks and ::/0 are never prefix blocks
    assert "blocked6 { 2001:db8::1 }" in fw.render_add("t", "2001:db8::1/128", 0)
    for bad in ("192.0.2.0/24", "::/0", "::ffff:0:0/96", "2001:db8::/64; flush ruleset"):
        with pytest.raises(FirewallError):
            fw.render_add("t", bad, 1)


def test_spared_holds_the_ignore_lists_ipv6_networks_merged():
    nets = [ipaddress.ip_network(n) for n in
            ("127.0.0.0/8", "::1/128", "2001:db8::/32", "2001:db8:1::5/128", "::ffff:0:0/96",
             "fd00::7/128")]
    assert fw.render_spared("t", nets) == (
        "flush set inet t spared6\n"
        "add element inet t spared6 { ::1/128, 2001:db8::/32, fd00::7/128 }\n")
    assert fw.render_setup("t", nets).endswith(fw.render_spared("t", nets))


def test_setup_uses_given_table_everywhere():
    text = fw.render_setup("sw_test1")
    lines = text.splitlines()
    assert len(lines) == 11
    assert all(" inet sw_test1 " in line + " " for line in lines)
    assert "scanwatch" not in text


def test_add_v4_with_timeout():
    assert fw.render_add("scanwatch", "192.0.2.7", 3600) == (
        "add element inet scanwatch blocked4 { 192.0.2.7 }\n"
        "delete element inet scanwatch blocked4 { 192.0.2.7 }\n"
        "add element inet scanwatch blocked4 { 192.0.2.7 timeout 3600s }\n"
    )


def test_add_timeout_zero_means_no_timeout():
    assert fw.render_add("scanwatch", "192.0.2.7", 0) == (
        "add element inet scanwatch blocked4 { 192.0.2.7 }\n"
        "delete element inet scanwatch blocked4 { 192.0.2.7 }\n"
        "add element inet scanwatch blocked4 { 192.0.2.7 }\n"
    )
    assert "timeout" not in fw.render_add("scanwatch", "2001:db8::1", 0.0)


def test_add_v6_canonical_form():
    assert fw.render_add("t", "2001:DB8:0:0::0001", 30) == (
        "add element inet t blocked6 { 2001:db8::1 }\n"
        "delete element inet t blocked6 { 2001:db8::1 }\n"
        "add element inet t blocked6 { 2001:db8::1 timeout 30s }\n"
    )


@pytest.mark.parametrize("addr", ["::ffff:192.0.2.9", "::FFFF:c000:209",
                                  ipaddress.ip_address("::ffff:192.0.2.9")])
def test_v4_mapped_goes_to_blocked4(addr):
    assert fw.render_add("scanwatch", addr, 10) == (
        "add element inet scanwatch blocked4 { 192.0.2.9 }\n"
        "delete element inet scanwatch blocked4 { 192.0.2.9 }\n"
        "add element inet scanwatch blocked4 { 192.0.2.9 timeout 10s }\n"
    )
    assert fw.render_delete("scanwatch", addr) == \
        "delete element inet scanwatch blocked4 { 192.0.2.9 }\n"


def test_v4_compatible_and_nat64_stay_v6_in_hex():
    # Not mapped: these are IPv6 hosts. Rendered in pure hex, which nft parses
    # (nft rejects e.g. 64:ff9b::1.2.3.4 in dotted form).
    assert "blocked6 { ::102:304 timeout 5s }" in fw.render_add("t", "::1.2.3.4", 5)
    assert "blocked6 { 64:ff9b::102:304 }" in fw.render_delete("t", "64:ff9b::1.2.3.4")


def test_address_objects_accepted():
    assert fw.render_delete("t", ipaddress.IPv4Address("10.0.0.1")) == \
        "delete element inet t blocked4 { 10.0.0.1 }\n"


def test_fractional_timeout_in_ms():
    assert "{ 10.0.0.1 timeout 1s500ms }" in fw.render_add("t", "10.0.0.1", 1.5)
    assert "{ 10.0.0.1 timeout 500ms }" in fw.render_add("t", "10.0.0.1", 0.5)
    assert "{ 10.0.0.1 timeout 2s }" in fw.render_add("t", "10.0.0.1", 1.9999)
    # a doubled block's remainder after a restart: nft 1.0.6 refuses "230352205ms"
    assert "{ 10.0.0.1 timeout 230352s205ms }" in fw.render_add("t", "10.0.0.1", 230352.205)
    assert "{ 10.0.0.1 timeout 1ms }" in fw.render_add("t", "10.0.0.1", 0.0001)
    assert "{ 10.0.0.1 timeout 2s }" in fw.render_add("t", "10.0.0.1", 2.0)


def test_delete_exact():
    assert fw.render_delete("scanwatch", "198.51.100.1") == \
        "delete element inet scanwatch blocked4 { 198.51.100.1 }\n"
    assert fw.render_delete("scanwatch", "fe80::1") == \
        "delete element inet scanwatch blocked6 { fe80::1 }\n"


def test_delete_table_is_absent_safe():
    assert fw.render_delete_table("scanwatch") == \
        "add table inet scanwatch\ndelete table inet scanwatch\n"


def test_add_many_one_script_grouped_and_deduplicated():
    items = [("10.0.0.1", 60), ("2001:db8::1", 0), ("10.0.0.2", 0),
             ("::ffff:10.0.0.1", 120),  # same host as 10.0.0.1: last one wins
             ("2001:db8::2", 1.25)]
    assert fw.render_add_many("scanwatch", items) == (
        "add element inet scanwatch blocked4 { 10.0.0.2, 10.0.0.1 }\n"
        "delete element inet scanwatch blocked4 { 10.0.0.2, 10.0.0.1 }\n"
        "add element inet scanwatch blocked4 { 10.0.0.2, 10.0.0.1 timeout 120s }\n"
        "add element inet scanwatch blocked6 { 2001:db8::1, 2001:db8::2 }\n"
        "delete element inet scanwatch blocked6 { 2001:db8::1, 2001:db8::2 }\n"
        "add element inet scanwatch blocked6 { 2001:db8::1, 2001:db8::2 timeout 1s250ms }\n"
    )


def test_add_many_single_family_and_empty():
    assert fw.render_add_many("t", [("10.0.0.1", 5)]) == fw.render_add("t", "10.0.0.1", 5)
    assert fw.render_add_many("t", []) == ""
    assert fw.render_add_many("t", iter([("::1", 0)])).count("blocked6") == 3


def test_add_many_validates_everything_before_rendering():
    with pytest.raises(FirewallError, match="invalid address"):
        fw.render_add_many("t", [("10.0.0.1", 5), ("nope", 5)])
    with pytest.raises(FirewallError, match="invalid timeout"):
        fw.render_add_many("t", [("10.0.0.1", -1)])
    with pytest.raises(FirewallError, match="expected"):
        fw.render_add_many("t", ["10.0.0.1"])


@pytest.mark.parametrize("addr", ["", "1.2.3", "1.2.3.4.5", "256.0.0.1", "10.0.0.0/8",
                                  "fe80::1%eth0", "gggg::1", "1.2.3.4; flush ruleset",
                                  "1.2.3.4 }", 16909060, None, b"1.2.3.4"])
def test_invalid_addresses(addr):
    with pytest.raises(FirewallError):
        fw.render_add("scanwatch", addr, 1)
    with pytest.raises(FirewallError):
        fw.render_delete("scanwatch", addr)


def test_invalid_address_chains_value_error():
    with pytest.raises(FirewallError) as info:
        fw.render_delete("scanwatch", "not-an-ip")
    assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.parametrize("timeout", [-1, -0.5, float("nan"), float("inf"), True, "10", None])
def test_invalid_timeouts(timeout):
    with pytest.raises(FirewallError):
        fw.render_add("scanwatch", "10.0.0.1", timeout)


@pytest.mark.parametrize("table", ["", "1abc", "_x", "a-b", "a b", "inet x", "a;b",
                                   "x" * 33, "ünï", None, 5])
def test_invalid_table_names(table):
    for call in (lambda: fw.render_setup(table), lambda: fw.render_delete_table(table),
                 lambda: fw.render_add(table, "10.0.0.1", 1),
                 lambda: fw.render_delete(table, "10.0.0.1"),
                 lambda: fw.render_add_many(table, []),
                 lambda: fw.Firewall(table)):
        with pytest.raises(FirewallError):
            call()


@pytest.mark.parametrize("table", ["a", "A9", "scan_watch", "x" * 32])
def test_valid_table_names(table):
    assert fw.render_delete_table(table).startswith(f"add table inet {table}\n")


def test_error_text_condensed():
    err = ("Error: Could not process rule: No such file or directory\n"
           "delete element inet t blocked4 { 1.1.1.1 }\n"
           "                                 ^^^^^^^\n")
    assert fw._error_text(err, 1) == ("Error: Could not process rule: No such file or "
                                      "directory (in: delete element inet t blocked4 "
                                      "{ 1.1.1.1 })")
    long_cmd = "add element inet t blocked4 { " + ", ".join(["10.0.0.1"] * 1000) + " }"
    text = fw._error_text(f"Error: boom\n{long_cmd}\n^^^\n", 1)
    assert len(text) < 200 and text.endswith("...)")
    assert fw._error_text("", 1) == "nft failed (rc 1)"
    assert fw._error_text("Error: x\nError: x\n", 1) == "Error: x"


def test_module_imports_without_bindings_and_firewall_is_lazy():
    f = fw.Firewall()
    assert f.table == "scanwatch" and f._nft is None


def _slow_addr(text):
    """What _addr meant before its inet_pton fast path: ipaddress all the way."""
    ip = ipaddress.ip_address(text.strip())
    if ip.version == 6 and ip.scope_id:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ("blocked4" if ip.version == 4 else "blocked6"), str(ip)


_ADDR_TEXT = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda a: a.exploded),                    # long forms
    st.ip_addresses(v=4).map(lambda a: f"::ffff:{a}"),                 # v4-mapped
    st.ip_addresses(v=4).map(lambda a: f"::{a}"),                      # v4-compatible
    st.ip_addresses(v=6).map(lambda a: str(a).upper()),
    st.text(alphabet="0123456789abcdef:.% ", max_size=45),             # near misses
)


@settings(max_examples=3000, deadline=None)
@given(_ADDR_TEXT)
def test_the_fast_address_path_agrees_with_ipaddress(text):
    try:
        want = _slow_addr(text)
    except ValueError:
        want = None
    try:
        got = fw._addr(text)
    except FirewallError:
        got = None
    assert got == want
    if want is not None:
        from scanwatch.sentry.ignore import to_key
        packed = ipaddress.ip_address(want[1]).packed
        assert to_key(text.strip()) == (b"\0" * 10 + b"\xff\xff" + packed if len(packed) == 4
                                else packed)


def _nlmsg(kind, payload=b"\0" * 4):
    length = 16 + len(payload)
    return struct.pack("=IHHII", length, kind, 0, 1, 0) + payload + b"\0" * (-length % 4)


NFT = 10 << 8  # NFNL_SUBSYS_NFTABLES


@pytest.mark.parametrize("kinds, removed", [
    ([NFT | 2], True),                 # NFT_MSG_DELTABLE
    ([NFT | 0, NFT | 5], True),        # NEWTABLE, then DELCHAIN
    ([NFT | 8], True),                 # DELRULE (`nft flush chain`)
    ([NFT | 11], True),                # DELSET
    ([NFT | 12, NFT | 14], False),     # NEWSETELEM, DELSETELEM: blocks come and go
    ([NFT | 0, NFT | 3, NFT | 6], False),
    ([2], False),                      # not an nftables message
])
def test_removal_announced(kinds, removed):
    data = b"".join(_nlmsg(k, b"\0" * (4 + 3 * i)) for i, k in enumerate(kinds))
    assert fw.removal_announced(data) is removed


def test_removal_announced_stops_at_a_broken_length():
    bad = struct.pack("=IHHII", 3, NFT | 0, 0, 1, 0)  # length below the header
    assert not fw.removal_announced(bad + _nlmsg(NFT | 2))
    assert not fw.removal_announced(b"") and not fw.removal_announced(b"\x01" * 10)


def _nfmsg(kind, table):
    name = table.encode() + b"\0"
    attr = struct.pack("=HH", 4 + len(name), 1) + name
    attr += b"\0" * (-len(attr) % 4)
    body = b"\2\0\0\0" + attr  # nfgenmsg, then NFTA_*_TABLE
    return struct.pack("=IHHII", 16 + len(body), 10 << 8 | kind, 0, 0, 0) + body


def test_ruleset_changed_wakes_for_other_tables_only():
    """issue 14: DNAT rules are read again when another table changes; our own blocks
    (element adds to our table) and NEWGEN never wake it."""
    assert fw.ruleset_changed(_nfmsg(6, "nat"), "scanwatch")              # NEWRULE
    assert fw.ruleset_changed(_nfmsg(12, "scanwatch") + _nfmsg(14, "dock"), "scanwatch")
    assert not fw.ruleset_changed(_nfmsg(12, "scanwatch"), "scanwatch")  # our NEWSETELEM
    assert not fw.ruleset_changed(_nfmsg(15, "nat"), "scanwatch")         # NEWGEN
    assert not fw.ruleset_changed(b"\0" * 19, "scanwatch")
