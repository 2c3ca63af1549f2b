"""The only module in scanwatch that talks to nftables.

scanwatch owns one table, `inet <table>` (default "scanwatch"): timeout sets blocked4
and blocked6, the interval set prefix6 of IPv6 prefix blocks (issue 14) with spared6
(ignored IPv6 networks a prefix block must not drop), and an input base chain dropping
their members. Every rendered command
names that table, so nothing else in the ruleset is ever changed. Commands are nft
text run through libnftables: one cmd() is one netlink transaction, which keeps add()
far below a millisecond and makes add_many() atomic. render_* are pure functions, so
the exact commands are unit-tested without root or the bindings.
"""
import errno
import ipaddress
import json
import math
import re
import socket
import struct
import threading

from ...errors import FirewallError
from ..ignore import MAPPED_PREFIX, fast_key, prefix_net

_TABLE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
SET4, SET6 = "blocked4", "blocked6"
PREFIX6, SPARED6 = "prefix6", "spared6"  # issue 14: IPv6 prefix blocks
_ENOENT = "No such file or directory"
_NOELEM = "element does not exist"


def _table(name):
    if not isinstance(name, str) or not _TABLE_RE.fullmatch(name):
        raise FirewallError(f"invalid nftables table name: {name!r}")
    return name


def _addr(addr):
    """(set name, canonical text) for an address. A v4-mapped v6 address is the IPv4
    host as a dual-stack socket reports it; its packets arrive as IPv4, so blocked4."""
    if isinstance(addr, str) and "/" in addr:  # a prefix block: "2001:db8::/64"
        try:
            net = prefix_net(addr)
        except ValueError as err:
            raise FirewallError(f"invalid address or prefix: {addr!r}") from err
        if not isinstance(net, ipaddress.IPv6Network):
            return _addr(str(net))  # a /128
        return PREFIX6, str(net)
    key = fast_key(addr)  # plain address text: the cheap path, same answer
    if key is not None:
        if key[:12] == MAPPED_PREFIX:
            return SET4, socket.inet_ntop(socket.AF_INET, key[12:])
        text = socket.inet_ntop(socket.AF_INET6, key)
        if "." not in text:  # glibc writes ::a.b.c.d for v4-compatible; ipaddress never does
            return SET6, text
    if not isinstance(addr, (str, ipaddress.IPv4Address, ipaddress.IPv6Address)):
        # ip_address() would turn an int into an address; that is never meant here.
        raise FirewallError(f"invalid address: {addr!r}")
    try:
        ip = ipaddress.ip_address(addr.strip() if isinstance(addr, str) else addr)
    except ValueError as err:
        raise FirewallError(f"invalid address: {addr!r}") from err
    if ip.version == 6:
        if ip.scope_id:  # nft has no syntax for zone ids; refuse rather than strip
            raise FirewallError(f"invalid address (zone id): {addr!r}")
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
    # str() of an IPv6Address is always pure hex (never dotted quad), which nft parses.
    return (SET4 if ip.version == 4 else SET6), str(ip)


def _timeout(timeout_s):
    """nft element suffix for a timeout in seconds; 0 means the block never expires."""
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) \
            or not math.isfinite(timeout_s) or timeout_s < 0:
        raise FirewallError(f"invalid timeout: {timeout_s!r}")
    if timeout_s == 0:
        return ""
    if timeout_s == int(timeout_s):
        return f" timeout {int(timeout_s)}s"
    # Sub-second part: nft takes milliseconds; never round a real timeout down to 0.
    # Written as seconds plus milliseconds: nft 1.0.6 refuses a large plain millisecond
    # count ("value too large" for 230352205ms, a doubled block's remainder restored after
    # a restart; found by make e2e) and accepts "230352s205ms".
    s, ms = divmod(max(1, round(timeout_s * 1000)), 1000)
    return f" timeout {s}s{ms}ms" if s and ms else f" timeout {s}s" if s else f" timeout {ms}ms"


def render_spared(table, nets):
    """Replace spared6 with these networks: the IPv6 ones of the ignore list, merged
    (an interval set refuses overlapping elements)."""
    t = _table(table)
    v6 = [n for n in nets if n.version == 6 and not n.network_address.ipv4_mapped]
    elems = ", ".join(str(n) for n in ipaddress.collapse_addresses(v6))
    return f"flush set inet {t} {SPARED6}\n" + (
        f"add element inet {t} {SPARED6} {{ {elems} }}\n" if elems else "")


def render_setup(table, spared=()):
    """Idempotent: `add` never fails on existing objects, and the chain is flushed and
    refilled in the same transaction, so repeated setup never duplicates rules and
    there is no instant without them. Existing set elements (blocks) survive."""
    t = _table(table)
    return (
        f"add table inet {t}\n"
        f"add set inet {t} {SET4} {{ type ipv4_addr; flags timeout; }}\n"
        f"add set inet {t} {SET6} {{ type ipv6_addr; flags timeout; }}\n"
        f"add set inet {t} {PREFIX6} {{ type ipv6_addr; flags interval, timeout; }}\n"
        f"add set inet {t} {SPARED6} {{ type ipv6_addr; flags interval; }}\n"
        # Priority filter - 10: run before the usual filter chains, so an accept
        # elsewhere cannot let a blocked scanner through first.
        f"add chain inet {t} input {{ type filter hook input priority filter - 10; "
        f"policy accept; }}\n"
        f"flush chain inet {t} input\n"
        f"add rule inet {t} input ip saddr @{SET4} counter drop\n"
        f"add rule inet {t} input ip6 saddr @{SET6} counter drop\n"
        # A prefix block spares the ignored addresses inside it (an admin sharing the
        # scanner's /64): one rule, so no accept elsewhere in the chain is needed.
        f"add rule inet {t} input ip6 saddr @{PREFIX6} ip6 saddr != @{SPARED6} counter drop\n"
    ) + render_spared(t, spared)


def _render_elements(t, per_set, fresh=False):
    """per_set: {set: {addr: timeout suffix}}. add/delete/add makes the new timeout
    win over an existing element's (kernels before 6.10 keep the old timeout on a
    plain re-add): the first add makes the delete safe, all in one transaction.
    fresh=True (restoring at start, over elements that can only be older copies of the
    same blocks) writes one plain add: a quarter of the time for 100,000 blocks."""
    lines = []
    for name in (SET4, SET6, PREFIX6):
        elems = per_set.get(name)
        if not elems:
            continue
        timed = ", ".join(a + sfx for a, sfx in elems.items())
        if not fresh:
            bare = ", ".join(elems)
            lines += [f"add element inet {t} {name} {{ {bare} }}",
                      f"delete element inet {t} {name} {{ {bare} }}"]
        lines.append(f"add element inet {t} {name} {{ {timed} }}")
    return "".join(line + "\n" for line in lines)


def render_add(table, addr, timeout_s):
    """Block addr for timeout_s seconds from now (0 = forever), replacing any
    earlier timeout of the same address."""
    t = _table(table)
    name, a = _addr(addr)
    return _render_elements(t, {name: {a: _timeout(timeout_s)}})


def render_add_many(table, items, fresh=False):
    """One transaction for many (addr, timeout_s); a repeated address: last one wins."""
    t = _table(table)
    per_set = {SET4: {}, SET6: {}, PREFIX6: {}}
    for item in items:
        try:
            addr, timeout_s = item
        except (TypeError, ValueError) as err:
            raise FirewallError(f"expected (address, timeout), got {item!r}") from err
        name, a = _addr(addr)
        per_set[name].pop(a, None)  # keep "last wins" also in the rendered order
        per_set[name][a] = _timeout(timeout_s)
    return _render_elements(t, per_set, fresh)


def render_delete(table, addr):
    t = _table(table)
    name, a = _addr(addr)
    return f"delete element inet {t} {name} {{ {a} }}\n"


def render_delete_table(table):
    # nft 1.0.6 has no `destroy`; add-then-delete in one transaction is a no-op
    # error-free delete when the table is absent.
    t = _table(table)
    return f"add table inet {t}\ndelete table inet {t}\n"


def _error_text(err, rc):
    """Condense nft's error output: the `Error:` lines plus a short excerpt of the
    command the first one points at (an add_many line can be megabytes long)."""
    lines = [ln.rstrip() for ln in (err or "").splitlines() if ln.strip()]
    errs = [i for i, ln in enumerate(lines) if ln.startswith("Error")]
    if not errs:
        return (" ".join(lines) or f"nft failed (rc {rc})")[:500]
    text = "; ".join(dict.fromkeys(lines[i] for i in errs))  # one per command: dedupe
    cmd = lines[errs[0] + 1] if errs[0] + 1 < len(lines) else ""
    if cmd.strip(" ^~") and not cmd.startswith("Error"):  # not a caret marker line
        text += f" (in: {cmd if len(cmd) <= 120 else cmd[:117] + '...'})"
    return text


class Firewall:
    """Blocks addresses in scanwatch's own nftables table. Thread-safe."""

    def __init__(self, table="scanwatch"):
        self.table = _table(table)
        self._nft = None
        self._lock = threading.Lock()  # one context = one output buffer and flag set
        self._spared, self._ready, self._spare_failed = (), False, False

    def _ctx(self):
        if self._nft is None:
            try:
                import nftables  # Debian's python3-nftables; optional at import time
                self._nft = nftables.Nftables()
            except (ImportError, OSError) as err:
                raise FirewallError(f"cannot load the nftables bindings: {err}") from err
        return self._nft

    def _run(self, script, json_out=False, terse=False):
        """Run one nft script (one transaction); return its output, parsed if JSON."""
        with self._lock:
            nft = self._ctx()
            try:
                nft.set_json_output(json_out)
                nft.set_terse_output(terse)
                rc, out, err = nft.cmd(script)
            except (OSError, UnicodeError) as exc:
                raise FirewallError(f"nft: {exc}") from exc
            finally:
                nft.set_json_output(False)
                nft.set_terse_output(False)
        if rc != 0:
            raise FirewallError(_error_text(err, rc))
        if not json_out:
            return out
        try:
            return json.loads(out)["nftables"]
        except (ValueError, KeyError, TypeError) as exc:
            raise FirewallError(f"unexpected nft JSON output: {exc}") from exc

    def _set_present(self, name):
        """Terse listing: the table's objects without the (possibly huge) set contents."""
        try:
            objs = self._run(f"list table inet {self.table}", json_out=True, terse=True)
        except FirewallError:
            return False
        return any(o.get("set", {}).get("name") == name for o in objs)

    def _element_op(self, name, script):
        """Run a delete/get of one element: False if only the element is absent
        (ENOENT while the set exists), FirewallError for anything else."""
        try:
            self._run(script)
        except FirewallError as err:
            # nft checks an interval set's elements itself: "element does not exist"
            if (_ENOENT in str(err) or _NOELEM in str(err)) and self._set_present(name):
                return False
            raise
        return True

    def setup(self):
        self._run(render_setup(self.table, self._spared))
        self._ready, self._spare_failed = True, False

    def spare(self, nets):
        """The ignore list's networks: no prefix block drops them. Kept for setup() (and
        a restored table) until the table exists. Never raises: if nft refuses (our table
        deleted meanwhile), intact() says so and the table is rebuilt with them."""
        nets = tuple(nets)
        if nets != self._spared:
            self._spared = nets
            if self._ready:
                try:
                    self._run(render_spared(self.table, nets))
                    self._spare_failed = False
                except FirewallError:
                    self._spare_failed = True

    def add(self, addr, timeout_s):
        """Block addr for timeout_s seconds (0 = until removed); last add wins."""
        self._run(render_add(self.table, addr, timeout_s))

    def add_many(self, items, fresh=False):
        """Block many (addr, timeout_s) pairs in one transaction: all or none."""
        script = render_add_many(self.table, items, fresh)
        if script:
            self._run(script)

    def remove(self, addr):
        """Unblock addr; False if it was not blocked (e.g. its timeout ran out)."""
        name, _ = _addr(addr)
        return self._element_op(name, render_delete(self.table, addr))

    def contains(self, addr):
        name, a = _addr(addr)
        return self._element_op(name, f"get element inet {self.table} {name} {{ {a} }}")

    def _dump(self, name):
        result = {}
        for obj in self._run(f"list set inet {self.table} {name}", json_out=True):
            for elem in obj.get("set", {}).get("elem", ()):
                val, left = elem, None
                if isinstance(elem, dict) and "elem" in elem:
                    elem = elem.get("elem", {})
                    val = elem.get("val")
                    if "timeout" in elem:  # `expires` is omitted once it reaches 0
                        left = float(elem.get("expires", 0))
                try:  # canonical form: nft prints e.g. ::1.2.3.4 for ::102:304
                    if isinstance(val, dict) and isinstance(val.get("prefix"), dict):
                        pre = val["prefix"]
                        result[str(ipaddress.IPv6Network((pre["addr"], pre["len"])))] = left
                        continue
                    result[str(ipaddress.ip_address(val))] = left
                except (ValueError, TypeError, KeyError) as err:
                    raise FirewallError(f"unexpected set element {val!r}") from err
        return result

    def list(self):
        """{address: seconds left (None = no timeout)}. nft's JSON gives whole seconds,
        truncated, so a value is never above the real time left.

        A big set's dump spans several netlink messages, each resumed by position in
        the kernel's hash table; if the table resizes in between (it does for a while
        after bulk changes) elements are silently skipped. So read until two dumps
        agree."""
        result = {}
        for name in (SET4, SET6, PREFIX6):
            cur = self._dump(name)
            for _ in range(4):
                prev, cur = cur, self._dump(name)
                if cur.keys() == prev.keys():
                    break
            else:  # still churning: rather report a stale block than miss one
                cur = {**prev, **cur}
            result.update(cur)
        return result

    def forwarded(self):
        """What the ruleset's DNAT/redirect rules forward (natrules.py, issue 14). The
        matches of iptables-nft's rules are opaque in nft's JSON (-m multiport): when it
        has NAT rules, iptables-nft-save says them in its own words."""
        from . import natrules
        objs = self._run("list ruleset", json_out=True)
        fwd = natrules.forwarded_ports(objs)
        if natrules.has_xt_nat(objs):
            fwd = natrules.merge(fwd, natrules.iptables_forwarded(natrules.iptables_save("nft")))
        return fwd

    def exists(self):
        objs = self._run("list tables inet", json_out=True)
        return any(o.get("table", {}).get("name") == self.table for o in objs)

    def intact(self):
        """Our table is there with its sets and the input chain's three drop rules (a
        terse listing: set contents are not read)."""
        try:
            objs = self._run(f"list table inet {self.table}", json_out=True, terse=True)
        except FirewallError as err:
            if _ENOENT in str(err):
                return False
            raise
        kinds = {}
        for obj in objs:
            for kind, body in obj.items():
                kinds.setdefault(kind, []).append(body)
        sets = {b.get("name") for b in kinds.get("set", ())}
        chains = {b.get("name") for b in kinds.get("chain", ())}
        rules = [b for b in kinds.get("rule", ()) if b.get("chain") == "input"]
        return {SET4, SET6, PREFIX6, SPARED6} <= sets and "input" in chains and \
            len(rules) >= 3 and not self._spare_failed

    def delete_table(self):
        self._run(render_delete_table(self.table))


# nftables' netlink notifications, the messages `nft monitor` prints.
NETLINK_NETFILTER, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP = 12, 270, 1
NFNLGRP_NFTABLES, NFNL_SUBSYS_NFTABLES = 7, 10
# NFT_MSG_DELTABLE, DELCHAIN, DELRULE, DELSET: what takes a block away. Element changes
# (our own adds, timeouts) are not among them, so blocking never wakes the monitor.
_REMOVALS = frozenset(NFNL_SUBSYS_NFTABLES << 8 | m for m in (2, 5, 8, 11))


class RulesetMonitor:
    """A subscription to the ruleset's change notifications in this network namespace:
    wait() says when any table, chain, rule or set was deleted, by anyone (or, with
    another `accept`, when that says a buffer of notifications matters)."""

    def __init__(self, accept=None):
        self.accept = accept or removal_announced
        try:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                      NETLINK_NETFILTER)
            self.sock.bind((0, 0))
            self.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
        except OSError as err:
            raise FirewallError(f"cannot watch the nftables ruleset: {err.strerror}") from err

    def wait(self, timeout):
        """True when a removal was announced, or when notifications were lost (the
        socket overflowed: anything may have happened); False after `timeout` seconds
        or for other changes."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 16)
        except (socket.timeout, InterruptedError):
            return False
        except OSError as err:
            if err.errno == errno.ENOBUFS:
                return True
            raise FirewallError(f"nftables monitor: {err.strerror}") from err
        return self.accept(data)

    def start(self, on_removal, on_error):
        """From a thread of its own until stop(): on_removal() after each announced
        removal; on_error(FirewallError) if the subscription breaks (then it ends)."""
        self._stopped = False
        threading.Thread(target=self._loop, args=(on_removal, on_error), name="nft-monitor",
                         daemon=True).start()

    def stop(self):
        self._stopped = True  # the thread sees it within wait()'s 1 s timeout

    def _loop(self, on_removal, on_error):
        try:
            while not self._stopped:
                try:
                    removed = self.wait(1.0)
                except FirewallError as err:
                    if not self._stopped:
                        on_error(err)
                    return
                if removed and not self._stopped:
                    on_removal()
        finally:
            self.sock.close()


def removal_announced(data):
    """Whether a buffer of netlink messages holds a table/chain/rule/set deletion."""
    off = 0
    while off + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, off)
        if kind in _REMOVALS:
            return True
        if length < 16:
            break
        off += (length + 3) & ~3
    return False


# NFT_MSG_NEW/DEL TABLE, CHAIN, RULE, SET, SETELEM: what can change a NAT rule's meaning.
_CHANGES = frozenset(NFNL_SUBSYS_NFTABLES << 8 | m for m in (0, 2, 3, 5, 6, 8, 9, 11, 12, 14))


def ruleset_changed(data, own_table):
    """Whether a buffer of notifications changes a table other than ours (issue 14: the
    DNAT rules are read again; our own blocks, element adds to our table, never wake it).
    Every such message's first attribute (type 1) is its table's name."""
    off = 0
    while off + 20 <= len(data):
        length, kind = struct.unpack_from("=IH", data, off)
        if length < 16:
            break
        if kind in _CHANGES and _table_attr(data[off + 20:off + length]) != own_table:
            return True
        off += (length + 3) & ~3
    return False


def _table_attr(attrs):
    off = 0
    while off + 4 <= len(attrs):
        alen, atype = struct.unpack_from("=HH", attrs, off)
        if alen < 4:
            break
        if atype & 0x3FFF == 1:
            return attrs[off + 4:off + alen].split(b"\0", 1)[0].decode("utf-8", "replace")
        off += (alen + 3) & ~3
    return None


def nft_items(entries, now):
    """(addr, seconds left) for nft: the remaining time to the millisecond, never a fresh
    BLOCK_TIMEOUT and never rounded up past what was left."""
    return [(e.addr, max(1.0, round(e.left(now), 3)) if e.expires else 0) for e in entries]
