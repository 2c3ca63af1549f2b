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

from scanwatch.sentry.admin.charts import CHARTS

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
    res = chromium([f"--screenshot={shot}", "--window-size=1000,2600", page.as_uri()],
                   tempfile.mkdtemp(prefix="swtest-chromium-", dir=tmp_path))
    assert res.returncode == 0 and shot.exists(), res.stderr.decode()[-2000:]
    img = Image.open(shot).convert("RGB")
    assert img.size == (1000, 2600)
    assert len(img.getcolors(maxcolors=1 << 20)) > 100
    # every chart was decoded and drawn: each is a band of rows holding coloured pixels
    # (bars, legend), one per chart down the page; a broken-image icon, a blank image or
    # a missing one would leave fewer bands
    bands = coloured_bands(img)
    assert len(bands) == len(CHARTS), bands
    assert all(hi - lo > 100 for lo, hi, _ in bands), bands  # each a chart, not a stray glyph
    assert all(n > 2000 for _, _, n in bands), bands


def coloured_bands(img, gap=40):
    """[(first row, last row, coloured pixels)] of runs of rows that hold saturated
    pixels, runs closer than `gap` rows merged."""
    w, h = img.size
    px = img.load()
    counts = []
    for y in range(h):
        n = 0
        for x in range(0, w, 2):
            r, g, b = px[x, y]
            n += max(r, g, b) - min(r, g, b) > 80
        counts.append(n)
    bands = []
    for y, n in enumerate(counts):
        if not n:
            continue
        if bands and y - bands[-1][1] <= gap:
            lo, _, total = bands[-1]
            bands[-1] = (lo, y, total + n)
        else:
            bands.append((y, y, n))
    return bands
