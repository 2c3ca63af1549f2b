"""fail2ban's stock portsentry filter must match every history line RecordWriter writes.

Under CI (CI set) fail2ban is part of the project's setup, so a missing fail2ban-regex
is a failure there; on a developer machine without fail2ban the test is skipped.
"""
import os
import re
import shutil
import subprocess

import pytest

from scanwatch.sentry.respond.records import RecordWriter, read_history

FILTER = "/etc/fail2ban/filter.d/portsentry.conf"

BLOCKS = [  # (host as resolved, address, port, proto)
    ("scanner-1.example.net", "192.0.2.7", 1524, "TCP"),
    ("2001:db8::1", "2001:db8::1", 31337, "TCP"),
    ("198.51.100.4", "198.51.100.4", 161, "UDP"),
    ("v6.example", "2001:db8:ffff:1::abcd", 1, "UDP"),
    # a hostile PTR name must not smuggle another address in
    ("203.0.113.66 Port: 1 TCP Blocked\n1 - x Host: a/203.0.113.67", "203.0.113.5", 111, "TCP"),
    ("::ffff:10.1.2.3", "::ffff:10.1.2.3", 635, "TCP"),  # logged as its IPv4 address
]
EXPECTED = ["192.0.2.7", "2001:db8::1", "198.51.100.4", "2001:db8:ffff:1::abcd",
            "203.0.113.5", "10.1.2.3"]


def _fail2ban_regex():
    exe = shutil.which("fail2ban-regex")
    if exe and os.path.exists(FILTER):
        return exe
    why = "fail2ban-regex or its portsentry filter is not installed"
    if os.environ.get("CI"):
        pytest.fail(why + " (CI is set: the project's setup installs fail2ban)")
    pytest.skip(why)


def test_fail2ban_matches_every_history_line(tmp_path):
    exe = _fail2ban_regex()
    history = tmp_path / "scanwatch.history"
    writer = RecordWriter(str(history), {"stcp": str(tmp_path / "scanwatch.blocked.stcp")},
                          str(tmp_path / "events.jsonl"))
    writer.start()
    for i, (host, addr, port, proto) in enumerate(BLOCKS):
        writer.block(1716200000 + 60 * i, host, addr, port, proto, "stcp")
    assert len(read_history(history)) == len(BLOCKS)

    run = subprocess.run([exe, str(history), FILTER], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    n = len(BLOCKS)
    summary = re.search(r"Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed", run.stdout)
    assert summary, run.stdout
    assert tuple(map(int, summary.groups())) == (n, 0, n, 0), run.stdout
    # every line also dated by the filter's Epoch pattern, so bans get the right time
    assert re.search(rf"\[{n}\] {{\^LN-BEG}}Epoch", run.stdout), run.stdout

    ips = subprocess.run([exe, "-o", "ip", str(history), FILTER], capture_output=True,
                         text=True, timeout=120)
    assert ips.returncode == 0, ips.stderr
    assert ips.stdout.split() == EXPECTED
