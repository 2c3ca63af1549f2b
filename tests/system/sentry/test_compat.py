"""PortSentry drop-in compatibility, against the real daemon, real nmap and real clients.

BLOCK_TCP 0/2, KILL_RUN_CMD / KILL_ROUTE / KILL_RUN_CMD_FIRST ordering, failing and hung
commands, SCAN_TRIGGER, Debian's own portsentry.conf, fail2ban's own portsentry filter,
LOG_FORMAT="portsentry2" and RESOLVE_HOST (slow DNS, hostile and clean names).

Everything runs inside the lab's namespaces; files go to temp dirs. RESOLVE_HOST tests
give the target namespace its own /etc/hosts and /etc/resolv.conf through
/etc/netns/<target namespace>/ (bind-mounted by `ip netns exec`), removed afterwards.
"""
import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from resilience import nft_all, v6_block
from sentryproc import SCANWATCH, SentryProcess, connect, nmap, wait_for

DEBIAN_CONF = Path("/etc/portsentry/portsentry.conf")
F2B_FILTER = Path("/etc/fail2ban/filter.d/portsentry.conf")
# tripwires in PortSentry's TCP_PORTS, too few for the sweep detector (20 closed ports)
# to fire first, so the reaction is to one of these
TRIPWIRES = "1,11,15,79,111"
ADMIN_DENY = "# admin's own line\nsshd: 192.0.2.7\n"  # what SentryProcess seeds hosts.deny with


def in_ci():
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require(path, what):
    """Under CI the project's setup must have installed it; elsewhere skip without it."""
    if in_ci():
        assert path.exists(), f"{path} missing: `make setup` installs {what}"
    elif not path.exists():
        pytest.skip(f"{path} missing ({what} not installed)")


def conf(**settings):
    return "".join(f'{k}="{v}"\n' for k, v in settings.items())


def history_re(host, addr, proto="TCP"):
    return re.compile(rf"^\d+ - \d\d/\d\d/\d{{4}} \d\d:\d\d:\d\d Host: {re.escape(host)}/"
                      rf"{re.escape(addr)} Port: \d+ {proto} Blocked$", re.M)


def alert_re(host, addr):
    return re.compile(rf"attackalert: TCP SYN/Normal scan from host: {re.escape(host)}/"
                      rf"{re.escape(addr)} to TCP port: \d+$", re.M)


def lines_of(path):
    return path.read_text().splitlines() if path.exists() else []


def file_digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_snapshot(path):
    """{relative path: sha256} of every file under path (None if path does not exist)."""
    if not path.exists():
        return None
    if path.is_file():
        return {".": file_digest(path)}
    return {str(p.relative_to(path)): file_digest(p) for p in sorted(path.rglob("*"))
            if p.is_file()}


@contextlib.contextmanager
def netns_etc(lab, files):
    """/etc/netns/<target ns>/<name> files, seen as /etc/<name> by `ip netns exec`
    (so by the daemon SentryProcess starts after this); removed whatever happens."""
    base = Path("/etc/netns")
    made_base = not base.exists()
    d = base / lab.target_ns
    try:
        d.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (d / name).write_text(text)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
        if made_base:
            with contextlib.suppress(OSError):  # another test's namespace may use it now
                base.rmdir()


# --- BLOCK_TCP="0" and "2" ------------------------------------------------------------


def test_block_tcp_0_logs_and_records_but_never_blocks(lab, web):
    lab.wait_reachable()
    ip = lab.scanner_ip4
    with SentryProcess(lab, args=("-stcp",), conf=conf(BLOCK_TCP="0")) as sw:
        nmap(lab, "-sS", "-p", "1-40")
        sw.wait_log("attackalert: Ignoring TCP response per configuration file setting.")
        wait_for(lambda: history_re(ip, ip).search(sw.read("history")), what="history line")
        log = sw.log()
        assert alert_re(ip, ip).search(log), log
        # PortSentry's order: the alert, then the "Ignoring" line; no block of any kind
        assert log.index("TCP SYN/Normal scan from host") < log.index("Ignoring TCP response")
        assert "has been blocked" not in log, log
        assert len(history_re(ip, ip).findall(sw.read("history"))) == 1, sw.read("history")
        assert sw.nft_set(4) == [] and sw.nft_set(6) == []
        assert sw.read("hosts_deny") == ADMIN_DENY
        assert connect(lab, lab.target_ip4, web), "a log-only scanner must still connect"
        st = sw.status()
        assert st["blocked"] == [], st["blocked"]
        assert [(r["addr"], r["action"]) for r in st["logged"]] == [(ip, "logged")], st["logged"]
        assert st["counters"]["kernel_blocks"] == 0 and st["counters"]["dropped"] == 0
        ev = [e for e in sw.events() if e["action"] == "alert"]
        assert len(ev) == 1 and ev[0]["addr"] == ip and not ev[0]["kernel_blocked"], ev
        assert sw.stop() == 0


def test_block_tcp_2_runs_only_the_command(lab, web, tmp_path):
    lab.wait_reachable()
    ip = lab.scanner_ip4
    ran, routed = tmp_path / "ran", tmp_path / "routed"
    cfg = conf(BLOCK_TCP="2", KILL_RUN_CMD=f"echo run $TARGET$ $PORT$ $MODE$ >> {ran}",
               KILL_ROUTE=f"echo route $TARGET$ >> {routed}")
    with SentryProcess(lab, args=("-stcp",), conf=cfg) as sw:
        nmap(lab, "-sS", "-p", TRIPWIRES)
        sw.wait_log("attackalert: External command run for host:")
        log = sw.log()
        assert re.search(rf'attackalert: External command run for host: {re.escape(ip)} using '
                         rf'command: "echo run {re.escape(ip)} \d+ stcp >> {re.escape(str(ran))}"$',
                         log, re.M), log
        lines = lines_of(ran)
        assert len(lines) == 1 and re.fullmatch(rf"run {re.escape(ip)} (1|11|15|79|111) stcp", lines[0]), \
            lines
        assert not routed.exists(), "KILL_ROUTE must not run under BLOCK_TCP=2"
        assert "dropped route" not in log and "blocked via wrappers" not in log, log
        assert sw.read("hosts_deny") == ADMIN_DENY
        assert sw.nft_set(4) == []
        assert connect(lab, lab.target_ip4, web), "BLOCK_TCP=2 must not cut the scanner off"
        # PortSentry's WriteBlocked runs after a successful DisposeTCP at level 2 too
        wait_for(lambda: history_re(ip, ip).search(sw.read("history")), what="history line")
        st = sw.status()
        assert st["blocked"] == []
        assert [(r["addr"], r["action"]) for r in st["logged"]] == [(ip, "command")], st["logged"]
        assert st["counters"]["kernel_blocks"] == 0
        # a second scan in the same period runs nothing again
        nmap(lab, "-sS", "-p", "119,143")
        sw.wait_log(f"Host: {ip}/{ip} is already blocked Ignoring")
        assert len(lines_of(ran)) == 1, lines_of(ran)


# --- KILL_RUN_CMD_FIRST ---------------------------------------------------------------


@pytest.mark.parametrize("first", ["0", "1"])
def test_kill_run_cmd_first_orders_the_actions(lab, tmp_path, first):
    lab.wait_reachable()
    ip = lab.scanner_ip4
    out, deny_link = tmp_path / "order", tmp_path / "hosts.deny"
    # each action notes itself and whether hosts.deny already held our line at that moment
    count = f"grep -c ALL {deny_link} >> {out} || true"
    cfg = conf(BLOCK_TCP="1", KILL_RUN_CMD_FIRST=first,
               KILL_ROUTE=f"echo route $TARGET$ >> {out}; {count}",
               KILL_RUN_CMD=f"echo cmd $TARGET$ >> {out}; {count}")
    with SentryProcess(lab, args=("-stcp",), conf=cfg) as sw:
        # SentryProcess picks the hosts.deny path; the commands reach it through this link
        deny_link.symlink_to(sw.paths["hosts_deny"])
        nmap(lab, "-sS", "-p", "1-40")
        wait_for(lambda: len(lines_of(out)) >= 4, what="both commands ran")
        sw.wait_log("attackalert: External command run for host:")
        sw.wait_log("has been blocked via dropped route")
        got = lines_of(out)
        if first == "0":  # hosts.deny, route, command
            assert got == [f"route {ip}", "1", f"cmd {ip}", "1"], got
            order = ["has been blocked via wrappers", "has been blocked via dropped route",
                     "External command run for host"]
        else:  # command first, while hosts.deny does not have the line yet
            assert got == [f"cmd {ip}", "0", f"route {ip}", "1"], got
            order = ["External command run for host", "has been blocked via wrappers",
                     "has been blocked via dropped route"]
        log = sw.log()
        positions = [log.find(s) for s in order]
        assert -1 not in positions and positions == sorted(positions), log
        assert f'has been blocked via dropped route using command: "echo route {ip} >> {out}; ' \
               f'{count}"' in log, log
        assert sw.read("hosts_deny") == ADMIN_DENY + f"ALL: {ip}\n"
        assert ip in sw.nft_set(4)
        wait_for(lambda: history_re(ip, ip).search(sw.read("history")), what="history line")


# --- failing and hanging KILL_RUN_CMD -------------------------------------------------


def test_failing_kill_run_cmd_is_logged_with_its_exit_status(lab, web):
    lab.wait_reachable()
    ip = lab.scanner_ip4
    with SentryProcess(lab, args=("-stcp",), conf=conf(KILL_RUN_CMD="exit 3")) as sw:
        nmap(lab, "-sS", "-p", "1-40")
        sw.wait_log(f'adminalert: ERROR: command "exit 3" for {ip} exited with status 3')
        log = sw.log()
        assert "External command run for host" not in log, log
        # the failure does not undo (or prevent) the block itself
        assert ip in sw.nft_set(4)
        assert sw.read("hosts_deny") == ADMIN_DENY + f"ALL: {ip}\n"
        assert not connect(lab, lab.target_ip4, web)
        st = sw.status()
        assert [b["addr"] for b in st["blocked"]] == [ip], st
        # and detection goes on: unblock, scan over IPv6 too, both caught
        sw.cli("unblock", ip, "--run-dir", str(sw.paths["run"]))
        assert sw.nft_set(4) == []
        nmap(lab, "-sS", "-p", "1-40")
        wait_for(lambda: ip in sw.nft_set(4), what="blocked again after unblock")
        nmap(lab, "-sS", "-p", "1-40", v6=True)
        wait_for(lambda: v6_block(lab.scanner_ip6) in nft_all(lab), what="IPv6 scanner blocked")
        wait_for(lambda: sw.log().count('command "exit 3" for ') == 3, what="three failures")
        assert sw.proc.poll() is None, sw.log()
        assert {b["addr"] for b in sw.status()["blocked"]} == {ip, v6_block(lab.scanner_ip6)}
        assert sw.stop() == 0


def test_failing_kill_run_cmd_still_records_the_blocked_host(lab):
    lab.wait_reachable()
    ip = lab.scanner_ip4
    with SentryProcess(lab, args=("-stcp",), conf=conf(KILL_RUN_CMD="exit 3")) as sw:
        nmap(lab, "-sS", "-p", "1-40")
        sw.wait_log(f'command "exit 3" for {ip} exited with status 3')
        time.sleep(0.3)  # the history line is written right after the actions, if at all
        assert ip in sw.nft_set(4)
        log = sw.log()
        assert f"Could not block host {ip}/{ip}" not in log, log
        assert history_re(ip, ip).search(sw.read("history")), sw.read("history")
        assert history_re(ip, ip).search((sw.paths["blocked"].parent / "blocked.stcp")
                                         .read_text())


def test_hung_kill_run_cmd_never_delays_detection(lab, web, tmp_path):
    """The 30 s command timeout is not configurable, so the hung command is ended by
    hand (SIGKILL to its pid, which it wrote down) instead of waiting for it."""
    lab.wait_reachable()
    ip = lab.scanner_ip4
    pids = tmp_path / "pids"
    # exec: the shell becomes sleep, so $$ is the pid of the process that hangs
    cmd = f"echo $$ >> {pids}; exec sleep 100"
    with SentryProcess(lab, args=("-stcp",), conf=conf(KILL_RUN_CMD=cmd)) as sw:
        run = ("--run-dir", str(sw.paths["run"]))
        killed = []
        try:
            nmap(lab, "-sS", "-p", "1-40")
            wait_for(lambda: ip in sw.nft_set(4), what="first block")
            wait_for(lambda: len(lines_of(pids)) == 1, what="command started")
            # the command hangs: status, unblock and a new block must not wait for it
            t0 = time.monotonic()
            st = sw.status()
            assert [b["addr"] for b in st["blocked"]] == [ip], st
            assert "unblocked" in sw.cli("unblock", ip, *run).stdout
            assert sw.nft_set(4) == [] and sw.status()["blocked"] == []
            assert connect(lab, lab.target_ip4, web)
            nmap(lab, "-sS", "-p", "1-40")
            wait_for(lambda: ip in sw.nft_set(4), timeout=2, what="second block while hung")
            assert [b["addr"] for b in sw.status()["blocked"]] == [ip]
            assert not connect(lab, lab.target_ip4, web)
            assert time.monotonic() - t0 < 15
            # the second block's report waits behind the hung command (one ordered worker)
            assert len(alert_re(ip, ip).findall(sw.log())) == 1, sw.log()
            assert len(lines_of(pids)) == 1
            # end the hung command: its end is logged with its status, the queue moves on
            for n in (1, 2):
                pid = int(wait_for(lambda: len(lines_of(pids)) >= n and lines_of(pids)[n - 1],
                                   what=f"command {n} started"))
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                wait_for(lambda: sw.log().count(f"for {ip} was killed by signal 9") == n,
                         what=f"command {n} end logged")
            log = sw.log()
            assert 'adminalert: ERROR: command "echo ' in log and "exec sleep 100" in log, log
            assert len(alert_re(ip, ip).findall(log)) == 2, log
            assert sw.proc.poll() is None and sw.status()["running"]
        finally:
            for line in lines_of(pids):  # never leave a sleep 100 behind
                if line.isdigit() and int(line) not in killed:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(line), signal.SIGKILL)
        assert sw.stop() == 0


# --- SCAN_TRIGGER ---------------------------------------------------------------------


def test_scan_trigger_3_tolerates_three_probes_and_blocks_the_fourth(lab, web):
    lab.wait_reachable()
    ip = lab.scanner_ip4
    with SentryProcess(lab, args=("-stcp",), conf=conf(SCAN_TRIGGER="3", SWEEP_PORTS="0")) as sw:
        for n, port in enumerate((1, 11, 15), 1):
            nmap(lab, "-sS", "-p", str(port))
            wait_for(lambda: sw.status()["counters"]["tripwire"] == n, what=f"hit {n} counted")
            st = sw.status()
            assert st["blocked"] == [] and st["logged"] == [], st
            assert st["counters"]["kernel_blocks"] == 0 and st["counters"]["dropped"] == 0
            assert sw.nft_set(4) == []
        assert connect(lab, lab.target_ip4, web)
        assert "attackalert" not in sw.log(), sw.log()
        assert sw.read("hosts_deny") == ADMIN_DENY and sw.read("history") == ""
        out = nmap(lab, "-sS", "-p", "79")  # the fourth: reacted to, and cut off at once
        assert "79/filtered/tcp" in out, out
        sw.wait_block_event()
        assert re.search(rf"from host: {re.escape(ip)}/{re.escape(ip)} to TCP port: 79$",
                         sw.log(), re.M), sw.log()
        assert ip in sw.nft_set(4)
        st = sw.status()
        assert [(b["addr"], b["port"]) for b in st["blocked"]] == [(ip, 79)], st["blocked"]
        assert st["counters"]["kernel_blocks"] == 1
        block = [e for e in sw.events() if e["action"] == "block"]
        assert len(block) == 1 and block[0]["tripwire_hits"] == 4 and block[0]["kernel_blocked"]
        assert not connect(lab, lab.target_ip4, web)


# --- Debian's portsentry.conf and fail2ban's filter -----------------------------------


def test_debians_portsentry_conf_runs_unchanged(lab, web):
    require(DEBIAN_CONF, "portsentry")
    lab.wait_reachable()
    ip = lab.scanner_ip4
    before = file_digest(DEBIAN_CONF)
    watched = [Path("/var/lib/portsentry"), Path("/etc/hosts.deny"), Path("/etc/portsentry"),
               Path("/var/lib/scanwatch"), Path("/run/scanwatch")]
    snap = {p: tree_snapshot(p) for p in watched}
    try:
        res = lab.run(lab.target_ns, *SCANWATCH, "config", "check", "-c", DEBIAN_CONF,
                      timeout=30)
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"{DEBIAN_CONF}: OK (26 TCP ports, 21 UDP ports" in res.stdout, res.stdout
        assert "warning" not in res.stderr, res.stderr
        # only command-line options redirect paths (SentryProcess adds --ignore-file,
        # --history-file, --blocked-file, --hosts-deny, --state-dir, --run-dir)
        with SentryProcess(lab, args=("-c", str(DEBIAN_CONF), "-stcp")) as sw:
            st = sw.status()
            assert st["config"] == str(DEBIAN_CONF) and st["modes"] == ["stcp"], st
            assert "warning" not in sw.log(), sw.log()
            nmap(lab, "-sS", "-p", "1-40")
            sw.wait_log("attackalert: Ignoring TCP response per configuration file setting.")
            assert alert_re(ip, ip).search(sw.log()), sw.log()
            wait_for(lambda: history_re(ip, ip).search(sw.read("history")), what="history")
            assert sw.nft_set(4) == [] and sw.read("hosts_deny") == ADMIN_DENY
            assert "dropped route" not in sw.log(), sw.log()  # Debian's KILL_ROUTE: not at 0
            assert connect(lab, lab.target_ip4, web)
            assert sw.status()["logged"][0]["addr"] == ip
            assert sw.stop() == 0
    finally:
        assert file_digest(DEBIAN_CONF) == before, f"{DEBIAN_CONF} was modified"
    assert {p: tree_snapshot(p) for p in watched} == snap



def test_fail2ban_portsentry_filter_reads_our_history(lab):
    f2b = shutil.which("fail2ban-regex")
    if in_ci():
        assert f2b, "fail2ban-regex missing: `make setup` installs fail2ban"
    elif not f2b:
        pytest.skip("fail2ban is not installed")
    require(F2B_FILTER, "fail2ban")
    lab.wait_reachable()
    with SentryProcess(lab, args=("-stcp",)) as sw:
        nmap(lab, "-sS", "-p", "1-40")
        nmap(lab, "-sS", "-p", "1-40", v6=True)
        wait_for(lambda: len(lines_of(sw.paths["history"])) == 2, what="two history lines")
        blocked = {b["addr"] for b in sw.status()["blocked"]}
        assert blocked == {lab.scanner_ip4, v6_block(lab.scanner_ip6)}, blocked
        # the history names the address that triggered (fail2ban bans that one)
        blocked = {lab.scanner_ip4, lab.scanner_ip6}
        hist = str(sw.paths["history"])
        res = subprocess.run([f2b, "-o", "ip", hist, str(F2B_FILTER)], capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        found = res.stdout.split()
        assert sorted(found) == sorted(blocked), (res.stdout, lines_of(sw.paths["history"]))
        res = subprocess.run([f2b, hist, str(F2B_FILTER)], capture_output=True, text=True,
                             timeout=60)
        assert res.returncode == 0, res.stderr
        assert "Lines: 2 lines, 0 ignored, 2 matched, 0 missed" in res.stdout, res.stdout
        assert re.search(r"\[2\] \{\^LN-BEG\}Epoch", res.stdout), res.stdout


# --- LOG_FORMAT="portsentry2" ---------------------------------------------------------


def test_log_format_portsentry2_adds_the_scan_from_line(lab):
    lab.wait_reachable()
    ip = lab.scanner_ip4
    with SentryProcess(lab, args=("-stcp",), conf=conf(LOG_FORMAT="portsentry2")) as sw:
        nmap(lab, "-sS", "-p", TRIPWIRES)
        sw.wait_log("Scan from: [")
        log = sw.log()
        assert alert_re(ip, ip).search(log), log  # the 1.2 lines stay
        e = re.escape(ip)
        m = re.search(rf"Scan from: \[{e}\] \({e}\) protocol: \[TCP\] port: \[(\d+)\] "
                      r"type: \[TCP SYN/Normal scan\] IP opts: \[not set\] ignored: \[false\] "
                      r"triggered: \[true\] noblock: \[false\] blocked: \[true\]$", log, re.M)
        assert m and int(m.group(1)) in (1, 11, 15, 79, 111), log
        # and it follows the 1.2 alert for the same port
        assert log.index("TCP SYN/Normal scan from host") < m.start()


# --- RESOLVE_HOST ---------------------------------------------------------------------

HOSTS_BASE = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n"


def dead_resolv(lab, timeout=4):
    """resolv.conf naming a nameserver that is there but never answers: 198.18.X.99 gets
    a permanent neighbour entry (the scanner's MAC) in the target namespace, so queries
    leave at once and the scanner's kernel drops them (not its address): no ARP failure,
    no ICMP error, only silence until glibc's timeout. Nothing leaves the lab."""
    ns_ip = f"{lab.target_ip4.rsplit('.', 1)[0]}.99"
    mac = lab.run(lab.scanner_ns, "cat", f"/sys/class/net/{lab.scanner_if}/address").stdout
    res = lab.run(lab.target_ns, "ip", "neigh", "replace", ns_ip, "lladdr", mac.strip(),
                  "dev", lab.target_if, "nud", "permanent")
    assert res.returncode == 0, res.stderr
    return f"nameserver {ns_ip}\noptions timeout:{timeout} attempts:1\n"


def test_resolve_host_dead_dns_never_delays_the_block(lab, web):
    lab.wait_reachable()
    ip = lab.scanner_ip4
    with netns_etc(lab, {"resolv.conf": dead_resolv(lab), "hosts": HOSTS_BASE}):
        with SentryProcess(lab, args=("-stcp",), conf=conf(RESOLVE_HOST="1")) as sw:
            t0 = time.monotonic()
            # one SYN to a tripwire; the kernel drops it, the client gives up after 0.3 s
            assert not connect(lab, lab.target_ip4, 1, timeout=0.3)
            wait_for(lambda: ip in sw.nft_set(4), timeout=1.5, what="nft element",
                     step=0.02)
            blocked_after = time.monotonic() - t0
            assert not connect(lab, lab.target_ip4, web, timeout=0.3)
            sw.wait_log("TCP SYN/Normal scan from host", timeout=6)
            logged_after = time.monotonic() - t0
            log = sw.log()
            assert re.search(rf"from host: {re.escape(ip)}/{re.escape(ip)} to TCP port: 1$",
                             log, re.M), log
            # the name lookup really hung (the resolver gave up at its 2 s timeout) ...
            assert 1.5 < logged_after < 5, (blocked_after, logged_after)
            # ... while the block was in place long before the log line
            assert blocked_after < logged_after - 1, (blocked_after, logged_after)
            ev = wait_for(lambda: [e for e in sw.events() if e["action"] == "block"],
                          what="block event")[0]
            assert ev["nft_latency_ms"] < 50, ev
            assert ev["host"] == ip, ev
            wait_for(lambda: history_re(ip, ip).search(sw.read("history")), what="history")
            assert sw.proc.poll() is None


def test_resolve_host_dead_dns_does_not_delay_shutdown(lab):
    lab.wait_reachable()
    ip = lab.scanner_ip4
    with netns_etc(lab, {"resolv.conf": dead_resolv(lab, timeout=6), "hosts": HOSTS_BASE}):
        with SentryProcess(lab, args=("-stcp",), conf=conf(RESOLVE_HOST="1")) as sw:
            assert not connect(lab, lab.target_ip4, 1, timeout=0.3)
            sw.wait_log("TCP SYN/Normal scan from host", timeout=6)  # resolver gave up
            wait_for(lambda: history_re(ip, ip).search(sw.read("history")), what="history")
            t0 = time.monotonic()
            assert sw.stop() == 0
            took = time.monotonic() - t0
            # the lookup itself is stuck ~4 s more; the daemon has nothing left to do
            assert took < 2.5, f"SIGTERM took {took:.1f}s"


def test_resolve_host_hostile_name_is_never_used(lab, tmp_path):
    lab.wait_reachable()
    ip = lab.scanner_ip4
    pwned = Path(f"/tmp/pwned-{uuid.uuid4().hex[:12]}")
    hostile = f"evil$(touch${{IFS}}{pwned})"
    ran = tmp_path / "ran"
    try:
        with netns_etc(lab, {"resolv.conf": dead_resolv(lab),
                             "hosts": HOSTS_BASE + f"{ip}\t{hostile}\n"}):
            # the name really is what the target namespace's resolver returns
            res = lab.run(lab.target_ns, "getent", "hosts", ip)
            assert hostile in res.stdout, res.stdout + res.stderr
            cfg = conf(RESOLVE_HOST="1", KILL_RUN_CMD=f"echo $TARGET$ >> {ran}")
            with SentryProcess(lab, args=("-stcp",), conf=cfg) as sw:
                nmap(lab, "-sS", "-p", "1-40")
                sw.wait_log("attackalert: External command run for host:")
                wait_for(lambda: history_re(ip, ip).search(sw.read("history")),
                         what="history line with the address as host")
                assert lines_of(ran) == [ip]
                log = sw.log()
                assert alert_re(ip, ip).search(log), log
                assert "evil" not in log and "touch" not in log, log
                assert "evil" not in sw.read("history") + sw.read("hosts_deny")
                ev = [e for e in sw.events() if e["action"] == "block"]
                assert ev and ev[0]["host"] == ip, ev
        assert not pwned.exists(), "the host name was run by a shell"
    finally:
        with contextlib.suppress(FileNotFoundError):
            pwned.unlink()


def test_resolve_host_clean_name_appears_in_log_and_history(lab):
    lab.wait_reachable()
    ip = lab.scanner_ip4
    with netns_etc(lab, {"resolv.conf": dead_resolv(lab),
                         "hosts": HOSTS_BASE + f"{ip}\tscanner.lab.test\n"}):
        with SentryProcess(lab, args=("-stcp",), conf=conf(RESOLVE_HOST="1")) as sw:
            nmap(lab, "-sS", "-p", "1-40")
            sw.wait_block_event()
            log = sw.log()
            assert alert_re("scanner.lab.test", ip).search(log), log
            wait_for(lambda: history_re("scanner.lab.test", ip).search(sw.read("history")),
                     what="history line with the name")
            # hosts.deny and the commands get the address, never the name
            assert sw.read("hosts_deny") == ADMIN_DENY + f"ALL: {ip}\n"
            assert f'blocked via wrappers with string: "ALL: {ip}"' in log
