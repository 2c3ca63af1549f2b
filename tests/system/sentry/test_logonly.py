"""Log-only mode (BLOCK_TCP="0", BLOCK_UDP="0") reports scans as PortSentry does.

One host runs nmap -sF, -sN, -sX, then -sU. Debian's portsentry 1.2 (-stcp and -sudp, its two
processes) and scanwatch (-stcp -sudp) watch the same target at the same time, so they see the
very same packets, and their logs and records are compared. In blocking mode the first probe
cuts the host off, so the later scans are never seen (by either tool).
"""
import re
from collections import Counter

from portsentryproc import Portsentry
from sentryproc import SentryProcess, nmap, wait_for
from scanwatch.sentry.defaults import PORTSENTRY_TCP_PORTS, PORTSENTRY_UDP_PORTS

TCP = "1,11,15,79,111"       # tripwires in both tools' TCP_PORTS (too few for a sweep)
UDP = "1,7,9,69,161"         # and in UDP_PORTS
SEQUENCE = (("-sF", TCP), ("-sN", TCP), ("-sX", TCP), ("-sU", UDP))
ALERT = re.compile(r"attackalert: .*")
STAMP = re.compile(r"^\d+ - \d\d/\d\d/\d{4} \d\d:\d\d:\d\d ", re.M)


def alerts(lines):
    return [m.group(0) for line in lines for m in [ALERT.search(line)] if m]


def conf(block):
    return "".join(f'{k}="{v}"\n' for k, v in {
        "BLOCK_TCP": block, "BLOCK_UDP": block, "SCAN_TRIGGER": 0,
        "TCP_PORTS": PORTSENTRY_TCP_PORTS, "UDP_PORTS": PORTSENTRY_UDP_PORTS}.items())


def run_sequence(lab, *watchers, settle):
    for flag, ports in SEQUENCE:
        nmap(lab, flag, "-p", ports)
        try:
            wait_for(lambda: all(settle(w, flag) for w in watchers), 10, what=f"{flag} logged")
        except AssertionError as err:
            logs = [w.lines() if w is watchers[0] else w.log().splitlines() for w in watchers]
            raise AssertionError(f"{err}: {logs}") from None


def typed(flag):
    return {"-sF": "TCP FIN scan", "-sN": "TCP NULL scan", "-sX": "TCP XMAS scan",
            "-sU": "UDP scan"}[flag]


def test_log_only_reports_every_probe_and_both_protocols_like_portsentry(lab):
    lab.wait_reachable()
    ip = lab.scanner_ip4
    with Portsentry(lab, tcp_ports=PORTSENTRY_TCP_PORTS, udp_ports=PORTSENTRY_UDP_PORTS) as ps, \
            SentryProcess(lab, args=("-stcp", "-sudp"), conf=conf(0)) as sw:
        def settle(w, flag):
            lines = w.lines() if w is ps else w.log().splitlines()
            return sum(typed(flag) in line for line in lines) >= 5
        run_sequence(lab, ps, sw, settle=settle)
        sw.wait_history(ip)
        wait_for(lambda: sw.read("history").count(f"Host: {ip}/{ip}") == 2, 5,
                 what="a second history line (UDP)")
        ours, theirs = alerts(sw.log().splitlines()), alerts(ps.lines())
        # Every probe of every scan type has its typed line, then "already blocked".
        for flag, _ports in SEQUENCE:
            want = {f"attackalert: {typed(flag)} from host: {ip}/{ip} to "
                    f"{'UDP' if flag == '-sU' else 'TCP'} port: {p}"
                    for p in (UDP if flag == "-sU" else TCP).split(",")}
            # (PortSentry writes "attackalert:  TCP NULL scan", two spaces: so do we)
            assert want <= {" ".join(a.split()) for a in theirs}, (flag, "\n".join(theirs))
            assert want <= {" ".join(a.split()) for a in ours}, (flag, "\n".join(ours))
        assert Counter(theirs) == Counter(ours), (
            f"portsentry only: {Counter(theirs) - Counter(ours)}\n"
            f"scanwatch only: {Counter(ours) - Counter(theirs)}")
        # One record per protocol, as PortSentry's two processes write.
        for mode in ("stcp", "sudp"):
            ours_rec = STAMP.sub("", (sw.dir / f"blocked.{mode}").read_text())
            theirs_rec = STAMP.sub("", ps.read(f"blocked.{mode}"))
            assert ours_rec == theirs_rec and ours_rec.count(f"Host: {ip}/") == 1, (mode, ours_rec,
                                                                         theirs_rec)
        assert STAMP.sub("", sw.read("history")) == STAMP.sub("", ps.read("history"))
        st = sw.status()
        assert [(r["addr"], r["modes"]) for r in st["logged"]] == [(ip, ["stcp", "sudp"])]
        assert st["blocked"] == [] and sw.nft_set(4) == []
        assert sw.stop() == 0


def test_blocking_mode_sees_only_the_first_probe(lab):
    lab.wait_reachable()
    ip = lab.scanner_ip4
    with SentryProcess(lab, args=("-stcp", "-sudp"), conf=conf(1)) as sw:
        for flag, ports in SEQUENCE:
            nmap(lab, flag, "-p", ports)
        sw.wait_history(ip)
        ours = alerts(sw.log().splitlines())
        scans = [a for a in ours if " scan from host: " in a]
        assert len(scans) == 1 and "TCP FIN scan" in scans[0], ours
        assert not any("already blocked" in a for a in ours), ours
        assert (sw.dir / "blocked.stcp").read_text().count(f"Host: {ip}/") == 1
        assert f"Host: {ip}/" not in ((sw.dir / "blocked.sudp").exists()
                                      and (sw.dir / "blocked.sudp").read_text() or "")
        assert sw.read("history").count(f"Host: {ip}/") == 1
        assert sw.nft_set(4) == [ip]
        assert sw.stop() == 0
