"""cli.py: help everywhere, one-line errors with the right exit status, status rendering."""
import importlib.metadata
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scanwatch import cli
from scanwatch.sentry.config import parse
from scanwatch.sentry.defaults import SETTINGS
from scanwatch.errors import ConfigError

DEBIAN_CONF = Path("/etc/portsentry/portsentry.conf")
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")
MAIN = [sys.executable, "-c", "from scanwatch.cli import main; main()"]

COMMANDS = [[], ["run"], ["status"], ["unblock"], ["flush"], ["config"], ["config", "check"],
            ["config", "show"]]


def inproc(capsys, *argv):
    """Run main() in this process; return (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        cli.main(list(argv))
    out, err = capsys.readouterr()
    code = exc.value.code
    return (0 if code is None else code), out, err


def sub(*argv, env=None):
    r = subprocess.run(MAIN + list(argv), capture_output=True, text=True, timeout=60,
                       env=env, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout, r.stderr


def bad_config(tmp_path, lineno=3):
    p = tmp_path / "bad.conf"
    lines = ["# scanwatch test", "", 'SCAN_TRIGGER="1"', 'RESOLVE_HOST = "0"']
    lines.insert(lineno - 1, 'BLOCK_TCP="3"')
    p.write_text("\n".join(lines) + "\n")
    return str(p)


def assert_one_error_line(err, prefix):
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(prefix), err
    assert "Traceback" not in err


# --- help and version -------------------------------------------------------------------

def _ids(cmds):
    return [" ".join(c) or "(top)" for c in cmds]


@pytest.mark.parametrize("flag", ["-h", "--help"])
@pytest.mark.parametrize("cmd", COMMANDS, ids=_ids(COMMANDS))
def test_help_in_process(capsys, cmd, flag):
    code, out, err = inproc(capsys, *cmd, flag)
    assert code == 0
    assert out.startswith("Usage: scanwatch" + "".join(" " + c for c in cmd))
    assert "-h, --help" in out
    assert err == ""


@pytest.mark.parametrize("flag", ["-h", "--help"])
@pytest.mark.parametrize("cmd", COMMANDS, ids=_ids(COMMANDS))
def test_help_subprocess(cmd, flag):
    code, out, err = sub(*cmd, flag)
    assert code == 0, err
    assert out.startswith("Usage: scanwatch" + "".join(" " + c for c in cmd))
    assert err == ""


def test_top_help_lists_every_command(capsys):
    _, out, _ = inproc(capsys, "--help")
    for name in ("run", "status", "unblock", "flush", "config"):
        assert f"\n  {name} " in out
    _, out, _ = inproc(capsys, "config", "-h")
    assert "\n  check " in out and "\n  show " in out


def test_run_help_shows_portsentry_modes(capsys):
    _, out, _ = inproc(capsys, "run", "-h")
    assert "-stcp" in out and "-sudp" in out and "--dry-run" in out


def test_version(capsys):
    version = importlib.metadata.version("scanwatch")
    code, out, err = inproc(capsys, "--version")
    assert code == 0
    assert out.strip() == f"scanwatch, version {version}"
    code, out, _ = sub("--version")
    assert code == 0 and version in out


def test_unknown_command_is_usage_error(capsys):
    code, out, err = inproc(capsys, "no-such-command")
    assert code == 2
    assert "No such command" in err
    assert "Traceback" not in err


# --- config check -----------------------------------------------------------------------

@pytest.mark.parametrize("lineno", [1, 3, 5])
def test_config_check_bad_file_in_process(capsys, tmp_path, lineno):
    bad = bad_config(tmp_path, lineno)
    code, out, err = inproc(capsys, "config", "check", "-c", bad)
    assert code == 2
    assert out == ""
    assert_one_error_line(err, f"error: {bad}:{lineno}: ")
    assert "BLOCK_TCP" in err


def test_config_check_bad_file_subprocess(tmp_path):
    bad = bad_config(tmp_path, 3)
    code, out, err = sub("config", "check", "-c", bad)
    assert code == 2
    assert out == ""
    assert_one_error_line(err, f"error: {bad}:3: ")


def test_config_check_long_option(capsys, tmp_path):
    bad = bad_config(tmp_path, 2)
    code, _, err = inproc(capsys, "config", "check", "--config", bad)
    assert code == 2
    assert_one_error_line(err, f"error: {bad}:2: ")


def test_config_check_debian_file(capsys):
    if not DEBIAN_CONF.exists():
        assert not IN_CI, f"{DEBIAN_CONF} must exist under CI=true (portsentry is installed)"
        pytest.skip(f"{DEBIAN_CONF} not installed")
    code, out, err = inproc(capsys, "config", "check", "-c", str(DEBIAN_CONF))
    assert code == 0, err
    assert out.startswith(f"{DEBIAN_CONF}: OK")
    assert "Traceback" not in err and "error" not in err
    code, out, _ = sub("config", "check", "-c", str(DEBIAN_CONF))
    assert code == 0 and "OK" in out


def test_config_check_defaults(capsys):
    code, out, err = inproc(capsys, "config", "check")
    assert code == 0, err
    assert out.startswith("(embedded defaults): OK (26 TCP ports, 21 UDP ports")


def test_config_check_directory(capsys, tmp_path):
    code, out, err = inproc(capsys, "config", "check", "-c", str(tmp_path))
    assert code == 2
    assert out == ""
    assert_one_error_line(err, f"error: {tmp_path}: ")


def test_config_check_missing(capsys, tmp_path):
    missing = tmp_path / "nope.conf"
    code, out, err = inproc(capsys, "config", "check", "-c", str(missing))
    assert code == 2
    assert out == ""
    assert_one_error_line(err, f"error: {missing}: ")
    code, _, err = sub("config", "check", "-c", str(missing))
    assert code == 2
    assert_one_error_line(err, f"error: {missing}: ")


def test_config_check_bad_ignore_file(capsys, tmp_path):
    ign = tmp_path / "sw.ignore"
    ign.write_text("192.0.2.1\n\nnot-an-address\n")
    conf = tmp_path / "sw.conf"
    conf.write_text(f'IGNORE_FILE="{ign}"\n')
    code, out, err = inproc(capsys, "config", "check", "-c", str(conf))
    assert code == 2
    assert_one_error_line(err, f"error: {ign}:3: ")


def test_config_check_counts_ignore_entries(capsys, tmp_path):
    ign = tmp_path / "sw.ignore"
    ign.write_text("192.0.2.1\n2001:db8::/32\n")
    conf = tmp_path / "sw.conf"
    conf.write_text(f'IGNORE_FILE="{ign}"\nTCP_PORTS="1-10"\n')
    code, out, err = inproc(capsys, "config", "check", "-c", str(conf))
    assert code == 0, err
    assert f"(10 TCP ports, 21 UDP ports, 2 ignore entries from {ign})" in out


def test_config_check_warns_on_unknown_key(capsys, tmp_path):
    conf = tmp_path / "sw.conf"
    conf.write_text(f'IGNORE_FILE="{tmp_path}/none"\nFANCY_NEW_KEY="1"\n')
    code, out, err = inproc(capsys, "config", "check", "-c", str(conf))
    assert code == 0
    assert err == f"warning: {conf}:2: unknown key FANCY_NEW_KEY ignored\n"
    assert "OK" in out


def test_bad_config_for_other_commands(capsys, tmp_path):
    bad = bad_config(tmp_path, 3)
    for argv in (["status", "-c", bad], ["config", "show", "-c", bad], ["run", "-c", bad]):
        code, out, err = inproc(capsys, *argv)
        assert code == 2, argv
        assert_one_error_line(err, f"error: {bad}:3: ")


def test_debug_shows_traceback(capsys, tmp_path):
    bad = bad_config(tmp_path, 3)
    with pytest.raises(ConfigError) as exc:
        cli.main(["--debug", "config", "check", "-c", bad])
    assert exc.value.lineno == 3
    code, out, err = sub("--debug", "config", "check", "-c", bad)
    assert code != 0 and code != 2
    assert "Traceback (most recent call last)" in err
    assert "ConfigError" in err
    assert f"{bad}:3: " in err


# --- config show ------------------------------------------------------------------------

def test_config_show_prints_every_key(capsys):
    code, out, err = inproc(capsys, "config", "show")
    assert code == 0 and err == ""
    lines = out.splitlines()
    for s in SETTINGS:
        assert sum(1 for line in lines if line.startswith(f'{s.name}="')) == 1, s.name
    assert 'SCAN_TRIGGER="0"' in lines
    assert 'KILL_HOSTS_DENY="ALL: $TARGET$"' in lines
    assert all(line.startswith("#") or "=" in line for line in lines)


def test_config_show_reflects_file(capsys, tmp_path):
    conf = tmp_path / "sw.conf"
    conf.write_text('TCP_PORTS="1-3,80"\nSCAN_TRIGGER = "2"\nINTERFACES="eth0, eth1"\n')
    code, out, _ = inproc(capsys, "config", "show", "-c", str(conf))
    assert code == 0
    lines = out.splitlines()
    assert 'TCP_PORTS="1,2,3,80"' in lines
    assert 'SCAN_TRIGGER="2"' in lines
    assert 'INTERFACES="eth0,eth1"' in lines


def test_config_show_output_is_a_config_file(capsys):
    """What `config show` prints reads back to the same settings."""
    sources = [None] + ([str(DEBIAN_CONF)] if DEBIAN_CONF.exists() else [])
    for src in sources:
        argv = ["config", "show"] + (["-c", src] if src else [])
        code, out, _ = inproc(capsys, *argv)
        assert code == 0
        again = parse(out, "shown")
        expected = cli._load(src)
        assert again.values == expected.values
        assert again.warnings == []


# --- status and unblock -----------------------------------------------------------------

def assert_not_running(code, out, err):
    """Exit 3 and exactly one line (on either stream) saying so; no traceback."""
    assert code == 3
    lines = (out + err).splitlines()
    assert len(lines) == 1, out + err
    assert "scanwatch is not running" in lines[0]
    assert "Traceback" not in err


def test_status_not_running(capsys, tmp_path):
    code, out, err = inproc(capsys, "status", "--run-dir", str(tmp_path))
    assert_not_running(code, out, err)
    assert str(tmp_path) in out + err
    assert_not_running(*sub("status", "--run-dir", str(tmp_path)))


def test_status_run_dir_missing(capsys, tmp_path):
    assert_not_running(*inproc(capsys, "status", "--run-dir", str(tmp_path / "absent")))


def test_status_json_not_running(capsys, tmp_path):
    assert_not_running(*inproc(capsys, "status", "--json", "--run-dir", str(tmp_path)))


def test_status_run_dir_from_config(capsys, tmp_path):
    conf = tmp_path / "sw.conf"
    conf.write_text(f'RUN_DIR="{tmp_path}"\n')
    code, out, err = inproc(capsys, "status", "-c", str(conf))
    assert_not_running(code, out, err)
    assert str(tmp_path / "scanwatch.sock") in out + err


def test_status_stale_socket(capsys, tmp_path):
    path = tmp_path / "scanwatch.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # the file stays, nobody listens: a daemon that died
    code, out, err = inproc(capsys, "status", "--run-dir", str(tmp_path))
    assert_not_running(code, out, err)
    assert "stale" in out + err


@pytest.mark.parametrize("addr", ["not-an-ip", "192.0.2.256", "2001:db8::g", ""])
def test_unblock_not_an_ip(capsys, addr):
    code, out, err = inproc(capsys, "unblock", addr)
    assert code == 1
    assert out == ""
    assert_one_error_line(err, f"error: {addr!r} is not an IPv4 or IPv6 address")


def test_unblock_not_an_ip_subprocess():
    code, out, err = sub("unblock", "not-an-ip")
    assert code == 1
    assert_one_error_line(err, "error: 'not-an-ip' is not an IPv4 or IPv6 address")


def test_unblock_needs_an_address(capsys):
    code, out, err = inproc(capsys, "unblock")
    assert code == 2
    assert "Missing argument" in err
    assert "Traceback" not in err


# --- format_status ----------------------------------------------------------------------

NOW = 1_700_000_000.0


@pytest.fixture
def utc():
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC0"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def status_dict(**over):
    st = {
        "running": True, "pid": 4242, "since": NOW - 7200,
        "config": "/etc/portsentry/portsentry.conf", "modes": ["stcp", "sudp"],
        "dry_run": False, "interfaces": {"eth0": "native", "wlan0": "generic"},
        "watched": {"TCP": {"configured": 26, "in_use": 1, "watched": 25},
                    "UDP": {"configured": 21, "in_use": 0, "watched": 21}},
        "sweep": {"ports": 20, "window": 5}, "scan_trigger": 0,
        "nft_table": "inet scanwatch",
        "packets": {"SYN/Normal": 10, "FIN": 2, "NULL": 1, "XMAS": 1, "Unknown Type": 0,
                    "UDP": 3},
        "counters": {"dropped": 77, "tripwire": 12, "kernel_blocks": 2, "events_lost": 0,
                     "ignored": 0, "malformed": 0, "packets": 1000, "badsum": 3},
        "sources_tracked": 5,
        "process": {"rss_bytes": 48 * 2**20, "cpu_seconds": 12.34, "open_fds": 21,
                    "threads": 7},
        "blocked": [
            {"addr": "192.0.2.66", "scan_type": "XMAS", "port": 31337, "proto": "TCP",
             "reason": "tripwire", "first_seen": NOW - 600, "since": NOW - 600,
             "expires": NOW + 3000, "left": 3000.0, "ports": ["31337/tcp", "12345/tcp"]},
            {"addr": "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "scan_type": "UDP", "port": 161,
             "proto": "UDP", "reason": "sweep", "first_seen": NOW - 30, "since": NOW - 30,
             "expires": None, "left": None,
             "ports": [f"{p}/udp" for p in range(1000, 1020)]},
        ],
    }
    st.update(over)
    return st


def test_format_status(utc):
    text = cli.format_status(status_dict(), now=NOW)
    lines = text.splitlines()
    assert lines[0] == "scanwatch is running (pid 4242) since 2023-11-14 20:13:20 (2h ago)"
    assert "config:      /etc/portsentry/portsentry.conf" in lines
    assert "modes:       stcp, sudp" in lines
    assert "interfaces:  eth0 (XDP native), wlan0 (XDP generic)" in lines
    assert "watched:     TCP 25 ports (26 configured, 1 in use)" in lines
    assert "watched:     UDP 21 ports (21 configured, 0 in use)" in lines
    assert "trigger:     SCAN_TRIGGER=0; sweep 20 closed ports in 5s" in lines
    assert any(line.startswith("packets:     SYN/Normal 10  FIN 2") for line in lines)
    assert ("kernel:      dropped 77  tripwire hits 12  kernel blocks 2  events lost 0"
            "  bad checksums 3 (never blocked)" in lines)
    assert "sources:     5 tracked" in lines
    assert "daemon:      48.0 MiB resident, 12.3 s CPU, 21 fds, 7 threads" in lines
    assert "blocked:     2 hosts in inet scanwatch" in lines
    header = next(line for line in lines if "HOST" in line)
    assert header.split() == ["HOST", "TYPE", "PORT", "REASON", "FIRST", "SEEN", "LEFT",
                              "PORTS", "HIT"]
    row4 = next(line for line in lines if "192.0.2.66" in line)
    assert row4.split() == ["192.0.2.66", "XMAS", "31337/tcp", "tripwire", "2023-11-14",
                            "22:03:20", "50m", "31337/tcp,12345/tcp"]
    row6 = next(line for line in lines if "2001:db8:" in line)
    cols = row6.split()
    assert cols[:7] == ["2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "UDP", "161/udp", "sweep",
                        "2023-11-14", "22:12:50", "never"]
    assert cols[7] == ",".join(f"{p}/udp" for p in range(1000, 1012)) + ",..."
    # Columns line up: every row starts its TYPE column where the header does.
    assert row4.index("XMAS") == header.index("TYPE") == row6.index("UDP ")


def test_format_status_counts_the_sources_blocked_in_xdp_only(utc):
    assert "XDP only" not in cli.format_status(status_dict(capped_total=0), now=NOW)
    lines = cli.format_status(status_dict(capped_total=4711), now=NOW).splitlines()
    at = lines.index("blocked:     2 hosts in inet scanwatch")
    assert lines[at + 1] == ("             + 4711 in XDP only since the start: BLOCK_RATE was "
                             "reached (a spoofed flood?)")


def test_format_status_nothing_blocked(utc):
    text = cli.format_status(status_dict(blocked=[], interfaces={}, dry_run=True,
                                         sweep={"ports": 0, "window": 5}, modes=["stcp"]),
                             now=NOW)
    lines = text.splitlines()
    assert lines[0].endswith("  DRY RUN")
    assert "interfaces:  none" in lines
    assert "modes:       stcp" in lines
    assert "trigger:     SCAN_TRIGGER=0; sweep off" in lines
    assert lines[-1] == "blocked:     0 hosts in inet scanwatch"
    assert "HOST" not in text


def test_format_status_one_host(utc):
    st = status_dict()
    st["blocked"] = st["blocked"][:1]
    text = cli.format_status(st, now=NOW)
    assert "blocked:     1 host in inet scanwatch" in text.splitlines()


def test_help_topics_and_completion():
    import subprocess
    import sys
    run = lambda *a: subprocess.run([sys.executable, "-c", "from scanwatch.cli import main; main()", *a],
                                    capture_output=True, text=True)
    for topic, needle in (("modes", "-atcp / --tcp-mode advanced"), ("files", "HISTORY_FILE"),
                          ("signals", "SIGHUP"), ("config", "SWEEP_PORTS (int, default \"20\")"),
                          ("status", "Usage: scanwatch status")):
        res = run("help", topic)
        assert res.returncode == 0 and needle in res.stdout, (topic, res.stdout, res.stderr)
    res = run("help", "nope")
    assert res.returncode == 2 and res.stderr.startswith("error: no help topic 'nope'")
    assert "_SCANWATCH_COMPLETE" in run("completion", "bash").stdout
    assert "compdef" in run("completion", "zsh").stdout
