"""`scanwatch report --html` opened in Debian's real headless Chromium: the charts are
drawn (the screenshot is not blank, the images decoded) and the numbers on the page
are the ones in the records. Chromium runs in a network namespace of its own with no
interface up but loopback, so the page provably needs no network."""
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter

import pytest

CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]
KINDS = ("SYN/Normal", "FIN", "NULL", "XMAS", "UDP")


def make_events(path, now):
    """300 reports from 12 sources over the last 20 h; every fifth one a block."""
    rows = []
    with open(path, "w") as f:
        for i in range(300):
            t = now - 72000 + i * 240
            kind = KINDS[i % 5]
            rec = {"type": "scan", "addr": f"198.18.9.{i % 12 + 1}", "scan_type": kind,
                   "port": [22, 23, 80, 111, 443, 3306][i % 6],
                   "proto": "UDP" if kind == "UDP" else "TCP",
                   "action": "block" if i % 5 == 0 else "alert", "evidence": "stealth",
                   "dry_run": False,
                   "time": time.strftime("%Y-%m-%dT%H:%M:%S.000+00:00", time.gmtime(t))}
            rows.append(rec)
            f.write(json.dumps(rec, sort_keys=True) + "\n")
    return rows


def chromium(args, user_dir, timeout=120):
    # `unshare --net`: a fresh network namespace (loopback only, down) for the browser
    return subprocess.run(["unshare", "--net", CHROMIUM, *FLAGS, f"--user-data-dir={user_dir}",
                           *args], capture_output=True, timeout=timeout)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/setup.sh)")
def test_html_report_renders_in_chromium(tmp_path):
    from PIL import Image
    now = time.time()
    events = tmp_path / "events.jsonl"
    rows = make_events(events, now)
    page = tmp_path / "report.html"
    res = subprocess.run([sys.executable, "-c", "from scanwatch.cli import main; main()",
                          "report", "--events", str(events), "--since", "24h",
                          "--html", str(page)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    user_dir = tempfile.mkdtemp(prefix="swtest-chromium-", dir=tmp_path)
    dom = chromium(["--dump-dom", page.as_uri()], user_dir)
    assert dom.returncode == 0, dom.stderr.decode()[-2000:]
    html = dom.stdout.decode()
    # numbers on the page = numbers counted here from the same records
    blocks = sum(r["action"] == "block" for r in rows)
    assert re.search(r"id=\"reports\">(\d+)<", html).group(1) == str(len(rows))
    assert re.search(r"id=\"blocks\">(\d+)<", html).group(1) == str(blocks)
    assert re.search(r"id=\"sources\">(\d+)<", html).group(1) == "12"
    top_port, top_n = Counter(f"{r['port']}/{r['proto'].lower()}" for r in rows).most_common(1)[0]
    assert f"<td>{top_port}</td><td>{top_n}</td>" in html
    shot = tmp_path / "shot.png"
    res = chromium([f"--screenshot={shot}", "--window-size=1000,2400", page.as_uri()],
                   tempfile.mkdtemp(prefix="swtest-chromium-", dir=tmp_path))
    assert res.returncode == 0 and shot.exists(), res.stderr.decode()[-2000:]
    img = Image.open(shot).convert("RGB")
    assert img.size == (1000, 2400)
    # the first chart (stacked bars, y ~ 150..510) holds many saturated pixels: the
    # image was decoded and drawn, not a broken-image icon or white space
    band = img.crop((0, 120, 1000, 600))
    colours = band.getcolors(maxcolors=1 << 20)
    saturated = sum(n for n, (r, g, b) in colours if max(r, g, b) - min(r, g, b) > 80)
    assert saturated > 5000, saturated
    assert len(colours) > 100
