"""journald fields, checked the way an admin looks: Debian's real systemd-journald
receives the daemon's reports and `journalctl -u scanwatch SCANWATCH_SRC=ADDR` finds them.

There is no systemd on the test machine, so the test provides what a unit would: a
journald of its own (a private /run bind-mounted from a temp dir, volatile storage, its
own mount, cgroup and network namespaces), the daemon in a cgroup named
system.slice/scanwatch.service under a temp cgroup that is journald's cgroup-namespace
root (so journald derives _SYSTEMD_UNIT=scanwatch.service as under systemd), and
INVOCATION_ID in its environment. The machine's /run, journal and syslog are untouched."""
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from sentryproc import SentryProcess, nmap, wait_for

JOURNALD = "/lib/systemd/systemd-journald"
# fail2ban's filter.d/portsentry.conf failregex (Debian 12), <HOST> as fail2ban expands it
F2B = re.compile(r"^attackalert: .* from host: (?:\S+/)?(?P<host>[0-9a-fA-F.:]+) "
                 r"to (?:TCP|UDP) port: \d+")
CONF = ("[Journal]\nStorage=volatile\nReadKMsg=no\nForwardToSyslog=no\nForwardToKMsg=no\n"
        "ForwardToConsole=no\nForwardToWall=no\n")


def cgroup2_root():
    """Where cgroup v2 is mounted: /sys/fs/cgroup (unified) or .../unified (hybrid)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" - ", 1)
        if len(fields) == 2 and fields[1].split()[0] == "cgroup2":
            return Path(line.split()[4])
    return None


pytestmark = pytest.mark.skipif(not os.path.exists(JOURNALD) or cgroup2_root() is None,
                                reason="needs systemd-journald (package systemd) and cgroup v2")


class Journald:
    """A private systemd-journald; query() runs journalctl in its mount namespace."""

    def __init__(self, tmp):
        self.run = tmp / "run"
        (self.run / "systemd" / "journal").mkdir(parents=True)
        conf = tmp / "journald.conf"
        conf.write_text(CONF)
        self.cgroup = cgroup2_root() / f"swtest-journald-{os.getpid()}-{tmp.name}"
        self.unit_cgroup = self.cgroup / "system.slice" / "scanwatch.service"
        self.unit_cgroup.mkdir(parents=True)
        # into the temp cgroup first, then a cgroup namespace rooted there
        script = ('echo $$ > "$0/cgroup.procs" && exec unshare --mount --propagation private '
                  '--cgroup --net sh -c \'mount --bind "$0" /run && '
                  'mount --bind "$1" /etc/systemd/journald.conf && exec "$2"\' "$1" "$2" "$3"')
        self.log = open(tmp / "journald.log", "w")
        self.proc = subprocess.Popen(["sh", "-c", script, str(self.cgroup), str(self.run),
                                      str(conf), JOURNALD], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        wait_for(lambda: (self.run / "systemd" / "journal" / "socket").exists()
                 or self.proc.poll() is not None, 10, "journald listening")
        assert self.proc.poll() is None, (tmp / "journald.log").read_text()

    def unit_wrap(self):
        """A command prefix that starts a process as systemd starts the unit's: in the
        unit's cgroup before its first log line (journald caches a sender's unit), with
        journald's sockets in /run. `ip netns exec` hides the host's cgroupfs (it
        remounts /sys), so the prefix mounts cgroup2 in a private mount namespace."""
        unit = self.unit_cgroup.relative_to(cgroup2_root())
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'run=$1 unit=$2; shift 2; mount --bind "$run" /run && '
                'mount -t cgroup2 cgroup2 /sys/fs/cgroup && '
                'echo $$ > "/sys/fs/cgroup/$unit/cgroup.procs" && umount /sys/fs/cgroup && '
                'exec "$@"', "sh", str(self.run), str(unit)]

    def query(self, *matches):
        res = subprocess.run(["nsenter", "-t", str(self.proc.pid), "-m", "journalctl",
                              "--no-pager", "-o", "json", *matches],
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        return [json.loads(line) for line in res.stdout.splitlines()]

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        for d in (self.unit_cgroup, self.unit_cgroup.parent, self.cgroup):
            for _ in range(50):  # a process that just exited may still be listed
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)


def test_journalctl_finds_reports_by_unit_and_scanwatch_fields(lab, tmp_path):
    lab.wait_reachable()
    jd = Journald(tmp_path)
    try:
        with SentryProcess(lab, wrap=jd.unit_wrap(), env={"INVOCATION_ID": "5" * 32}) as sw:
            nmap(lab, "-sS", "-p", "1-40")
            sw.wait_block_event()
            src = lab.scanner_ip4

            def blocked_line_in_journal():
                return any("has been blocked via nftables" in e["MESSAGE"]
                           for e in jd.query("-u", "scanwatch", f"SCANWATCH_SRC={src}"))

            try:
                wait_for(blocked_line_in_journal, 10, "the block's line in the journal")
            except AssertionError:
                seen = [(e.get("_SYSTEMD_UNIT"), e.get("SCANWATCH_SRC"), e["MESSAGE"])
                        for e in jd.query()]
                raise AssertionError(f"not in the journal; it holds {seen}\n{sw.log()}")
            found = jd.query("-u", "scanwatch", f"SCANWATCH_SRC={src}")
            log = sw.log()
        assert found and all(e["_SYSTEMD_UNIT"] == "scanwatch.service" for e in found)
        alerts = [e for e in found if F2B.match(e["MESSAGE"])]
        assert alerts, found
        a = alerts[0]
        assert F2B.match(a["MESSAGE"]).group("host") == src
        assert a["SCANWATCH_TYPE"] == "SYN/Normal" and a["SCANWATCH_PORT"].isdigit()
        assert a["SCANWATCH_ACTION"] == "block" and a["SYSLOG_IDENTIFIER"] == "scanwatch"
        assert a["PRIORITY"] == "5" and a["SYSLOG_FACILITY"] == "3"  # daemon.notice
        assert a["MESSAGE"] in log  # the same PortSentry text as on stderr
        # the fields select: another address, or another action, finds none of these
        assert jd.query("-u", "scanwatch", "SCANWATCH_SRC=198.18.255.254") == []
        by_action = jd.query("-u", "scanwatch", f"SCANWATCH_SRC={src}",
                             "SCANWATCH_ACTION=block")
        assert by_action and {e["SCANWATCH_ACTION"] for e in by_action} == {"block"}
    finally:
        jd.close()
