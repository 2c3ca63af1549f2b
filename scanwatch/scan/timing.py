"""Timing templates (-T0..-T5) and the round-trip-time estimator.

The template values are nmap's documented ones (nmap(1), "Timing and
Performance"): scan delay, initial/min/max RTT timeout, retransmission cap.
Timeouts follow TCP's estimator: srtt + 4 * rttvar, clamped to [min, max].
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace

MS = 0.001


@dataclass
class Timing:
    level: int = 3
    initial_rtt: float = 1.0
    min_rtt: float = 100 * MS
    max_rtt: float = 10.0
    max_retries: int = 10
    scan_delay: float = 0.0
    max_scan_delay: float = 1.0
    cwnd_init: int = 128
    cwnd_max: int = 8192
    host_timeout: float | None = None
    max_rate: float | None = None


TEMPLATES = {
    0: Timing(0, initial_rtt=300.0, max_rtt=300.0, scan_delay=300.0, cwnd_init=1, cwnd_max=1),
    1: Timing(1, initial_rtt=15.0, scan_delay=15.0, cwnd_init=1, cwnd_max=1),
    2: Timing(2, scan_delay=0.4, cwnd_init=1, cwnd_max=1),
    3: Timing(3),
    4: Timing(4, initial_rtt=0.5, max_rtt=1.25, max_retries=6, max_scan_delay=10 * MS,
              cwnd_init=256, cwnd_max=16384),
    5: Timing(5, initial_rtt=0.25, min_rtt=50 * MS, max_rtt=0.3, max_retries=2,
              max_scan_delay=5 * MS, cwnd_init=512, cwnd_max=32768, host_timeout=900.0),
}


def timing_for(opts) -> Timing:
    """The template of -T, with the explicit options of the command line applied."""
    t = replace(TEMPLATES[opts.timing])
    if opts.max_retries is not None:
        t.max_retries = opts.max_retries
    if opts.min_rtt is not None:
        t.min_rtt = opts.min_rtt
    if opts.max_rtt is not None:
        t.max_rtt = max(opts.max_rtt, t.min_rtt)
    if opts.initial_rtt is not None:
        t.initial_rtt = opts.initial_rtt
    if opts.scan_delay is not None:
        t.scan_delay = opts.scan_delay
        if opts.scan_delay > 0:
            t.cwnd_init = t.cwnd_max = 1
    if opts.host_timeout is not None:
        t.host_timeout = opts.host_timeout
    if opts.max_rate is not None and opts.max_rate > 0:
        t.max_rate = opts.max_rate
    return t


class Rtt:
    """Smoothed RTT and variance (RFC 6298), with nmap's clamps."""

    def __init__(self, timing: Timing) -> None:
        self.timing = timing
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.samples = 0
        self._timeout = timing.initial_rtt

    def sample(self, rtt: float) -> None:
        if rtt < 0:
            return
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            delta = rtt - self.srtt
            self.srtt += delta / 8
            self.rttvar += (abs(delta) - self.rttvar) / 4
        self.samples += 1
        t = self.timing
        self._timeout = min(max(self.srtt + 4 * self.rttvar, t.min_rtt), t.max_rtt)

    @property
    def timeout(self) -> float:
        return self._timeout


class Progress:
    """nmap's `Stats:` line on stderr for scans that run long (every `every` s)."""

    def __init__(self, what: str, total: int, every: float = 10.0, first: float = 10.0,
                 stream=None) -> None:
        self.what, self.total, self.every = what, max(total, 1), every
        self.start = time.monotonic()
        self.next = self.start + first
        self.stream = stream if stream is not None else sys.stderr

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now < self.next:
            return
        self.next = now + self.every
        elapsed = now - self.start
        frac = min(done / self.total, 0.9999)
        left = elapsed / frac - elapsed if frac > 0 else 0
        etc = time.strftime("%H:%M", time.localtime(time.time() + left))
        print(f"Stats: {_hms(elapsed)} elapsed; {self.what} Timing: About {frac * 100:.2f}% "
              f"done; ETC: {etc} ({_hms(left)} remaining)", file=self.stream, flush=True)


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
