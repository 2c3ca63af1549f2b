"""`scanwatch report` over the records a real daemon wrote while nmap scanned it (IPv4
SYN and IPv6 FIN scans from the scanner namespace): the numbers it prints are the ones
in events.jsonl, the history file alone gives the blocks, and --png draws every chart."""
import re
import subprocess
import sys

from sentryproc import SentryProcess, nmap, wait_for

from scanwatch.sentry.admin.charts import CHARTS


def report(*args):
    res = subprocess.run([sys.executable, "-c", "from scanwatch.cli import main; main()",
                          "report", *map(str, args)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


def totals(text):
    m = re.search(r"^reports: (\d+)  blocks: (\d+)  sources: (\d+)", text, re.M)
    assert m, text
    return tuple(map(int, m.groups()))


def test_report_of_a_scanned_daemons_records(lab, tmp_path):
    from PIL import Image
    lab.wait_reachable()
    with SentryProcess(lab) as sw:
        nmap(lab, "-sS", "-p", "1-40")
        nmap(lab, "-sF", "-p", "1-40", v6=True)

        def blocks():
            return [e for e in sw.events() if e.get("action") == "block"]

        wait_for(lambda: len(blocks()) == 2, 10, "both scanners blocked")
        sw.wait_history(lab.scanner_ip6)
    scans = [e for e in sw.events() if e.get("type") == "scan"]
    text = report("--state-dir", sw.paths["state"], "--since", "1h")
    assert totals(text) == (len(scans), 2, 2), text
    for addr in (lab.scanner_ip4, lab.scanner_ip6):
        row = re.search(rf"^{re.escape(addr)}\s+(\d+)\s+(\d+)\s", text, re.M)
        assert row, text
        mine = [e for e in scans if e["addr"] == addr]
        assert (int(row.group(1)), int(row.group(2))) == (len(mine), 1)
    assert re.search(r"^by type: .*SYN/Normal \d+", text, re.M)
    assert re.search(r"^by type: .*FIN \d+", text, re.M)
    ports = {f"{e['port']}/{e['proto'].lower()}" for e in scans}
    listed = re.search(r"^ports probed most: (.*)$", text, re.M).group(1).split("  ")
    assert listed and all(p.split()[0] in ports for p in listed)
    assert re.search(r"^time to block: median \d+\.\ds", text, re.M)
    # the PortSentry-format history file alone: one block (and its report) per line
    hist = report("--history", sw.paths["history"], "--since", "1h")
    assert totals(hist) == (2, 2, 2), hist
    # --png: every chart, as an image of the expected size
    out = report("--state-dir", sw.paths["state"], "--since", "1h", "--png", tmp_path / "png")
    paths = out.split()
    assert sorted(p.rsplit("/", 1)[1] for p in paths) == sorted(f"{c}.png" for c in CHARTS)
    for p in paths:
        img = Image.open(p)
        assert img.size == (900, 360) and img.format == "PNG"
