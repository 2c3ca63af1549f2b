"""What one member of the fleet decides. Pure: clocks are passed in, nothing talks to
Redis or the firewall here (wire.py does, link.py carries)."""
from collections import OrderedDict

from .message import EVIDENCE, NEVER_SHARED, Refused, remaining


def parse_share(items):
    """FLEET_SHARE -> the evidence strengths published. The "possibly spoofed" strengths
    are dropped whatever the setting says: a spoofer could otherwise block a fleet's
    friends everywhere at once."""
    return frozenset(e for e in items if e not in NEVER_SHARED)


def should_share(evidence, share):
    return evidence in share and evidence not in NEVER_SHARED


class LineLimiter:
    """One line per refused entry, at most `per_second`; the rest counted and summarised."""

    def __init__(self, per_second=5):
        self.per_second = per_second
        self.window = 0
        self.used = 0
        self.suppressed = 0

    def allow(self, now):
        sec = int(now)
        if sec != self.window:
            self.window, self.used = sec, 0
        if self.used < self.per_second:
            self.used += 1
            return True
        self.suppressed += 1
        return False

    def take_suppressed(self):
        n, self.suppressed = self.suppressed, 0
        return n


class Seen:
    """Entry ids already applied, bounded (oldest forgotten): a replayed stream range after
    a reconnect or a restart applies nothing twice."""

    def __init__(self, size=65536):
        self.size = size
        self.ids = OrderedDict()

    def add(self, uid):
        """True the first time an id is seen."""
        if not uid:
            return True
        if uid in self.ids:
            return False
        self.ids[uid] = None
        if len(self.ids) > self.size:
            self.ids.popitem(last=False)
        return True


SKIP, APPLY, REFUSE = "skip", "apply", "refuse"


def judge(entry, *, me, now, is_protected, is_blocked, seen):
    """(verdict, reason, seconds) for a received block entry."""
    if entry.host == me:
        return SKIP, "ours", 0
    if not seen.add(entry.uid):
        return SKIP, "already applied", 0
    if is_protected(entry.addr):
        return REFUSE, f"{entry.addr} is protected here (own address, gateway, resolver, " \
                       "SSH peer or ignore list)", 0
    if entry.kind != "unblock" and entry.evidence in NEVER_SHARED:
        # no honest member publishes these: a member gone wrong or a forged entry
        return REFUSE, f"{entry.addr} is possibly spoofed ({entry.evidence}): never applied", 0
    if entry.kind == "unblock":
        return APPLY, "", 0
    secs = remaining(entry, now)
    if secs < 1:
        return SKIP, "expired on the way", 0
    if is_blocked(entry.addr):
        return SKIP, "already blocked here", 0
    return APPLY, "", secs


class Sightings:
    """Probes to closed ports and tripwires, gathered per source and sent in batches:
    never one Redis call per packet. A source sends at most `per_source` distinct
    host:port pairs per batch and a batch holds at most `max_sources` sources, so a flood of
    spoofed sources cannot grow a batch (or Redis) without bound.

    While Redis is away the batch stays here (restore() puts back one whose send failed)
    and keeps gathering, merged per source, so an outage costs memory bounded by the same
    two limits (1,024 x 64 pairs, a few MB at worst) and loses no horizontal scan; pairs
    older than the fleet's window when Redis is back are dropped (they would be counted in
    a window they do not belong to)."""

    def __init__(self, host, *, interval=0.2, per_source=64, max_sources=1024):
        self.host = host
        self.interval = interval
        self.per_source = per_source
        self.max_sources = max_sources
        self.pending = {}
        self.first = {}      # addr -> clock of its oldest pending pair
        self.inflight = None
        self.dropped = 0
        self.stale = 0
        self.last_flush = None

    def add(self, addr, ports, now=0.0):
        """ports: ((proto, port), ...) the probe hit."""
        pairs = self.pending.get(addr)
        if pairs is None:
            if len(self.pending) >= self.max_sources:
                self.dropped += 1
                return
            pairs = self.pending[addr] = set()
            self.first[addr] = now
        for proto, port in ports:
            if len(pairs) >= self.per_source:
                break
            pairs.add(f"{self.host}:{proto[0].lower()}{int(port)}")

    def due(self, now):
        if not self.pending:
            return False
        if self.last_flush is None:
            self.last_flush = now
        return now - self.last_flush >= self.interval

    def take(self, now, max_age=None):
        """The batch to send; kept aside until the next take() or restore()."""
        batch, first = self.pending, self.first
        self.pending, self.first, self.last_flush = {}, {}, now
        if max_age is not None:
            old = [a for a, t in first.items() if now - t > max_age]
            self.stale += len(old)
            for a in old:
                del batch[a]
        self.inflight = (batch, first)
        return {a: sorted(p) for a, p in batch.items()}

    def sent(self):
        self.inflight = None

    def queued(self):
        """Sources waiting to be sent, the batch in flight included."""
        if self.inflight is None:
            return len(self.pending)
        return len(self.pending.keys() | self.inflight[0].keys())

    def restore(self):
        """The last batch was not sent (Redis away): back into the pending ones, merged
        per source, within the same bounds."""
        if self.inflight is None:
            return
        batch, first = self.inflight
        self.inflight = None
        for addr, pairs in batch.items():
            mine = self.pending.get(addr)
            if mine is None:
                if len(self.pending) >= self.max_sources:
                    self.dropped += 1
                    continue
                mine = self.pending[addr] = set()
            t = first[addr]
            self.first[addr] = min(t, self.first.get(addr, t))
            for pair in pairs:
                if len(mine) >= self.per_source:
                    break
                mine.add(pair)


def sweep_verdict(count, threshold):
    return threshold > 0 and count >= threshold


# --- spoof evidence for fleet sweeps (issue 15 after issue 13) ----------------------------
RANK = {"suspect": 3, "decoy": 2}  # the stronger "possibly spoofed" mark wins


def lockstep(rows, window_ns, min_ports=1):
    """Sources of one walk of the kernel's source table that probe in lockstep: the same
    ports in the same order (one's recent ports a prefix of the other's: a walk can fall
    between two members' probes of one port), their first probes within window_ns (nmap -D
    sends each probe from every decoy back to back). rows: [(addr, first_ns, ports)].
    O(n log n): sorted per first port, each row compared with its neighbour only, so a
    random-source flood of one port costs no more than its size."""
    groups, out = {}, set()
    for addr, first_ns, ports in rows:
        if len(ports) >= min_ports:
            groups.setdefault(ports[0], []).append((first_ns, addr, tuple(ports)))
    for members in groups.values():
        members.sort()
        for (t0, a0, p0), (t1, a1, p1) in zip(members, members[1:]):
            n = min(len(p0), len(p1))
            if a0 != a1 and t1 - t0 <= window_ns and p0[:n] == p1[:n]:
                out.update((a0, a1))
    return out


def sweep_strength(flags, answered):
    """The evidence of a fleet sweep, as evidence.py judges a local report: a hop-count
    mismatch seen by any member (suspect) outweighs an answer; then the return-routability
    challenge answered (proven); then membership of a lockstep cohort that did not answer
    (decoy); else unverified. flags: the strengths members marked the source with."""
    flags = set(flags)
    if "suspect" in flags:
        return "suspect"
    if answered:
        return "proven"
    if "decoy" in flags:
        return "decoy"
    return "unverified"


def response(evidence, responses):
    """EVIDENCE_RESPONSE's answer (full / kernel / log) to a fleet block of that evidence;
    anything unknown is treated as possibly spoofed (log)."""
    return responses.get(evidence, "log") if evidence in EVIDENCE else "log"


__all__ = ["Refused", "parse_share", "should_share", "LineLimiter", "Seen", "judge",
           "Sightings", "sweep_verdict", "SKIP", "APPLY", "REFUSE", "lockstep",
           "sweep_strength", "response", "RANK"]
