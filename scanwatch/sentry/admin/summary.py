"""`scanwatch report`: the records (events.jsonl, the history file, or a plain
PortSentry history file) folded into counts for a text summary and charts.

One streaming pass over each file; memory grows with the distinct hours, sources and
ports (each table capped), never with the number of lines.
"""
import json
import os
import re
import socket
import time
from collections import Counter
from dataclasses import dataclass, field

from ...errors import ConfigError, StateError

MAX_SOURCES = 100_000  # distinct sources remembered for top-N and time-to-block
_SCAN = '"scan"'  # cheap pre-filter; the parsed "type" decides


def parse_since(text):
    """"24h", "90m", "7d", "3600s" or plain seconds -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = str(text).strip().lower()
    num, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        value = float(num)
    except ValueError:
        raise ConfigError(f"--since: {text!r} is not a duration such as 24h, 90m or 7d") from None
    if value <= 0:
        raise ConfigError(f"--since: {text!r} must be more than zero")
    return value * units[unit]


def _iso_hour(epoch):
    return time.strftime("%Y-%m-%dT%H", time.gmtime(epoch))


def _iso_epoch(text):
    """ISO-8601 UTC time of an event -> epoch seconds (fast path for our own format)."""
    import datetime
    return datetime.datetime.fromisoformat(text).timestamp()


@dataclass
class Source:
    reports: int = 0
    evidence: Counter = field(default_factory=Counter)
    blocks: int = 0
    first: float = None
    blocked_at: float = None


@dataclass
class Summary:
    since: float
    until: float
    lines: int = 0          # lines read
    skipped: int = 0        # lines that were not records
    reports: int = 0        # scan reports in the window
    blocks: int = 0         # blocks in the window (events, or history lines)
    per_hour: Counter = field(default_factory=Counter)         # (hour, scan type) -> n
    blocks_hour: Counter = field(default_factory=Counter)      # hour -> n
    ports: Counter = field(default_factory=Counter)            # "22/tcp" -> n
    sources: dict = field(default_factory=dict)                # addr -> Source
    dropped_sources: int = 0

    def source(self, addr):
        src = self.sources.get(addr)
        if src is None:
            if len(self.sources) >= MAX_SOURCES:
                self.dropped_sources += 1
                return None
            src = self.sources[addr] = Source()
        return src

    def top_sources(self, n=10):
        return sorted(self.sources.items(), key=lambda kv: (-kv[1].reports - kv[1].blocks, kv[0]))[:n]

    def time_to_block(self):
        """Seconds from a source's first report to its block, for sources with both."""
        return sorted(s.blocked_at - s.first for s in self.sources.values()
                      if s.first is not None and s.blocked_at is not None
                      and s.blocked_at >= s.first)

    def hours(self):
        start = int(self.since // 3600 * 3600)
        return [_iso_hour(t) for t in range(start, int(self.until) + 1, 3600)]

    def scan_types(self):
        return sorted({k for _, k in self.per_hour})


def read_events(path, summary):
    """Fold events.jsonl into summary; lines that are not JSON objects are counted, not
    fatal (a torn last line after a crash is normal)."""
    lo = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(summary.since))
    decode = json.JSONDecoder().decode  # on str: skips json.loads' encoding sniffing
    try:
        f = open(path, encoding="utf-8", errors="replace")
    except OSError as err:
        raise StateError(f"{path}: cannot read events: {err.strerror}") from err
    lines = skipped = 0
    with f:
        for raw in f:
            lines += 1
            if _SCAN not in raw:
                continue  # expiry, unblock, summary records: not drawn
            try:
                ev = decode(raw)
                when = ev["time"]
                if when[:19] < lo:  # ISO UTC strings order like the times they name
                    continue
            except (ValueError, KeyError, TypeError):
                skipped += 1
                continue
            if ev.get("type") == "scan":
                _fold_event(summary, ev, when)
    summary.lines += lines
    summary.skipped += skipped


def _fold_event(summary, ev, when):
    get = ev.get
    summary.reports += 1
    summary.per_hour[(when[:13], get("scan_type") or "?")] += 1
    port = get("port")
    if port is not None:
        summary.ports[f"{port}/{str(get('proto', '')).lower()}"] += 1
    src = summary.sources.get(get("addr", "?")) or summary.source(get("addr", "?"))
    blocked = get("action") == "block" and not get("dry_run")
    if blocked:
        summary.blocks += 1
        summary.blocks_hour[when[:13]] += 1
    if src is None:
        return
    src.reports += 1
    src.evidence[get("evidence") or get("reason") or "?"] += 1
    if src.first is None or blocked:
        epoch = _iso_epoch(when)
        if src.first is None:
            src.first = epoch
        if blocked:
            src.blocks += 1
            if src.blocked_at is None:
                src.blocked_at = epoch


# PortSentry 2.0 writes LogScanEvent lines, with a date, to its history file
_PS2 = re.compile(r"^(\S+) Scan from: \[([^\]]+)\] \(.*\) protocol: \[(TCP|UDP)\] "
                  r"port: \[(\d+)\] type: \[([^\]]*)\] IP opts: \[[^\]]*\] "
                  r"ignored: \[\w+\] triggered: \[\w+\] noblock: \[\w+\] "
                  r"blocked: \[(\w+)\]$")


def parse_portsentry2_line(line):
    """(epoch, addr, proto, port, scan type, blocked) of a PortSentry 2.0 history line,
    or None."""
    import datetime
    m = _PS2.match(line.rstrip("\r\n"))
    if not m:
        return None
    try:
        when = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    except ValueError:
        return None
    kind = m.group(5)
    kind = ("Unknown Type" if kind.startswith("Unknown Type")
            else kind.removeprefix("TCP ").removesuffix(" scan"))
    return when, m.group(2), m.group(3), int(m.group(4)), kind, m.group(6) == "true"


def read_history(path, summary, count_reports):
    """Fold a history file: ours or PortSentry 1.2's (each line is a block, and counts
    as the report that caused it) or PortSentry 2.0's (each line a report, a block when
    it says blocked: [true]). Read only when there is no events file."""
    from ..respond.records import parse_history_line
    try:
        f = open(path, encoding="utf-8", errors="replace")
    except OSError as err:
        raise StateError(f"{path}: cannot read history: {err.strerror}") from err
    with f:
        for line in f:
            summary.lines += 1
            rec = parse_history_line(line)
            if rec is not None:
                rec = (rec.time, rec.addr, rec.proto, rec.port, rec.proto, True)
            else:
                rec = parse_portsentry2_line(line)
            if rec is None:
                summary.skipped += 1
                continue
            when, addr, proto, port, kind, blocked = rec
            if when < summary.since or not count_reports:
                continue
            hour = _iso_hour(when)
            summary.reports += 1
            summary.per_hour[(hour, kind)] += 1
            summary.ports[f"{port}/{proto.lower()}"] += 1
            if blocked:
                summary.blocks += 1
                summary.blocks_hour[hour] += 1
            src = summary.source(addr)
            if src is not None:
                src.reports += 1
                src.blocks += blocked
                src.evidence["history"] += 1


def load(events=None, history=(), since=86400.0, now=None):
    """The Summary of the last `since` seconds of the given files."""
    now = time.time() if now is None else now
    summary = Summary(since=now - since, until=now)
    if events:
        read_events(events, summary)
    for path in history:
        # Our history repeats the blocks events.jsonl already has: read it only alone.
        read_history(path, summary, count_reports=not events)
    return summary


def service_name(port_proto):
    """"22/tcp" -> "ssh", from the services database (/etc/services); "" when unnamed."""
    port, _, proto = port_proto.partition("/")
    try:
        return socket.getservbyport(int(port), proto)
    except (OSError, ValueError, OverflowError):
        return ""


def record_files(cfg, events=None, history=()):
    """(events file or None, history files) to read: the ones given, which must exist,
    else STATE_DIR/events.jsonl, else HISTORY_FILE (it repeats what events.jsonl has)."""
    if events or history:
        for path in (events, *history):
            if path and not os.path.isfile(path):
                raise StateError(f"{path}: no such file")
        return events, tuple(history)
    default_events = os.path.join(cfg.STATE_DIR, "events.jsonl")
    if os.path.isfile(default_events):
        return default_events, ()
    if cfg.HISTORY_FILE and os.path.isfile(cfg.HISTORY_FILE):
        return None, (cfg.HISTORY_FILE,)
    raise StateError(f"no records: neither {default_events} nor {cfg.HISTORY_FILE} exists "
                     "(see --events/--history)")


def text_summary(s, top=10):
    """The plain-text report printed when no --html/--png is given."""
    span = f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(s.since))} .. " \
           f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(s.until))}"
    out = [f"scanwatch report {span}",
           f"reports: {s.reports}  blocks: {s.blocks}  sources: {len(s.sources)}"
           f"  lines read: {s.lines}" + (f"  unreadable: {s.skipped}" if s.skipped else "")]
    by_type = Counter()
    for (_, kind), n in s.per_hour.items():
        by_type[kind] += n
    if by_type:
        out.append("by type:  " + "  ".join(f"{k} {n}" for k, n in by_type.most_common()))
    if s.sources:
        out.append(f"\n{'SOURCE':<39} {'REPORTS':>8} {'BLOCKS':>7}  EVIDENCE")
        for addr, src in s.top_sources(top):
            ev = ",".join(f"{k}:{n}" for k, n in src.evidence.most_common(3))
            out.append(f"{addr:<39} {src.reports:>8} {src.blocks:>7}  {ev}")
    if s.ports:
        out.append("\nports probed most: " + "  ".join(f"{p} {n}" for p, n in s.ports.most_common(top)))
    ttb = s.time_to_block()
    if ttb:
        out.append(f"time to block: median {ttb[len(ttb) // 2]:.1f}s  max {ttb[-1]:.1f}s "
                   f"({len(ttb)} sources)")
    return "\n".join(out)
