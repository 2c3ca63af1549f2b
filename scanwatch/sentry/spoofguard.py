"""Spoof-aware response (issue 13): the wiring between the kernel's reports, the
return-routability challenge, evidence.py and the daemon's response.

A raw-probe report (trigger or sweep) is held while its challenge is out (up to WAIT
seconds, here, not in the event thread: the kernel's own block keeps the scan cut off
meanwhile); then EVIDENCE_RESPONSE maps its strength to a response:
  full    the daemon's usual path (nft, hosts.deny, KILL_*), via Daemon._handle
  kernel  dropped in XDP only for SPOOF_TIMEOUT, logged "possibly spoofed"
  log     not blocked (any kernel block lifted), logged "possibly spoofed"
"""
from dataclasses import replace

from ..errors import ScanwatchError
from .evidence import DECOY, SUSPECT, UNVERIFIED, Evidence, hop_count, parse_response
from . import netinfo
from .kernel.program import mono_now
from .respond.challenge import Challenger

WAIT = 1.5  # seconds a report waits for its challenge's answer
REPORTS = ("trigger", "sweep")
QUEUED_MAX = 64  # events kept per held source (LOG_RATE bounds what is logged anyway)


class SpoofGuard:
    def __init__(self, daemon):
        self.d = daemon
        self.evidence = Evidence(wait=WAIT, clock=mono_now, v6_prefix=daemon.cfg.V6_PREFIX)
        self.challenger = None
        self.kernel_only = {}  # addr -> CLOCK_MONOTONIC end of its XDP-only drop
        self.spared = {}       # addr -> end: logged "possibly spoofed", not blocked (log)
        self.queued = {}       # addr -> its events that came while its report was held
        self.judged = {}       # addr -> strength, while kernel_only or spared (the fleet's marks)
        self.answers = 0
        self.configure()

    def configure(self):
        cfg = self.d.cfg
        self.portsentry = cfg.EVIDENCE_RESPONSE.strip() == "portsentry"
        self.responses = parse_response(cfg.EVIDENCE_RESPONSE)
        if self.challenger is not None:
            self.challenger.set_rate(cfg.CHALLENGE_RATE)

    def start(self):
        """After the kernel is loaded: the challenger writes expected cookies into it."""
        if not self.portsentry:
            self.challenger = Challenger(self.d.cfg.CHALLENGE_RATE, self.d.sentry.set_cookie)

    def close(self):
        if self.challenger is not None:
            self.challenger.close()

    # --- called under the daemon's lock ---------------------------------------------------
    def on_event(self, ev):
        d, key = self.d, str(ev.addr)
        if self.evidence.is_pending(key):
            # Held with its report (log-only mode logs every probe, as PortSentry does);
            # replayed after a full response, dropped after any other.
            q = self.queued.setdefault(key, [])
            if len(q) < QUEUED_MAX:
                q.append(ev)
            return
        for held in (self.kernel_only, self.spared):
            end = held.get(key)
            if end is not None:
                if end > mono_now():
                    return  # judged possibly spoofed: nothing it sends proves it real
                del held[key]
                self.judged.pop(key, None)
        strength = self.evidence.immediate(ev)
        if strength == SUSPECT and not self.connected(ev.addr):
            # The hop count was learned from a connection now closed: judge it as any other.
            strength, ev = None, replace(ev, hop_mismatch=False, peer_hops=0)
        if self.portsentry:
            return d._handle(replace(ev, strength=strength or UNVERIFIED))
        # A hit past SCAN_TRIGGER from a source the policy has not blocked is a new report
        # too (the kernel flags a suspect's trigger without blocking it; its hits follow).
        report = ev.reason in REPORTS + ("persist",) or (
            ev.reason == "hit" and ev.tripwire > d.policy.scan_trigger)
        if ev.evidence == "connect" or not report or d.is_ignored(ev.addr) \
                or key in d.policy.blocks:
            # Not a new report (or already answered for): the policy's usual path.
            return d._handle(replace(ev, strength=strength or ""))
        challenged = strength is None and self.challenger is not None \
            and self.challenger.challenge(ev.addr, ev.reason == "persist") is not None
        for verdict in self.evidence.admit(ev, challenged):
            self.respond(verdict)

    @staticmethod
    def connected(addr):
        """An established TCP connection with addr right now (a walk of the TCP table,
        only for the rare trigger whose hop count differs)."""
        return addr in netinfo.ssh_peers(True)

    def on_answer(self, addr, _mono, _seq):
        with self.d.lock:
            self.answers += 1
            self._respond_all(self.evidence.answer(addr))

    def tick(self):
        with self.d.lock:
            self._respond_all(self.evidence.due())
            now = mono_now()
            for held in (self.kernel_only, self.spared):
                for key in [k for k, end in held.items() if end <= now]:
                    del held[key]
                    self.judged.pop(key, None)

    def _respond_all(self, verdicts):
        for verdict in verdicts:
            try:
                self.respond(verdict)
            except ScanwatchError as err:  # a failed output must not stop the others
                self.d.log.error("error: %s", err)

    # --- responses ------------------------------------------------------------------------
    def respond(self, ev):
        response = self.responses[ev.strength]
        d, addr = self.d, str(ev.addr)
        later = self.queued.pop(addr, ())
        if response == "full":
            d._handle(ev)
            for q in later:
                d._handle(replace(q, strength=ev.strength))
            return
        cfg = d.cfg
        why = self.why(ev)
        self.judged[addr] = ev.strength
        if response == "kernel" and not d.dry_run:
            end = mono_now() + cfg.SPOOF_TIMEOUT
            d.sentry.block(addr, end, unreported=True)
            self.kernel_only[addr] = end
            d.log.info("attackalert: Host %s (possibly spoofed: %s) dropped in XDP only for %ds",
                       addr, why, cfg.SPOOF_TIMEOUT)
        else:
            if ev.kernel_blocked:
                d.sentry.unblock(addr)
            self.spared[addr] = mono_now() + cfg.SPOOF_TIMEOUT
            d.log.info("attackalert: Host %s (possibly spoofed: %s) not blocked", addr, why)
        d.reporter.note({"type": "spoofed", "addr": addr, "strength": ev.strength,
                         "response": response, "proto": ev.proto, "port": ev.port,
                         "scan_type": ev.kind, "reason": ev.reason, "ttl": ev.ttl,
                         "cohort": list(ev.cohort), "real": self.real(ev)})

    def possibly_spoofed(self, addr):
        """The strength (decoy, suspect) this host judged addr by, while its response
        lasts; None otherwise. For the fleet: such a source's sightings are marked."""
        return self.judged.get(addr)

    def real(self, ev):
        return self.evidence.real_members(ev.cohort)

    def why(self, ev):
        if ev.strength == DECOY:
            real = self.real(ev)
            return (f"decoy in a cohort of {len(ev.cohort)} probing in lockstep"
                    + (f"; the real scanner is {', '.join(real)}" if real else
                       "; no member answered the challenge"))
        if ev.strength == SUSPECT:
            return (f"hop count {hop_count(ev.ttl)} differs from {ev.peer_hops - 1} "
                    "learned from an established connection" if ev.peer_hops else
                    "hop count differs from its connection's")
        return ev.strength

    def figures(self):
        """For status and /metrics."""
        return {"evidence": dict(self.evidence.counts), "challenges_sent":
                self.challenger.sent if self.challenger else 0,
                "challenges_limited": self.challenger.limited if self.challenger else 0,
                "challenges_answered": self.answers, "pending": len(self.evidence.pending),
                "kernel_only": len(self.kernel_only),
                "spared": len(self.spared)}
