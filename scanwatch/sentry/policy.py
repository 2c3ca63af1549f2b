"""Detection policy: pure Python, no bcc, no nftables, an injected clock.

The XDP program counts and may cut a scanner off on its own; this module decides what
each report means under PortSentry's rules (SCAN_TRIGGER, BLOCK_TCP/BLOCK_UDP, the
ignore list) and keeps the table of blocks with their expiry.
"""
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from .ignore import canonical, is_prefix, subject
from .model import BlockEntry, ScanEvent

QUIET, IGNORE, ALERT, BLOCK, RUN, ALREADY = "quiet", "ignore", "alert", "block", "run", "already"


@dataclass(frozen=True)
class Decision:
    action: str        # one of QUIET IGNORE ALERT BLOCK RUN ALREADY
    event: ScanEvent
    mode: str          # "stcp" | "sudp"
    block: BlockEntry | None = None


class SourceTable:
    """Bounded per-source summary for status: the oldest source is forgotten first."""

    def __init__(self, limit=10000, ports_kept=64):
        self.limit, self.ports_kept = limit, ports_kept
        self.rows = OrderedDict()

    def note(self, ev, now):
        key = str(ev.addr)
        row = self.rows.pop(key, None) or {"first": now, "kinds": {}, "ports": []}
        row["last"] = now
        if ev.reason != "sweep":
            row["kinds"][ev.kind] = row["kinds"].get(ev.kind, 0) + 1
        ports = row["ports"]
        for proto, port in ev.ports + ((ev.proto, ev.port),):
            item = f"{port}/{proto.lower()}"
            if item not in ports and len(ports) < self.ports_kept:
                ports.append(item)
        self.rows[key] = row
        while len(self.rows) > self.limit:
            self.rows.popitem(last=False)
        return row


class Policy:
    def __init__(self, *, scan_trigger=0, block_levels=None, block_timeout=3600,
                 modes=None, is_ignored=lambda addr: False, clock=time.time,
                 timeout_max=7 * 86400, repeat_window=86400, max_offenders=100000,
                 v6_prefix=128):
        self.scan_trigger = scan_trigger
        self.block_levels = block_levels or {"TCP": 1, "UDP": 1}
        self.block_timeout = block_timeout
        self.timeout_max = timeout_max
        self.repeat_window = repeat_window
        self.offenders = OrderedDict()  # addr -> (offences, when the last block ended)
        self.max_offenders = max_offenders
        self.modes = modes or {"TCP": "stcp", "UDP": "sudp"}
        self.is_ignored = is_ignored
        self.clock = clock
        self.blocks = {}
        self.sources = SourceTable()
        # issue 14: an IPv6 source is blocked per prefix, as the kernel counts it
        self.v6_prefix = v6_prefix

    def on_event(self, ev):
        now = self.clock()
        mode = self.modes.get(ev.proto, "")
        if self.is_ignored(ev.addr):
            return Decision(IGNORE, ev, mode)
        row = self.sources.note(ev, now)
        # PortSentry semantics: SCAN_TRIGGER hits are allowed, the next one reacts.
        if ev.reason == "hit" and ev.tripwire <= self.scan_trigger:
            return Decision(QUIET, ev, mode)
        key = subject(ev.addr, self.v6_prefix)
        level = self.block_levels.get(ev.proto, 1)
        current = self.blocks.get(key)
        if current is not None and (current.expires is None or current.expires > now):
            # A probe dropped by the block (EV_PERSIST) was never seen by any sentry.
            if not mode or ev.reason == "persist" or mode in (current.modes or [current.mode]):
                return Decision(ALREADY, ev, mode, current)
            return self._other_protocol(current, ev, mode, level, now)
        # Like PortSentry, a host is recorded at every level (0 = log only, 2 = KILL_RUN_CMD
        # only), so it is reported once per block period and protocol, not once per packet.
        offences = self._offence(key, now)
        duration = self.duration(offences)
        entry = BlockEntry(
            addr=key, since=now, offences=offences,
            expires=now + duration if duration else None,
            scan_type=ev.kind, proto=ev.proto, port=ev.port, mode=mode,
            reason="sweep" if ev.reason == "sweep" else "tripwire",
            ports=list(row["ports"]), evidence=ev.evidence, level=level, modes=[mode],
            strength=ev.strength)
        self.blocks[key] = entry
        return Decision({0: ALERT, 1: BLOCK, 2: RUN}[level], ev, mode, entry)

    def _other_protocol(self, entry, ev, mode, level, now):
        """A host caught by one protocol's sentry scans the other: PortSentry's TCP and UDP
        processes are separate, so it is reported and recorded again, under this mode. It
        is no new offence; a block only ever grows (logged -> blocked), never shrinks."""
        entry.modes = (entry.modes or [entry.mode]) + [mode]
        if level == 1 and entry.level != 1:
            duration = self.duration(entry.offences)
            entry.level, entry.since = 1, now
            entry.expires = now + duration if duration else None
        elif level == 2 and entry.level == 0:
            entry.level = 2
        return Decision({0: ALERT, 1: BLOCK, 2: RUN}[level], ev, mode, entry)

    def duration(self, offences):
        """Block length for the n-th offence: BLOCK_TIMEOUT doubled per repeat within
        REPEAT_WINDOW, up to BLOCK_TIMEOUT_MAX (fail2ban's bantime.increment); 0 = forever."""
        if not self.block_timeout:
            return 0
        return min(self.block_timeout * 2 ** min(offences - 1, 40),
                   max(self.timeout_max, self.block_timeout))

    def _offence(self, key, now):
        count, ended = self.offenders.pop(key, (0, None))
        if ended is None or now - ended > self.repeat_window:
            count = 0
        count += 1
        self.offenders[key] = (count, now)
        while len(self.offenders) > self.max_offenders:
            self.offenders.popitem(last=False)
        return count

    def expire(self):
        """Remove and return the blocks whose time is up."""
        now = self.clock()
        gone = [b for b in self.blocks.values() if b.expires is not None and b.expires <= now]
        for b in gone:
            del self.blocks[b.addr]
            # The repeat window counts from the end of the last block.
            count, _ = self.offenders.pop(b.addr, (b.offences, None))
            self.offenders[b.addr] = (count, now)
        return gone

    def key_of(self, addr):
        """The block key an admin's address or prefix names: the address's own block,
        else the prefix block that covers it (issue 14)."""
        key = str(canonical(addr))
        if key not in self.blocks and not is_prefix(key):
            wider = subject(key, self.v6_prefix)
            if wider in self.blocks:
                return wider
        return key

    def unblock(self, addr):
        return self.blocks.pop(self.key_of(addr), None)

    def withdraw(self, addr):
        """Take back a block that was decided but not carried out (over BLOCK_RATE): if
        the source comes back it is judged afresh, and this time is not counted as a
        repeat offence (its repeat window then runs from this decision)."""
        key = str(canonical(addr))
        count, ended = self.offenders.pop(key, (1, None))
        if count > 1:
            self.offenders[key] = (count - 1, ended)
        return self.blocks.pop(key, None)


    def restore(self, entries):
        """Take back blocks saved by an earlier run; returns those still in force."""
        now = self.clock()
        alive = [e for e in entries if e.expires is None or e.expires > now]
        for e in alive:
            self.blocks[e.addr] = e
            self.offenders[e.addr] = (e.offences, e.expires or now)
        return alive


def proven(ev):
    """True when the event shows a real source, not a spoofed one: a completed TCP
    handshake, or the return-routability challenge answered (evidence.py). Probing on
    after the block (EV_PERSIST) is no proof (issue 14): a forger can send as many packets
    as it likes under an address it does not own; only an answer needs the address."""
    return ev.evidence == "connect" or ev.strength == "proven"


class BlockBudget:
    """BLOCK_RATE: full blocks (nftables, hosts.deny, log lines, commands) per minute.
    Proven sources (see proven()) may also spend a second budget of the same size, so
    a spoofed flood that spends the first cannot hide a real scanner behind it."""

    def __init__(self, per_minute, clock=time.monotonic):
        self.per_minute = per_minute
        self.clock = clock
        self.spent = (deque(), deque())  # times of blocks: anyone's, proven sources'

    def take(self, proven_source):
        now = self.clock()
        for spent in self.spent[:2 if proven_source else 1]:
            while spent and now - spent[0] > 60:
                spent.popleft()
            if len(spent) < self.per_minute:
                spent.append(now)
                return True
        return False
