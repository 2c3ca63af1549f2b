"""Fleet sweeps weighed by spoof evidence (issue 15 after issue 13), in the publisher thread.

A forger can send probes "from" an innocent address to a few hosts each; no host sees
enough to judge it, but the fleet's distinct-count would block it everywhere. So:
  - sightings of a source this host judged possibly spoofed (decoy, suspect, while its
    response lasts) or that probes in lockstep with others (a cohort: nmap -D spread thin)
    still count, but are marked in the source's marks hash (HSET host -> strength);
  - a source over FLEET_SWEEP is judged like a local report before anything is blocked:
    a member's suspect mark decides at once; otherwise this member sends it the
    return-routability challenge (the daemon's own challenger) and waits for the answer
    (WAIT, checked every loop of the publisher, never sleeping in it): answered = proven,
    else decoy if marked, else unverified;
  - EVIDENCE_RESPONSE answers that strength: full = blocked here and published (FLEET_SHARE
    permitting; possibly spoofed never is), kernel = XDP-only drop here for SPOOF_TIMEOUT,
    log = a line. A fleet block is never in hosts.deny nor given to KILL_*: those are for
    what a host saw itself.
"""
import struct
import time
import uuid

from ...errors import FleetError, ScanwatchError
from ..kernel import contract as K
from ..kernel.program import mono_now
from ..spoofguard import WAIT
from . import member, message

_U64 = struct.Struct("<Q")
COHORT_NS = 250_000_000  # evidence.py's cohort window (0.25 s)
MARK_MAX = 256           # marks sent per batch: a forged flood of cohorts stays small


class Sweeps:
    def __init__(self, fleet):
        self.f = fleet
        self.d = fleet.d
        self.swept = {}    # addr -> wall time of its verdict: judged once per window
        self.pending = {}  # addr -> (monotonic deadline, count, marks): challenge out
        self.recent = {}   # addr -> (first_ns, ports) of the last walk: cohorts across walks
        self.marks = {}    # addr -> strength: marks not yet sent (kept while Redis is away)
        self.unjudged = {}  # addr -> count: over FLEET_SWEEP, verdict not yet made
        self._walk_from = 0  # CLOCK_MONOTONIC ns of the last walk of the source table
        self.stats = fleet.stats
        self.stats.update(marked=0, spared=0)

    # --- sightings -------------------------------------------------------------------------
    def _walk(self):
        """Rows the kernel touched since the last walk: {addr: (first_ns, ports)}. Only
        those are parsed (a watermark on their last packet); a batch's worth at most (a
        flood of forged sources: the rest are not even parsed)."""
        fresh, room = {}, self.f.sightings.max_sources
        since, started = self._walk_from, time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        last_ns, at = _U64.unpack_from, K.Source.last_ns.offset
        sentry = self.d.sentry
        for key, value in sentry.maps["sources"].items():
            if last_ns(value, at)[0] < since:
                continue
            if len(fresh) >= room:
                self.f.sightings.dropped += 1
                continue
            st = sentry._source_stats(key, value)
            ports = tuple(st.ports) or (("TCP", st.last_port),)  # (proto, port)
            fresh[str(st.addr)] = (int(st.first_mono * 1e9), ports)
        self._walk_from = started
        return fresh

    def _marks(self, fresh):
        """This member's "possibly spoofed" marks for the fresh sources."""
        rows = [(a, t, p) for a, (t, p) in fresh.items()]
        rows += [(a, t, p) for a, (t, p) in self.recent.items() if a not in fresh]
        cohort = member.lockstep(rows, COHORT_NS)
        marks, guard = {}, self.d.guard
        for addr in fresh:
            judged = guard.possibly_spoofed(addr)
            strength = judged if judged in member.RANK else ("decoy" if addr in cohort else None)
            if strength:
                marks[addr] = strength
        self.recent = fresh
        return marks

    def gather(self):
        """New closed-port probes per source since the last walk, into the pending batch
        (merged per source), with this member's marks. Runs while Redis is away too: a
        short outage loses no horizontal scan (the kernel's table would have moved on)."""
        cfg, f = self.d.cfg, self.f
        if not cfg.FLEET_SWEEP:
            return
        fresh = self._walk()
        blocks = self.d.policy.blocks
        fresh = {a: v for a, v in fresh.items()
                 if a not in self.swept and a not in blocks and not f._protected(a)}
        now = time.monotonic()
        for addr, strength in self._marks(fresh).items():
            old = self.marks.get(addr)
            if old is None and len(self.marks) >= MARK_MAX:
                continue
            if old is None or member.RANK[strength] > member.RANK[old]:
                self.marks[addr] = strength
        for addr, (_t, ports) in fresh.items():
            f.sightings.add(addr, ports, now)

    def flush(self):
        """The pending batch to Redis (PFADD, marks, PFCOUNT); verdicts for sources over
        FLEET_SWEEP; verdicts whose challenge is due. On a Redis error the batch, the marks
        and the verdicts not yet judged stay for the next try."""
        cfg, f = self.d.cfg, self.f
        self.due()
        if not cfg.FLEET_SWEEP:
            return
        if f.sightings.pending or self.marks:
            batch = f.sightings.take(time.monotonic(), max_age=cfg.FLEET_WINDOW)
            try:
                counts = f.pub_link.sight(f.keys.sweep, batch, cfg.FLEET_WINDOW, self.marks,
                                          f.keys.spoof, f.me)
            except FleetError:
                f.sightings.restore()
                raise
            f.sightings.sent()
            self.stats["marked"] += len(self.marks)
            self.marks = {}
            for addr, n in counts.items():
                if member.sweep_verdict(n, cfg.FLEET_SWEEP) and addr not in self.swept:
                    self.unjudged[addr] = n
        for addr, n in list(self.unjudged.items()):
            self._judge(addr, n)  # a Redis error leaves the rest for the next try
            del self.unjudged[addr]
            self.swept[addr] = time.time()
            self.stats["sweeps"] += 1
        cutoff = time.time() - cfg.FLEET_WINDOW
        for a in [a for a, t in self.swept.items() if t < cutoff]:
            del self.swept[a]

    # --- verdicts --------------------------------------------------------------------------
    def _judge(self, addr, n):
        f = self.f
        if not f.pub_link.claim(f.keys.verdict(addr), f.me, self.d.cfg.FLEET_WINDOW):
            return  # another member judges it; its entry reaches us on the stream
        marks = set(self.f.pub_link.marks(self.f.keys.spoof(addr)).values())
        guard = self.d.guard
        marks.add(guard.possibly_spoofed(addr))  # judged here since the last walk
        marks.discard(None)
        if "suspect" in marks or guard.challenger is None:
            return self._decide(addr, n, marks, answered=False)
        with self.d.lock:  # the challenger and the evidence table are the daemon's
            sent = guard.challenger.challenge(addr, priority=True) is not None
            answered = addr in guard.evidence.answered
        if answered or not sent:  # already proven, or no challenge possible (rate, route)
            return self._decide(addr, n, marks, answered)
        self.pending[addr] = (time.monotonic() + WAIT, n, marks)

    def due(self):
        """Verdicts whose challenge was answered or whose wait is over."""
        if not self.pending:
            return
        now, guard = time.monotonic(), self.d.guard
        with self.d.lock:
            ready = [(a, v, a in guard.evidence.answered) for a, v in self.pending.items()]
        for addr, (deadline, n, marks), answered in ready:
            if answered or deadline <= now:
                del self.pending[addr]
                self._decide(addr, n, marks, answered)

    def _decide(self, addr, n, marks, answered):
        cfg, f, d = self.d.cfg, self.f, self.d
        if addr in d.policy.blocks:  # blocked meanwhile (a block shared by its reporter)
            return
        strength = member.sweep_strength(marks, answered)
        how = member.response(strength, d.guard.responses)
        d.log.info("attackalert: Host %s touched %d host:port pairs across the fleet within "
                   "%ds: horizontal scan (evidence: %s)", addr, n, cfg.FLEET_WINDOW, strength)
        if how != "full":
            return self.spare(addr, strength, how, "fleet sweep")
        secs = cfg.BLOCK_TIMEOUT or cfg.BLOCK_TIMEOUT_MAX
        fields = message.encode("sweep", addr, host=f.me, left=secs, evidence=strength,
                                scan="sweep", ts=time.time(),
                                uid=f"{f.me}:{uuid.uuid4().hex[:16]}")
        f.seen.add(fields["id"])
        f.apply(message.decode(fields, now=time.time(),
                               max_left=cfg.BLOCK_TIMEOUT_MAX or secs), secs, local=True)
        if member.should_share(strength, f.share):
            f.spool.push(fields)

    def spare(self, addr, strength, how, what):
        """EVIDENCE_RESPONSE's kernel or log answer to a fleet block: never nft, hosts.deny
        or KILL_*; kernel = dropped in XDP only for SPOOF_TIMEOUT."""
        d, cfg = self.d, self.d.cfg
        self.stats["spared"] += 1
        if how == "kernel" and not d.dry_run:
            try:
                d.sentry.block(addr, mono_now() + cfg.SPOOF_TIMEOUT, unreported=True)
            except ScanwatchError as err:
                d.log.error("error: fleet: %s: %s", addr, err)
            d.log.info("attackalert: Host %s (possibly spoofed: %s, %s) dropped in XDP only "
                       "for %ds", addr, what, strength, cfg.SPOOF_TIMEOUT)
        else:
            d.log.info("attackalert: Host %s (possibly spoofed: %s, %s) not blocked", addr,
                       what, strength)
        d.reporter.note({"type": "spoofed", "addr": addr, "strength": strength,
                         "response": how, "fleet": what})
