"""`scanwatch report`: folding records into counts, the text summary, PNG and HTML."""
import base64
import json
import re
import subprocess
import sys

import pytest

from scanwatch.errors import ConfigError
from scanwatch.sentry.respond.records import history_line, portsentry2_scan_line
from scanwatch.sentry.admin import charts, summary as report

NOW = 1_800_000_000.0


def iso(epoch):
    import datetime
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat(
        timespec="milliseconds")


def write_events(path, rows):
    with open(path, "w") as f:
        for t, addr, kind, port, action in rows:
            f.write(json.dumps({"type": "scan", "time": iso(t), "addr": addr, "scan_type": kind,
                                "port": port, "proto": "UDP" if kind == "UDP" else "TCP",
                                "action": action, "evidence": "stealth", "dry_run": False},
                               sort_keys=True, separators=(",", ":")) + "\n")
        f.write('{"type":"expire","addr":"198.18.0.2","time":"%s"}\n' % iso(NOW - 10))
        f.write('{"type":"scan","time":"2026-\n')  # torn by a crash


ROWS = [(NOW - 7200, "198.18.0.2", "SYN/Normal", 22, "alert"),
        (NOW - 7190, "198.18.0.2", "SYN/Normal", 23, "block"),
        (NOW - 3600, "198.18.0.3", "FIN", 22, "block"),
        (NOW - 3000, "198.18.0.4", "UDP", 53, "alert"),
        (NOW - 90000, "198.18.0.9", "XMAS", 80, "block")]  # older than 24 h


@pytest.fixture
def events(tmp_path):
    path = tmp_path / "events.jsonl"
    write_events(path, ROWS)
    return path


def test_events_are_counted_in_the_window(events):
    s = report.load(str(events), since=86400, now=NOW)
    assert (s.reports, s.blocks, len(s.sources), s.skipped, s.lines) == (4, 2, 3, 1, 7)
    assert s.ports == {"22/tcp": 2, "23/tcp": 1, "53/udp": 1}
    assert s.top_sources(1)[0][0] == "198.18.0.2"
    assert s.time_to_block() == [0.0, pytest.approx(10.0, abs=0.01)]
    assert sum(s.per_hour.values()) == 4 and s.scan_types() == ["FIN", "SYN/Normal", "UDP"]
    assert report.load(str(events), since=200000, now=NOW).reports == 5


def test_portsentry_history_alone(tmp_path):
    path = tmp_path / "portsentry.history"
    path.write_text(history_line(NOW - 100, "evil.example", "198.18.5.5", 111, "TCP") + "\n"
                    + "garbage\n"
                    + history_line(NOW - 50, "198.18.5.6", "198.18.5.6", 9, "UDP") + "\n")
    s = report.load(None, [str(path)], since=3600, now=NOW)
    assert (s.reports, s.blocks, len(s.sources), s.skipped) == (2, 2, 2, 1)
    assert s.ports == {"111/tcp": 1, "9/udp": 1}
    text = report.text_summary(s)
    assert "reports: 2  blocks: 2  sources: 2" in text and "198.18.5.5" in text


def test_since_parsing():
    assert report.parse_since("24h") == 86400 and report.parse_since("90m") == 5400
    assert report.parse_since("7d") == 604800 and report.parse_since("30") == 30
    for bad in ("2x", "-1h", "", "0"):
        with pytest.raises(ConfigError):
            report.parse_since(bad)


def test_pngs_are_drawn(tmp_path, events):
    from PIL import Image  # matplotlib depends on Pillow
    s = report.load(str(events), since=86400, now=NOW)
    paths = charts.write_pngs(s, tmp_path / "png")
    assert sorted(p.rsplit("/", 1)[1] for p in paths) == sorted(f"{c}.png" for c in charts.CHARTS)
    for p in paths:
        img = Image.open(p).convert("RGB")
        assert img.size == (900, 360)
        colours = img.getcolors(maxcolors=1 << 16)
        # more than a blank canvas: axes, labels and coloured bars
        assert colours is None or len(colours) > 50
        coloured = sum(n for n, (r, g, b) in colours or [] if max(r, g, b) - min(r, g, b) > 60)
        assert colours is None or coloured > 200, p


def test_html_is_self_contained(events):
    page = charts.html_page(report.load(str(events), since=86400, now=NOW))
    assert re.findall(r"(?:src|href)=['\"](?!data:)", page) == []
    assert "<script" not in page and "@import" not in page and "url(" not in page
    imgs = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(imgs) == len(charts.CHARTS)
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in imgs)
    assert "<td id='reports'>4</td>" in page and "<td id='blocks'>2</td>" in page
    # the services attackers looked for, by name (/etc/services), beside the port
    assert "<tr><td>22/tcp</td><td>2</td><td>ssh</td></tr>" in page
    assert "<tr><td>53/udp</td><td>1</td><td>domain</td></tr>" in page


def test_service_names():
    assert report.service_name("22/tcp") == "ssh" and report.service_name("53/udp") == "domain"
    assert report.service_name("64999/tcp") == "" and report.service_name("x/tcp") == ""


def test_cli_errors_are_one_line(tmp_path):
    def sw(*args):
        return subprocess.run([sys.executable, "-c", "from scanwatch.cli import main; main()",
                               "report", *args], capture_output=True, text=True)
    res = sw("--events", str(tmp_path / "nope.jsonl"))
    assert res.returncode != 0 and res.stderr.startswith("error: ") and \
        res.stderr.count("\n") == 1 and "nope.jsonl" in res.stderr
    res = sw("--since", "soon", "--events", str(tmp_path / "x"))
    assert res.returncode != 0 and res.stderr.startswith("error: --since")


def test_portsentry2_history(tmp_path):
    path = tmp_path / "portsentry2.history"
    path.write_text("\n".join([
        portsentry2_scan_line("198.18.6.1", "h", "TCP", 23, "XMAS", triggered=True,
                              blocked=True, when=NOW - 30),
        portsentry2_scan_line("198.18.6.1", "h", "TCP", 24, "Unknown Type", flags=0x29,
                              blocked=False, when=NOW - 20),
        portsentry2_scan_line("198.18.6.2", "h", "UDP", 53, "UDP", blocked=True,
                              when=NOW - 10),
        portsentry2_scan_line("198.18.6.3", "h", "TCP", 1, "SYN/Normal", when=NOW - 7200),
    ]) + "\n")
    s = report.load(None, [str(path)], since=3600, now=NOW)
    assert (s.reports, s.blocks, len(s.sources), s.skipped) == (3, 2, 2, 0)
    assert s.scan_types() == ["UDP", "Unknown Type", "XMAS"]
    assert s.sources["198.18.6.1"].blocks == 1 and s.sources["198.18.6.1"].reports == 2
