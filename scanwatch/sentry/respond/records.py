"""PortSentry-format log lines, history/blocked files and the JSON event log.

The strings below reproduce PortSentry 1.2 (portsentry.c, portsentry_io.c) byte for
byte, so fail2ban's filter.d/portsentry.conf, logwatch and admins' greps keep working.
Two deliberate hardenings: addresses are validated and printed canonically, and host
names (from reverse DNS, attacker-controlled) lose every character that could forge a
second record or shift fields.
"""
import datetime
import ipaddress
import json
import logging
import logging.handlers
import os
import re
import stat
import sys
import time
from typing import NamedTuple

from ..defaults import BY_NAME
from ...errors import StateError
from ..state import open_nofollow

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
MODES = ("tcp", "udp", "stcp", "sudp", "atcp", "audp")
_HOST_BAD = re.compile(r"[^A-Za-z0-9._:-]")
# PortSentry 1.2's ReportPacketType; NULL really has a leading space in 1.2, giving
# "attackalert:  TCP NULL scan" (two spaces). 2.0 dropped the space.
_TYPES_12 = {"SYN/Normal": "TCP SYN/Normal scan", "FIN": "TCP FIN scan",
             "NULL": " TCP NULL scan", "XMAS": "TCP XMAS scan",
             # PortSentry has no ACK-family types; these follow its wording
             "ACK/Window": "TCP ACK/Window scan", "Maimon": "TCP Maimon scan",
             "Tiny Fragment": "TCP tiny fragment scan",
             # issue 13: counted and blocked as TCP probes (BLOCK_TCP), named for what they are
             "SCTP INIT": "SCTP INIT scan", "SCTP COOKIE-ECHO": "SCTP COOKIE-ECHO scan",
             "IP Protocol": "IP Protocol scan"}


def _addr(addr):
    """Validated, canonical address text. Scope ids are refused: `%...` is free text."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        raise ValueError(f"{addr!r} is not an IP address") from None
    if getattr(ip, "scope_id", None):
        raise ValueError(f"{addr!r}: scoped IPv6 addresses are not accepted")
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped  # dual-stack sources are IPv4 hosts; log them as such
    return str(ip)


def _host(host, addr):
    """Host name for a log line: DNS-safe characters only, `/`, space and newline never."""
    if not host:
        return addr
    return _HOST_BAD.sub("?", str(host))[:255]


def _port(port):
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"{port!r} is not a port number")
    return port


def _proto(proto):
    if str(proto).upper() not in ("TCP", "UDP"):
        raise ValueError(f"{proto!r} is not TCP or UDP")
    return str(proto).upper()


def _printable(text):  # config-derived text in a log line: never a second line
    return "".join(c if c.isprintable() else "?" for c in str(text))


def _unknown_type(flags):
    if flags is None:
        raise ValueError("scan type 'Unknown Type' needs the raw TCP flags")
    # PortSentry prints the six classic bits in this order; ECE/CWR are not shown
    syn, fin, ack, psh, urg, rst = (int(bool(flags & m)) for m in (SYN, FIN, ACK, PSH, URG, RST))
    return (f"Unknown Type: TCP Packet Flags: SYN: {syn} FIN: {fin} ACK: {ack} PSH: {psh} "
            f"URG: {urg} RST: {rst}")


def packet_type(scan_type, flags=None, v2=False):
    """PortSentry's ReportPacketType text for a TCP scan type (1.2, or 2.0 if v2)."""
    if scan_type == "Unknown Type":
        return _unknown_type(flags)
    try:
        text = _TYPES_12[scan_type]
    except KeyError:
        raise ValueError(f"{scan_type!r} is not a TCP scan type") from None
    return text.lstrip() if v2 else text


def scan_alert_line(scan_type, host, addr, proto, port, flags=None):
    """The `attackalert: ... from host: H/IP to PROTO port: N` line."""
    addr, port, proto = _addr(addr), _port(port), _proto(proto)
    host = _host(host, addr)
    if scan_type == "Connect":  # classic -tcp/-udp modes
        return f"attackalert: Connect from host: {host}/{addr} to {proto} port: {port}"
    if scan_type == "UDP":
        if proto != "UDP":
            raise ValueError("a UDP scan must have proto UDP")
        return f"attackalert: UDP scan from host: {host}/{addr} to UDP port: {port}"
    if proto != "TCP":
        raise ValueError(f"scan type {scan_type!r} must have proto TCP")
    where = ("SCTP port" if scan_type.startswith("SCTP") else
             "IP protocol" if scan_type == "IP Protocol" else "TCP port")
    return (f"attackalert: {packet_type(scan_type, flags)} from host: {host}/{addr} "
            f"to {where}: {port}")


def ip_options_line(host, addr, port, proto="TCP"):
    """PortSentry's IP-options warning; its text names the port, so port is needed."""
    addr, port, proto = _addr(addr), _port(port), _proto(proto)
    return (f"attackalert: Packet from host: {_host(host, addr)}/{addr} to {proto} port: "
            f"{port} has IP options set (detection avoidance technique).")


def fragment_line(host, addr, port, proto="TCP", tiny=False):
    """Fragmenting a probe is evasion; a first fragment without the TCP flags (RFC 1858)
    is said so by name. Worded like PortSentry's IP-options warning."""
    addr, port, proto = _addr(addr), _port(port), _proto(proto)
    what = ("is a tiny fragment without the TCP flags (RFC 1858)" if tiny
            else "came fragmented")
    return (f"attackalert: Packet from host: {_host(host, addr)}/{addr} to {proto} port: "
            f"{port} {what} (detection avoidance technique).")


def blocked_wrappers_line(addr, string):
    return (f'attackalert: Host {_addr(addr)} has been blocked via wrappers with string: '
            f'"{_printable(string)}"')


def blocked_dropped_route_line(addr, command):
    return (f'attackalert: Host {_addr(addr)} has been blocked via dropped route using command: '
            f'"{_printable(command)}"')


def external_command_line(addr, command):
    return (f'attackalert: External command run for host: {_addr(addr)} using command: '
            f'"{_printable(command)}"')


def already_blocked_line(host, addr):
    """The stealth-mode form (no period before Ignoring), also PortSentry 2.0's."""
    addr = _addr(addr)
    return f"attackalert: Host: {_host(host, addr)}/{addr} is already blocked Ignoring"


def ignored_line(addr, ignore_file=BY_NAME["IGNORE_FILE"].default):
    """1.2 logs ignored hosts only in DEBUG builds; this is 2.0's verbose line."""
    return f"Host: {_addr(addr)} found in ignore file {_printable(ignore_file)}, aborting actions"


def _epoch(when):
    if isinstance(when, datetime.datetime):
        return int(when.timestamp())
    return int(time.time() if when is None else when)


def history_line(when, host, addr, port, proto):
    """WriteBlocked's `%ld - %02d/%02d/%04d %02d:%02d:%02d Host: %s/%s Port: %d %s Blocked`."""
    addr, port, proto = _addr(addr), _port(port), _proto(proto)
    epoch = _epoch(when)
    t = time.localtime(epoch)
    return ("%d - %02d/%02d/%04d %02d:%02d:%02d Host: %s/%s Port: %d %s Blocked"
            % (epoch, t.tm_mon, t.tm_mday, t.tm_year, t.tm_hour, t.tm_min, t.tm_sec,
               _host(host, addr), addr, port, proto))


def _tristate(value):
    return "unset" if value is None else ("true" if value else "false")


def portsentry2_scan_line(addr, host, proto, port, scan_type, flags=None, ip_opts=None,
                          ignored=None, triggered=None, noblock=None, blocked=None, when=None):
    """PortSentry 2.0's LogScanEvent line. None means 2.0's `unset` (`unknown` for
    ip_opts). With `when` (epoch or datetime) the history-file date prefix is added."""
    addr, port, proto = _addr(addr), _port(port), _proto(proto)
    if scan_type == "Connect":
        kind = "Connect"
    elif proto == "UDP":
        kind = "UDP"
    else:
        kind = packet_type(scan_type, flags, v2=True)
    opts = "unknown" if ip_opts is None else ("set" if ip_opts else "not set")
    line = (f"Scan from: [{addr}] ({_host(host, addr)}) protocol: [{proto}] port: [{port}] "
            f"type: [{kind}] IP opts: [{opts}] ignored: [{_tristate(ignored)}] "
            f"triggered: [{_tristate(triggered)}] noblock: [{_tristate(noblock)}] "
            f"blocked: [{_tristate(blocked)}]")
    if when is None:
        return line
    if not isinstance(when, datetime.datetime):
        when = datetime.datetime.fromtimestamp(float(when))
    local = when.astimezone()  # CreateDateTime: local time, milliseconds, %z
    millis = f"{local.microsecond // 1000:03d}"
    return f"{local.strftime('%Y-%m-%dT%H:%M:%S.')}{millis}{local.strftime('%z')} {line}"


def expand_macros(template, target, port, mode):
    """KILL_* macro expansion. Everything substituted is validated: these strings end up
    in shell commands and hosts.deny, so a host name or free text never goes in."""
    if not isinstance(target, (ipaddress.IPv4Address, ipaddress.IPv6Address, str)):
        raise ValueError(f"{target!r} is not an IP address")
    target = _addr(target)
    if mode not in MODES:
        raise ValueError(f"{mode!r} is not a PortSentry mode")
    return (template.replace("$TARGET$", target).replace("$PORT$", str(_port(port)))
            .replace("$MODE$", mode))


class HistoryRecord(NamedTuple):
    time: int
    host: str
    addr: str
    port: int
    proto: str


_HISTORY = re.compile(r"^(\d+) - \d\d/\d\d/\d{4} \d\d:\d\d:\d\d Host: (.*)/([^/\s]+) "
                      r"Port: (\d+) (TCP|UDP) Blocked$")


def parse_history_line(line):
    """HistoryRecord, or None for anything that is not a whole, valid history line."""
    m = _HISTORY.match(line.rstrip("\r\n"))
    if not m:
        return None
    try:
        addr = _addr(m.group(3))
        port = _port(int(m.group(4)))
    except ValueError:
        return None
    return HistoryRecord(int(m.group(1)), m.group(2), addr, port, m.group(5))


def read_history(path):
    """Parsed records of a history file; garbled or torn lines are skipped, a missing
    file is empty. Only I/O errors raise (StateError)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    except OSError as err:
        raise StateError(f"{path}: cannot read history: {err.strerror or err}") from err
    text = data.decode("utf-8", "replace")
    return [r for r in map(parse_history_line, text.split("\n")) if r is not None]


def _make_dirs(directory):
    """mkdir -p, new directories 0700: the state directory is private."""
    missing = []
    while directory and not os.path.isdir(directory):
        missing.append(directory)
        directory = os.path.dirname(directory.rstrip("/"))
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)  # the umask may have narrowed it
    return bool(missing)


def fsync_dir(directory):
    fd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def close_torn_line(path, nofollow=False):
    """If the file's last line has no newline (a writer killed mid-record), end it, so
    the next record starts on a line of its own. Called once, before any writer runs."""
    try:
        flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
        fd = open_nofollow(path, flags) if nofollow else os.open(path, flags)
    except OSError:
        return False  # missing, or unusable: the first real write says what is wrong
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            os.write(fd, b"\n")
            os.fsync(fd)
            return True
        return False
    finally:
        os.close(fd)


def append_record(path, line, nofollow=False):
    """Append one line with one O_APPEND write, then fsync, so concurrent writers never
    interleave and a crash loses at most this record (never tears an earlier one).
    RecordWriter.start() closes a line torn by a kill -9, so it never swallows a record."""
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    directory = os.path.dirname(os.path.abspath(path))
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    try:
        _make_dirs(directory)
        created = not os.path.exists(path)
        fd = open_nofollow(path, flags) if nofollow else os.open(path, flags, 0o600)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(0, "not a regular file")
            done = os.write(fd, data)
            while done < len(data):  # only on a nearly full disk; keep the line whole
                done += os.write(fd, data[done:])
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(directory)  # make the new directory entry durable too
    except OSError as err:
        raise StateError(f"{path}: cannot append record: {err.strerror or err}") from err


class RecordWriter:
    """History file, per-mode blocked files and the JSON-lines event log."""

    def __init__(self, history_path, blocked_paths, events_path, logger=None):
        self.history_path, self.events_path = history_path, events_path
        self.blocked_paths = dict(blocked_paths or {})
        self.logger = logger

    def _log(self, adminalert):
        if self.logger is not None:
            self.logger.error(adminalert)

    def _fail(self, adminalert, path, what, err):
        self._log(adminalert)
        return StateError(f"{path}: cannot {what}: {getattr(err, 'strerror', None) or err}")

    def _blocked(self, mode):
        if mode not in self.blocked_paths:
            raise ValueError(f"no blocked file configured for mode {mode!r}")
        return self.blocked_paths[mode]

    def start(self, modes=None):
        """Create directories; truncate the given modes' blocked files (default: all),
        as PortSentry does at start-up."""
        for path in (self.history_path, self.events_path):
            try:
                path and _make_dirs(os.path.dirname(os.path.abspath(path)))
            except OSError as err:
                raise self._fail(f"adminalert: ERROR: cannot create directory for {path}.",
                                 path, "create its directory", err) from err
        if self.history_path:
            close_torn_line(self.history_path)
        if self.events_path:
            close_torn_line(self.events_path, nofollow=True)
        for mode in self.blocked_paths if modes is None else modes:
            path = self._blocked(mode)
            try:
                _make_dirs(os.path.dirname(os.path.abspath(path)))
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                fsync_dir(os.path.dirname(os.path.abspath(path)))
            except OSError as err:
                alert = f"adminalert: ERROR: Cannot delete blocked file on startup: {path}."
                raise self._fail(alert, path, "truncate blocked file", err) from err

    def block(self, when, host, addr, port, proto, mode):
        """Append the history line to the mode's blocked file and the history; returns it.
        Both files are attempted (as WriteBlocked does); the first failure is raised."""
        line = history_line(when, host, addr, port, proto)
        failure = None
        for path, what in ((self._blocked(mode), "blocked"), (self.history_path, "history")):
            try:
                path and append_record(path, line)
            except StateError as err:
                self._log(f"adminalert: ERROR: Cannot open {what} file: {path}.")
                failure = failure or err
        if failure:
            raise failure
        return line

    def event(self, record):
        """Append one JSON object (sorted keys; `time`, ISO-8601 UTC, added if absent)."""
        record = dict(record)
        record.setdefault("time", datetime.datetime.now(datetime.timezone.utc)
                          .isoformat(timespec="milliseconds"))
        # default ensure_ascii escapes every control character: one record, one line
        line = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str,
                          allow_nan=False)
        if self.events_path:
            append_record(self.events_path, line, nofollow=True)  # ours, in STATE_DIR
        return line


class _SyslogHandler(logging.handlers.SysLogHandler):
    def mapPriority(self, levelName):
        # PortSentry logs at daemon.notice; keep that for ordinary lines
        return "notice" if levelName == "INFO" else super().mapPriority(levelName)


def _stderr_is_journal():
    """Under systemd stderr already goes to the journal, as /dev/log does: log once."""
    want = os.environ.get("JOURNAL_STREAM")
    if not want or not os.path.exists("/dev/log"):
        return False
    try:
        st = os.fstat(2)
    except OSError:
        return False
    return want == f"{st.st_dev}:{st.st_ino}"


def under_systemd():
    """True when systemd started us (a unit sets INVOCATION_ID, and JOURNAL_STREAM when
    stdout/stderr go to the journal) and journald's native socket is there."""
    return bool(os.environ.get("INVOCATION_ID") or os.environ.get("JOURNAL_STREAM")) \
        and os.path.exists("/run/systemd/journal/socket")


def _journal_handler(ident):
    """systemd's JournalHandler: the same message text, plus the SCANWATCH_* fields a
    log call passes in `extra` (journalctl -u scanwatch SCANWATCH_SRC=...). None when
    python3-systemd is missing: syslog still gets every line."""
    try:
        from systemd import journal
    except ImportError:
        return None

    class Handler(journal.JournalHandler):
        def map_priority(self, levelno):
            # PortSentry logs at daemon.notice; keep that for ordinary lines
            return journal.LOG_NOTICE if levelno == logging.INFO else super().map_priority(levelno)

    h = Handler(SYSLOG_IDENTIFIER=ident, SYSLOG_FACILITY=3)  # 3: LOG_DAEMON
    h.setFormatter(logging.Formatter("%(message)s"))
    return h


def journal_fields(addr, scan_type=None, port=None, action=None):
    """`extra=` for a report's log line: the journal fields (ignored by other handlers)."""
    fields = {"SCANWATCH_SRC": str(addr)}
    if scan_type is not None:
        fields["SCANWATCH_TYPE"] = scan_type
    if port is not None:
        fields["SCANWATCH_PORT"] = str(port)
    if action is not None:
        fields["SCANWATCH_ACTION"] = action
    return fields


def make_logger(name="scanwatch", syslog=True, stream="stderr", ident="scanwatch",
                syslog_socket="/dev/log"):
    """Logger writing each message unchanged to syslog (daemon, `scanwatch[pid]:`) when
    the socket exists, and to `stream` (default: sys.stderr at call time; None for no
    stream) after a timestamp. Safe to call again: earlier handlers are replaced."""
    if stream == "stderr":
        stream = None if syslog and _stderr_is_journal() else sys.stderr
    logger = logging.getLogger(name)
    for h in list(logger.handlers):
        if getattr(h, "_scanwatch", False):
            logger.removeHandler(h)
            h.close()
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handlers = []
    journal = _journal_handler(ident) if syslog and under_systemd() else None
    if journal is not None:
        handlers.append(journal)  # journald also forwards it to syslog
    elif syslog and os.path.exists(syslog_socket):
        try:
            h = _SyslogHandler(address=syslog_socket,
                               facility=logging.handlers.SysLogHandler.LOG_DAEMON)
            h.setFormatter(logging.Formatter(f"{ident}[%(process)d]: %(message)s"))
            handlers.append(h)
        except OSError:
            pass  # no syslog daemon listening: the stream still gets every line
    if stream is not None:
        h = logging.StreamHandler(stream)
        h.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        handlers.append(h)
    for h in handlers:
        h._scanwatch = True
        logger.addHandler(h)
    return logger
