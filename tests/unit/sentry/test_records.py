"""records.py: exact PortSentry strings, history round trip, durable appends, logger."""
import datetime
import ipaddress
import io
import json
import multiprocessing
import os
import signal
import socket
import stat
import time

import pytest
from hypothesis import given, settings, strategies as st

from scanwatch.sentry.respond import records as r
from scanwatch.errors import StateError

A4, A6 = "192.0.2.7", "2001:db8::7"


@pytest.fixture
def tz():
    """Run under a given POSIX TZ (no tzdata needed), restoring the original after."""
    old = os.environ.get("TZ")

    def set_tz(value):
        os.environ["TZ"] = value
        time.tzset()

    yield set_tz
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


# --- attackalert lines (portsentry.c 1.2: PortSentryStealthModeTCP/UDP, ReportPacketType)

@pytest.mark.parametrize("kind, text", [
    ("SYN/Normal", "attackalert: TCP SYN/Normal scan from host: h.example/192.0.2.7 to TCP port: 143"),
    ("FIN", "attackalert: TCP FIN scan from host: h.example/192.0.2.7 to TCP port: 143"),
    # 1.2 really prints " TCP NULL scan" (leading space) into "attackalert: %s from ..."
    ("NULL", "attackalert:  TCP NULL scan from host: h.example/192.0.2.7 to TCP port: 143"),
    ("XMAS", "attackalert: TCP XMAS scan from host: h.example/192.0.2.7 to TCP port: 143"),
    # nmap -sA/-sW and -sM: not in PortSentry, named in its style
    ("ACK/Window",
     "attackalert: TCP ACK/Window scan from host: h.example/192.0.2.7 to TCP port: 143"),
    ("Maimon", "attackalert: TCP Maimon scan from host: h.example/192.0.2.7 to TCP port: 143"),
    ("Tiny Fragment",
     "attackalert: TCP tiny fragment scan from host: h.example/192.0.2.7 to TCP port: 143"),
])
def test_tcp_scan_lines(kind, text):
    assert r.scan_alert_line(kind, "h.example", A4, "TCP", 143) == text


def test_fragment_lines():
    assert (r.fragment_line("h", A4, 22, tiny=True)
            == "attackalert: Packet from host: h/192.0.2.7 to TCP port: 22 is a tiny fragment "
               "without the TCP flags (RFC 1858) (detection avoidance technique).")
    assert (r.fragment_line("h", A4, 161, "UDP")
            == "attackalert: Packet from host: h/192.0.2.7 to UDP port: 161 came fragmented "
               "(detection avoidance technique).")


def test_udp_scan_line():
    assert (r.scan_alert_line("UDP", "h.example", A4, "UDP", 161)
            == "attackalert: UDP scan from host: h.example/192.0.2.7 to UDP port: 161")


def test_connect_lines():
    assert (r.scan_alert_line("Connect", A4, A4, "TCP", 1)
            == "attackalert: Connect from host: 192.0.2.7/192.0.2.7 to TCP port: 1")
    assert (r.scan_alert_line("Connect", None, A4, "UDP", 7)
            == "attackalert: Connect from host: 192.0.2.7/192.0.2.7 to UDP port: 7")


@pytest.mark.parametrize("flags, bits", [
    (r.SYN | r.ACK, "SYN: 1 FIN: 0 ACK: 1 PSH: 0 URG: 0 RST: 0"),
    (r.FIN | r.PSH, "SYN: 0 FIN: 1 ACK: 0 PSH: 1 URG: 0 RST: 0"),
    (r.RST | r.URG, "SYN: 0 FIN: 0 ACK: 0 PSH: 0 URG: 1 RST: 1"),
    (0x3F, "SYN: 1 FIN: 1 ACK: 1 PSH: 1 URG: 1 RST: 1"),
    (0xC0 | r.SYN | r.FIN, "SYN: 1 FIN: 1 ACK: 0 PSH: 0 URG: 0 RST: 0"),  # ECE/CWR not printed
])
def test_unknown_type_line(flags, bits):
    assert (r.scan_alert_line("Unknown Type", "h", A4, "TCP", 80, flags=flags)
            == f"attackalert: Unknown Type: TCP Packet Flags: {bits} from host: h/192.0.2.7 "
               "to TCP port: 80")


def test_scan_line_rejects_bad_input():
    with pytest.raises(ValueError):
        r.scan_alert_line("Unknown Type", "h", A4, "TCP", 80)  # flags needed
    with pytest.raises(ValueError):
        r.scan_alert_line("UDP", "h", A4, "TCP", 80)
    with pytest.raises(ValueError):
        r.scan_alert_line("SYN/Normal", "h", A4, "UDP", 80)
    with pytest.raises(ValueError):
        r.scan_alert_line("PING", "h", A4, "TCP", 80)
    for port in (-1, 65536, True, "80", 8.0):
        with pytest.raises(ValueError):
            r.scan_alert_line("FIN", "h", A4, "TCP", port)
    for addr in ("host.example", "192.0.2.256", "fe80::1%eth0", "", " 192.0.2.7"):
        with pytest.raises(ValueError):
            r.scan_alert_line("FIN", "h", addr, "TCP", 80)


def test_ipv6_and_mapped_addresses():
    assert (r.scan_alert_line("FIN", None, ipaddress.ip_address("2001:0db8:0::7"), "tcp", 1)
            == "attackalert: TCP FIN scan from host: 2001:db8::7/2001:db8::7 to TCP port: 1")
    assert "host: 192.0.2.7/192.0.2.7 " in r.scan_alert_line("FIN", "", "::ffff:192.0.2.7", "TCP", 1)


@pytest.mark.parametrize("evil", ["x\nattackalert: forged", "a/203.0.113.9 Port: 1 TCP Blocked",
                                  "sp ace", "t\tab\r\x00", "\u00e9vil"])
def test_host_names_cannot_forge_fields(evil):
    line = r.scan_alert_line("SYN/Normal", evil, A4, "TCP", 1)
    hostpart = line.split("from host: ", 1)[1].rsplit("/192.0.2.7 to TCP port: 1", 1)[0]
    assert "\n" not in line and "\r" not in line and "\0" not in line
    assert "/" not in hostpart and " " not in hostpart
    hist = r.history_line(0, evil, A4, 1, "TCP")
    assert r.parse_history_line(hist).addr == A4


# --- other attackalert lines (portsentry_io.c 1.2: KillRoute, KillRunCmd, KillHostsDeny)

def test_ip_options_lines():
    assert (r.ip_options_line("h", A4, 23) == "attackalert: Packet from host: h/192.0.2.7 to TCP port: "
            "23 has IP options set (detection avoidance technique).")
    assert (r.ip_options_line("h", A4, 53, "UDP") == "attackalert: Packet from host: h/192.0.2.7 to UDP "
            "port: 53 has IP options set (detection avoidance technique).")


def test_block_action_lines():
    assert (r.blocked_wrappers_line(A4, "ALL: 192.0.2.7 : DENY")
            == 'attackalert: Host 192.0.2.7 has been blocked via wrappers with string: "ALL: 192.0.2.7 : DENY"')
    assert (r.blocked_dropped_route_line(A6, "/sbin/route add -host 2001:db8::7 reject")
            == 'attackalert: Host 2001:db8::7 has been blocked via dropped route using command: '
               '"/sbin/route add -host 2001:db8::7 reject"')
    assert (r.external_command_line(A4, "/bin/true 192.0.2.7")
            == 'attackalert: External command run for host: 192.0.2.7 using command: "/bin/true 192.0.2.7"')
    assert "\n" not in r.blocked_wrappers_line(A4, "a\nb")


def test_already_blocked_and_ignored_lines():
    assert r.already_blocked_line("h", A4) == "attackalert: Host: h/192.0.2.7 is already blocked Ignoring"
    assert (r.ignored_line(A4, "/etc/portsentry/portsentry.ignore")
            == "Host: 192.0.2.7 found in ignore file /etc/portsentry/portsentry.ignore, aborting actions")
    assert r.ignored_line(A6).startswith("Host: 2001:db8::7 found in ignore file /")


# --- history line (portsentry_io.c WriteBlocked) ---------------------------------------

def test_history_line_exact(tz):
    tz("UTC0")
    assert (r.history_line(1716200000, "h.example", A4, 1524, "TCP")
            == "1716200000 - 05/20/2024 10:13:20 Host: h.example/192.0.2.7 Port: 1524 TCP Blocked")
    tz("XYZ-5:30")  # local time, not UTC, as PortSentry's localtime()
    assert (r.history_line(1716200000.9, A6, A6, 7, "udp")
            == "1716200000 - 05/20/2024 15:43:20 Host: 2001:db8::7/2001:db8::7 Port: 7 UDP Blocked")
    when = datetime.datetime(2024, 5, 20, 10, 13, 20, tzinfo=datetime.timezone.utc)
    assert r.history_line(when, "h", A4, 1, "TCP").startswith("1716200000 - 05/20/2024 15:43:20 ")


def test_history_line_defaults_to_now():
    epoch = int(r.history_line(None, "h", A4, 1, "TCP").split(" ", 1)[0])
    assert abs(epoch - time.time()) < 5


hosts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
addrs = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).filter(
    lambda a: a.version == 4 or not a.ipv4_mapped)


@settings(max_examples=300, deadline=None)
@given(when=st.integers(0, 2**33), host=hosts, addr=addrs, port=st.integers(0, 65535),
       proto=st.sampled_from(["TCP", "UDP"]))
def test_history_line_parses_back(when, host, addr, port, proto):
    rec = r.parse_history_line(r.history_line(when, host, addr, port, proto))
    assert rec == r.HistoryRecord(when, r._host(host, str(addr)), str(addr), port, proto)


def test_parse_history_rejects_garbage():
    for bad in ("", "garbage", "1716200000 - 05/20/2024 10:13:20 Host: h/192.0.2.7 Port: 1524 TCP Blo",
                "1716200000 - 05/20/2024 10:13:20 Host: h/not-an-ip Port: 1 TCP Blocked",
                "1716200000 - 05/20/2024 10:13:20 Host: h/192.0.2.7 Port: 99999 TCP Blocked",
                "x1716200000 - 05/20/2024 10:13:20 Host: h/192.0.2.7 Port: 1 TCP Blocked"):
        assert r.parse_history_line(bad) is None


# --- PortSentry 2.0 LogScanEvent line --------------------------------------------------

def test_portsentry2_line(tz):
    assert (r.portsentry2_scan_line(A4, "h", "TCP", 23, "SYN/Normal", ip_opts=False, ignored=False,
                                    triggered=True, noblock=False, blocked=True)
            == "Scan from: [192.0.2.7] (h) protocol: [TCP] port: [23] type: [TCP SYN/Normal scan] "
               "IP opts: [not set] ignored: [false] triggered: [true] noblock: [false] blocked: [true]")
    assert (r.portsentry2_scan_line(A6, None, "UDP", 53, "UDP", ip_opts=True, ignored=True)
            == "Scan from: [2001:db8::7] (2001:db8::7) protocol: [UDP] port: [53] type: [UDP] "
               "IP opts: [set] ignored: [true] triggered: [unset] noblock: [unset] blocked: [unset]")
    assert "type: [TCP NULL scan] IP opts: [unknown]" in r.portsentry2_scan_line(A4, "h", "TCP", 1, "NULL")
    assert "type: [Connect]" in r.portsentry2_scan_line(A4, "h", "TCP", 1, "Connect")
    assert ("type: [Unknown Type: TCP Packet Flags: SYN: 1 FIN: 0 ACK: 0 PSH: 0 URG: 1 RST: 0]"
            in r.portsentry2_scan_line(A4, "h", "TCP", 1, "Unknown Type", flags=r.SYN | r.URG))
    tz("XYZ-5:30")
    line = r.portsentry2_scan_line(A4, "h", "TCP", 1, "FIN", when=1716200000.25)
    assert line.startswith("2024-05-20T15:43:20.250+0530 Scan from: [192.0.2.7] (h) ")


# --- macros -----------------------------------------------------------------------------

def test_expand_macros():
    tpl = "/sbin/iptables -I INPUT -s $TARGET$ -j DROP # $TARGET$ $PORT$ $MODE$"
    assert (r.expand_macros(tpl, A4, 1524, "stcp")
            == "/sbin/iptables -I INPUT -s 192.0.2.7 -j DROP # 192.0.2.7 1524 stcp")
    assert r.expand_macros("ALL: $TARGET$", ipaddress.ip_address(A6), 1, "audp") == "ALL: 2001:db8::7"
    assert r.expand_macros("no macros", A4, 1, "tcp") == "no macros"


@pytest.mark.parametrize("target", ["scanner.example.com", "localhost", "192.0.2.7; rm -rf /",
                                    "fe80::1%$(id)", 3221225991, None, b"192.0.2.7"])
def test_expand_macros_rejects_non_addresses(target):
    with pytest.raises(ValueError):
        r.expand_macros("ALL: $TARGET$", target, 1, "tcp")


def test_expand_macros_rejects_bad_port_and_mode():
    with pytest.raises(ValueError):
        r.expand_macros("$PORT$", A4, 70000, "tcp")
    with pytest.raises(ValueError):
        r.expand_macros("$MODE$", A4, 1, "tcp; reboot")


# --- read_history --------------------------------------------------------------------------

def test_read_history_skips_torn_and_garbled_lines(tmp_path):
    path = tmp_path / "history"
    good = [r.history_line(1716200000 + i, "h", A4 if i % 2 else A6, i, "TCP") for i in range(5)]
    body = good[0] + "\n\x00\xff garbage\n" + "\r\n".join(good[1:4]) + "\r\n" + good[4] + "\n"
    path.write_bytes(body.encode("utf-8", "surrogateescape") + b"\xfe\xfd\n" + good[0][:30].encode())
    recs = r.read_history(path)
    assert [x.time for x in recs] == [1716200000 + i for i in range(5)]
    assert r.read_history(tmp_path / "missing") == []
    with pytest.raises(StateError, match="history"):
        r.read_history(tmp_path)  # a directory: an I/O error, not content


# --- RecordWriter ------------------------------------------------------------------------------

def _writer(tmp_path, **kw):
    base = tmp_path / "state" / "deep"
    blocked = {m: str(base / f"scanwatch.blocked.{m}") for m in ("stcp", "sudp")}
    return r.RecordWriter(str(base / "scanwatch.history"), blocked, str(base / "events.jsonl"), **kw)


def test_start_creates_private_dirs_and_truncates_given_modes(tmp_path):
    w = _writer(tmp_path)
    w.start()
    for d in (tmp_path / "state", tmp_path / "state" / "deep"):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    for path in w.blocked_paths.values():
        assert os.path.getsize(path) == 0 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    w.block(1, "h", A4, 1, "TCP", "stcp")
    w.block(1, "h", A4, 2, "UDP", "sudp")
    w.start(["sudp"])  # only the modes being started are truncated
    assert os.path.getsize(w.blocked_paths["stcp"]) > 0
    assert os.path.getsize(w.blocked_paths["sudp"]) == 0
    assert len(r.read_history(w.history_path)) == 2  # history is never truncated


def test_block_appends_to_history_and_blocked(tmp_path, tz):
    tz("UTC0")
    w = _writer(tmp_path)
    w.start()
    line = w.block(1716200000, "h", A6, 1524, "TCP", "stcp")
    assert line == "1716200000 - 05/20/2024 10:13:20 Host: h/2001:db8::7 Port: 1524 TCP Blocked"
    w.block(1716200001, None, A4, 53, "UDP", "sudp")
    with open(w.history_path, "rb") as f:
        assert f.read().decode().splitlines()[0] == line
    assert open(w.blocked_paths["stcp"]).read() == line + "\n"
    assert [x.addr for x in r.read_history(w.blocked_paths["sudp"])] == [A4]
    assert [x.addr for x in r.read_history(w.history_path)] == [A6, A4]
    with pytest.raises(ValueError):
        w.block(1, "h", A4, 1, "TCP", "atcp")  # no blocked file for that mode


def test_appends_are_fsynced(tmp_path, monkeypatch):
    w = _writer(tmp_path)
    w.start()
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)
    monkeypatch.setattr(os, "fsync", spy)
    w.block(1, "h", A4, 1, "TCP", "stcp")
    w.event({"kind": "block"})
    for path in (w.history_path, w.blocked_paths["stcp"], w.events_path):
        assert os.path.realpath(path) in synced


def _write_then_die(w, n):
    for i in range(n):
        w.block(1716200000 + i, "h", A4, i, "TCP", "stcp")
        w.event({"i": i})
    os.kill(os.getpid(), signal.SIGKILL)  # no atexit, no buffer flush: only written data counts


def test_records_survive_a_killed_writer(tmp_path):
    w = _writer(tmp_path)
    w.start()
    p = multiprocessing.get_context("fork").Process(target=_write_then_die, args=(w, 50))
    p.start()
    p.join(30)
    assert p.exitcode == -signal.SIGKILL
    assert [x.port for x in r.read_history(w.history_path)] == list(range(50))
    assert len(r.read_history(w.blocked_paths["stcp"])) == 50
    assert [json.loads(x)["i"] for x in open(w.events_path)] == list(range(50))


def _hammer(w, k, n):
    for i in range(n):
        w.block(1716200000, "host-" + "x" * (k * 7), f"10.0.{k}.{i % 250}", i, "TCP", "stcp")


def test_concurrent_appends_never_interleave(tmp_path):
    w = _writer(tmp_path)
    w.start()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_hammer, args=(w, k, 40)) for k in range(10)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = open(w.history_path).read().splitlines()
    assert len(lines) == 400
    assert all(r.parse_history_line(x) for x in lines)


def test_event_lines(tmp_path):
    w = _writer(tmp_path)
    w.start()
    rec = {"zeta": 1, "alpha": "a\nb", "addr": ipaddress.ip_address(A6)}
    out = w.event(rec)
    assert "time" not in rec  # the caller's dict is not changed
    w.event({"time": "2024-05-20T10:13:20+00:00", "kind": "unblock"})
    lines = open(w.events_path).read().splitlines()
    assert len(lines) == 2 and lines[0] == out
    first = json.loads(lines[0])
    assert list(first) == sorted(first)
    assert first["alpha"] == "a\nb" and first["addr"] == A6
    stamp = datetime.datetime.fromisoformat(first["time"])
    assert stamp.utcoffset() == datetime.timedelta(0)
    assert abs((datetime.datetime.now(datetime.timezone.utc) - stamp).total_seconds()) < 60
    assert json.loads(lines[1])["time"] == "2024-05-20T10:13:20+00:00"


def test_os_errors_become_state_errors(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    w = r.RecordWriter(str(blocker / "h"), {"stcp": str(blocker / "b")}, str(blocker / "e"))
    with pytest.raises(StateError, match=str(blocker / "b")) as exc:
        w.start()
    assert isinstance(exc.value.__cause__, OSError)
    w = r.RecordWriter(str(tmp_path), {"stcp": str(tmp_path / "b")}, str(tmp_path))
    stream = io.StringIO()
    w.logger = r.make_logger("scanwatch.test.err", syslog=False, stream=stream)
    with pytest.raises(StateError, match=str(tmp_path)) as exc:
        w.block(1, "h", A4, 1, "TCP", "stcp")  # history path is a directory
    assert isinstance(exc.value.__cause__, OSError)
    assert open(tmp_path / "b").read().count("Blocked") == 1  # blocked file still written
    assert "adminalert: ERROR: Cannot open history file: " in stream.getvalue()
    with pytest.raises(StateError, match=str(tmp_path)):
        w.event({"a": 1})


# --- logger ------------------------------------------------------------------------------------

def test_logger_stream_and_syslog(tmp_path):
    sock_path = str(tmp_path / "log")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(sock_path)
    server.settimeout(5)
    stream = io.StringIO()
    line = r.scan_alert_line("NULL", "h", A4, "TCP", 1)
    try:
        log = r.make_logger("scanwatch.test.sys", stream=stream, syslog_socket=sock_path)
        log.info(line)
        got = server.recv(4096).decode()
    finally:
        server.close()
    # daemon (3) * 8 + notice (5) = 29, PortSentry's daemon.notice; ident[pid]: then the line
    assert got.rstrip("\0") == f"<29>scanwatch[{os.getpid()}]: {line}"
    out = stream.getvalue()
    assert out.endswith(" " + line + "\n")
    datetime.datetime.strptime(out[:19], "%Y-%m-%d %H:%M:%S")


def test_logger_without_syslog_socket_and_no_duplicates(tmp_path):
    stream = io.StringIO()
    log = r.make_logger("scanwatch.test.nosys", stream=stream, syslog_socket=str(tmp_path / "none"))
    log = r.make_logger("scanwatch.test.nosys", stream=stream, syslog_socket=str(tmp_path / "none"))
    log.info("adminalert: PortSentry is now active and listening.")
    assert stream.getvalue().count("listening") == 1
    assert len(log.handlers) == 1 and not log.propagate


def test_hosts_deny_prefix_line_excepts_the_ignored_addresses_inside_it():
    """issue 14: a prefix block in hosts_access(5)'s syntax, sparing ignored addresses."""
    import ipaddress
    from scanwatch.sentry.respond.report import wrappers_prefix
    net = ipaddress.ip_network("2001:db8:1:2::/64")
    spared = [ipaddress.ip_network(n) for n in
              ("127.0.0.0/8", "::1/128", "2001:db8:1:2::77/128", "2001:db8:1:2:8000::/65",
               "2001:db8::/32")]
    assert wrappers_prefix(net, []) == "[2001:db8:1:2::]/64"
    assert wrappers_prefix(net, spared) == \
        "[2001:db8:1:2::]/64 EXCEPT [2001:db8:1:2::77] [2001:db8:1:2:8000::]/65"
