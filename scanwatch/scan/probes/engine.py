"""The probe scheduler shared by the raw TCP and UDP scans.

Each port gets a first probe; a probe with no answer after the RTT-based
timeout is retransmitted, and a port is given up ("no response") only after
nmap's retransmission allowance: two probes while nothing is lost, more when a
retransmission is the one that gets answered (evidence of drops), capped by
--max-retries. Answers to retransmissions also halve the congestion window,
which otherwise grows by one per answer (slow start) up to the template's cap.

Subclasses send batches and drain answers:
    send(batch: list[(port, tryno)])          one probe each, as fast as it can
    drain() -> list[(port, tryno, result)]     tryno -1 when the answer does not tell
    fds() -> list of file descriptors to wait on
and set `no_response` (the result of a port that never answered).
A result is a (state, reason, ttl) tuple.
"""

from __future__ import annotations

import select
import time
from array import array
from collections import deque

from ..timing import Progress, Rtt, Timing

BATCH = 256


class Engine:
    no_response: tuple = ("filtered", "no-response", 0)
    what = "Scan"

    def __init__(self, ports: list[int], timing: Timing, progress: bool = True) -> None:
        self.ports = list(ports)
        self.timing = timing
        self.rtt = Rtt(timing)
        self.results: dict[int, tuple] = {}
        self.tries = bytearray(65536)          # probes sent per port
        self.inflight = bytearray(65536)       # latest probe still awaited
        self.sent_at = array("d", bytes(8 * 65536))
        self.max_ok_try = 0                    # highest try number that got an answer
        self.cwnd = float(timing.cwnd_init)
        self.outstanding = 0
        self.drops = 0
        self.packets_sent = 0
        self.progress = Progress(self.what, len(self.ports)) if progress else None
        self._poll = None

    # -- hooks ---------------------------------------------------------------
    def send(self, batch: list[tuple[int, int]]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def drain(self) -> list[tuple[int, int, tuple]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def fds(self) -> list[int]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- policy ----------------------------------------------------------------
    def allowed_tries(self) -> int:
        cap = self.timing.max_retries
        return 1 + min(cap, max(1, self.max_ok_try + 1))

    def record(self, port: int, tryno: int, result: tuple, now: float) -> None:
        """Apply one answer."""
        self.apply([(port, tryno, result)], now)

    def apply(self, answers: list[tuple[int, int, tuple]], now: float) -> None:
        """Apply answers: resolve ports, one RTT sample, congestion window."""
        if not answers:
            return
        results, inflight, tries = self.results, self.inflight, self.tries
        outstanding, cwnd, cwnd_max = self.outstanding, self.cwnd, self.timing.cwnd_max
        sampled = False
        for port, tryno, result in answers:
            if inflight[port]:
                inflight[port] = 0
                outstanding -= 1
                if not sampled and (tryno < 0 or tryno == tries[port] - 1):
                    self.rtt.sample(now - self.sent_at[port])
                    sampled = True
            if tryno > 0:
                if tryno > self.max_ok_try:
                    self.max_ok_try = tryno
                self.drops += 1
                cwnd = max(cwnd / 2, 8.0)
            elif cwnd < cwnd_max:
                cwnd += 1
            old = results.get(port)
            if old is None or old[1] == "no-response":
                results[port] = result
        self.outstanding, self.cwnd = outstanding, cwnd

    # -- the loop ----------------------------------------------------------------
    def run(self) -> dict[int, tuple]:
        t = self.timing
        todo = deque(self.ports)
        resend: deque[int] = deque()
        deadlines: deque[tuple[float, int, int]] = deque()   # (sent at, port, try)
        results, tries, inflight, sent_at = self.results, self.tries, self.inflight, self.sent_at
        self._poll = select.poll()
        for fd in self.fds():
            self._poll.register(fd, select.POLLIN)
        delay = t.scan_delay
        min_gap = 1.0 / t.max_rate if t.max_rate else 0.0
        gap = max(delay, min_gap)
        next_send = 0.0
        started = time.monotonic()
        total = len(set(self.ports))
        while len(results) < total:
            now = time.monotonic()
            if t.host_timeout and now - started > t.host_timeout:
                break
            allowed = self.allowed_tries()
            expire = now - self.rtt.timeout
            while deadlines and deadlines[0][0] <= expire:
                _, port, tryno = deadlines.popleft()
                if port in results or tries[port] != tryno + 1 or not inflight[port]:
                    continue
                inflight[port] = 0
                self.outstanding -= 1
                if tries[port] < allowed:
                    resend.append(port)
                else:
                    results[port] = self.no_response
            room = int(self.cwnd) - self.outstanding
            sent = 0
            if room > 0 and (resend or todo) and now >= next_send:
                n = min(room, BATCH, 1 if gap else BATCH)
                batch = []
                while len(batch) < n and (resend or todo):
                    port = resend.popleft() if resend else todo.popleft()
                    if port in results:
                        continue
                    tryno = tries[port]
                    tries[port] = tryno + 1
                    inflight[port] = 1
                    sent_at[port] = now
                    deadlines.append((now, port, tryno))
                    batch.append((port, tryno))
                if batch:
                    self.outstanding += len(batch)
                    self.packets_sent += len(batch)
                    self.send(batch)
                    sent = len(batch)
                    if gap:
                        next_send = now + gap
            self.apply(self.drain(), time.monotonic())
            if self.progress:
                self.progress.update(len(results))
            if not sent:
                wake = deadlines[0][0] + self.rtt.timeout if deadlines else now + 0.05
                if gap and (todo or resend):
                    wake = min(wake, next_send)
                wait = max(0.0, min(wake - time.monotonic(), 0.5))
                if self._poll.poll(wait * 1000):
                    self.apply(self.drain(), time.monotonic())
        for port in self.ports:
            results.setdefault(port, self.no_response)
        return results

    def wait_answers(self, seconds: float) -> None:
        """Collect answers for a while (used after the main loop by subclasses)."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            if self._poll.poll(left * 1000):
                self.apply(self.drain(), time.monotonic())
