"""How strong is a report's evidence that its source address is real? (issue 13)

Pure: no sockets, no kernel, an injected clock. Each trigger is classified as
  proven      a completed handshake (classic mode, connect scan), or the return-routability
              challenge answered (a RST echoing our cookie);
  decoy       one of a cohort of sources probing in lockstep (same ports, same order, within
              COHORT_WINDOW: nmap -D) that did not answer;
  suspect     its hop count (from the TTL) differs from the one learned from an established
              connection with that address (hop-count filtering, Jin, Wang and Shin 2003);
  unverified  the rest.
A raw-probe trigger waits up to `wait` seconds for the answer (held here, not in the event
thread); the kernel's own block keeps the scan cut off meanwhile.
"""
import ipaddress
import time
from collections import OrderedDict, deque
from dataclasses import replace

PROVEN, DECOY, SUSPECT, UNVERIFIED = "proven", "decoy", "suspect", "unverified"
STRENGTHS = (PROVEN, DECOY, SUSPECT, UNVERIFIED)
RESPONSES = ("full", "kernel", "log")
DEFAULT_RESPONSE = "proven:full,unverified:full,decoy:kernel,suspect:log"
COHORT_PORTS = 8  # the last ports compared between cohort members
# Members kept per lockstep pattern: nmap -D takes a few dozen decoys; a random-source flood
# on one port is a cohort of thousands, and judging each of its reports must stay O(1).
COHORT_MAX = 32


def parse_response(text):
    """EVIDENCE_RESPONSE: "portsentry" or strength:response pairs; ValueError if bad."""
    text = text.strip()
    if text == "portsentry":
        return {s: "full" for s in STRENGTHS}
    out = dict(item.split(":", 1) for item in parse_pairs(text))
    for k, v in out.items():
        if k not in STRENGTHS:
            raise ValueError(f"unknown evidence {k!r} (one of {', '.join(STRENGTHS)})")
        if v not in RESPONSES:
            raise ValueError(f"unknown response {v!r} for {k} (one of {', '.join(RESPONSES)})")
    missing = [s for s in STRENGTHS if s not in out]
    if missing:
        raise ValueError(f"no response for {', '.join(missing)}")
    return out


def parse_pairs(text):
    items = [i.strip() for i in text.split(",") if i.strip()]
    for i in items:
        if ":" not in i:
            raise ValueError(f"{i!r} is not evidence:response")
    return [i.replace(" ", "") for i in items]


def hop_count(ttl):
    """Hops travelled, assuming the sender started at the next usual initial TTL."""
    for init in (32, 64, 128, 255):
        if ttl <= init:
            return init - ttl
    return 0


def _lockstep_key(ev):
    ports = tuple(ev.ports[-COHORT_PORTS:]) or ((ev.proto, ev.port),)
    return ports


class Evidence:
    def __init__(self, wait=1.5, cohort_window=0.25, clock=time.monotonic, limit=10000,
                 v6_prefix=128):
        self.wait, self.cohort_window, self.clock, self.limit = wait, cohort_window, clock, limit
        self.v6_prefix = v6_prefix  # issue 14: addresses of one IPv6 prefix are one source
        self.pending = OrderedDict()   # addr -> (event, deadline)
        self.answered = OrderedDict()  # addr -> time of its answer
        self.patterns = OrderedDict()  # lockstep key -> deque of (mono, addr), recent triggers
        self.counts = dict.fromkeys(STRENGTHS, 0)

    def immediate(self, ev):
        """The strength known without waiting, or None (then admit() the event)."""
        if ev.evidence == "connect":
            return PROVEN
        if ev.hop_mismatch or (ev.peer_hops and hop_count(ev.ttl) != ev.peer_hops - 1):
            return SUSPECT
        return None

    def admit(self, ev, challenged=True):
        """A raw-probe trigger: returns the verdict now, or holds it until answer()/due()."""
        strength = self.immediate(ev)
        if strength is not None:
            return [self._verdict(ev, strength)]
        key = str(ev.addr)
        self._remember(ev)
        if key in self.answered:
            return [self._verdict(ev, PROVEN)]
        if not challenged:
            return [self._decide(ev)]
        self.pending[key] = (ev, self.clock() + self.wait)
        while len(self.pending) > self.limit:
            old, _ = self.pending.popitem(last=False)[1]
            return [self._decide(old)]
        return []

    def is_pending(self, addr):
        return str(addr) in self.pending

    def answer(self, addr):
        """The challenge sent to addr was answered: its held verdict, proven."""
        key = str(addr)
        self.answered[key] = self.clock()
        self.answered.move_to_end(key)
        while len(self.answered) > self.limit:
            self.answered.popitem(last=False)
        held = self.pending.pop(key, None)
        return [self._verdict(held[0], PROVEN)] if held else []

    def due(self):
        """Verdicts whose wait is over (no answer came)."""
        now, out = self.clock(), []
        while self.pending:
            key, (ev, deadline) = next(iter(self.pending.items()))
            if deadline > now:
                break
            del self.pending[key]
            out.append(self._decide(ev))
        return out

    def _decide(self, ev):
        return self._verdict(ev, DECOY if len(self._members(ev, 2)) > 1 else UNVERIFIED)

    def _source(self, addr):
        """The kernel counts IPv6 sources per V6_PREFIX (issue 14): the addresses of one
        prefix report the same ports in the same order because they are one source, not
        a lockstep cohort of decoys."""
        a = ipaddress.ip_address(addr)
        if a.version == 6 and self.v6_prefix < 128:
            return ipaddress.ip_network(f"{a}/{self.v6_prefix}", strict=False)
        return a

    def _members(self, ev, limit=COHORT_MAX):
        me, members = str(ev.addr), [str(ev.addr)]
        mine = self._source(ev.addr)
        for mono, addr in reversed(self.patterns.get(_lockstep_key(ev), ())):
            if abs(mono - ev.mono) <= self.cohort_window and addr != me and \
                    addr not in members and self._source(addr) != mine:
                members.append(addr)
                if len(members) >= limit:
                    break
        return members

    def cohort(self, ev):
        """Addresses that probed the same ports in the same order within cohort_window of
        ev, ev's own included (the last COHORT_MAX); those that answered first."""
        members = self._members(ev)
        return sorted(members, key=lambda a: a not in self.answered) if len(members) > 1 else []

    def _remember(self, ev):
        key = _lockstep_key(ev)
        seen = self.patterns.pop(key, None) or deque(maxlen=COHORT_MAX)
        seen.append((ev.mono, str(ev.addr)))
        self.patterns[key] = seen  # most recently used last
        horizon = ev.mono - max(self.wait, self.cohort_window) * 4
        while self.patterns:
            old = next(iter(self.patterns.values()))
            if old[-1][0] >= horizon and len(self.patterns) <= self.limit:
                break
            self.patterns.popitem(last=False)

    def _verdict(self, ev, strength):
        self.counts[strength] += 1
        cohort = tuple(self.cohort(ev)) if strength in (PROVEN, DECOY) else ()
        return replace(ev, strength=strength, cohort=cohort)

    def real_members(self, cohort):
        return [a for a in cohort if a in self.answered]
