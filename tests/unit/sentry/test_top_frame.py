"""`scanwatch top`'s frame, drawn by rich from a fixed snapshot (no daemon)."""
from rich.console import Console

from scanwatch.sentry.admin import top

NOW = 1_800_000_000.0


def snapshot(syn=1000, sources=None):
    return {
        "pid": 4242, "since": NOW - 3725, "now": NOW, "dry_run": False,
        "modes": ["stcp", "sudp"], "interfaces": {"veth0": "native"},
        "packets": {"SYN/Normal": syn, "FIN": 7, "NULL": 0, "XMAS": 3, "Unknown Type": 0,
                    "UDP": 11},
        "counters": {"dropped": 55, "events_lost": 2},
        "blocks_active": 1, "blocks_total": 4,
        "sources": sources if sources is not None else [
            {"addr": "198.18.0.2", "reports": 40, "kinds": {"SYN/Normal": 38, "FIN": 2},
             "ports": 33, "first": NOW - 60, "last": NOW - 1, "state": "blocked",
             "evidence": "stealth", "left": 3540.0},
            {"addr": "198.18.7.9", "reports": 2, "kinds": {"UDP": 2}, "ports": 2,
             "first": NOW - 30, "last": NOW - 5, "state": "watching", "evidence": None,
             "left": None}],
        "recent": [{"time": NOW - 1, "addr": "198.18.0.2", "scan_type": "SYN/Normal",
                    "port": 23, "proto": "TCP", "action": "block", "reason": "trigger"}],
    }


def render(snap, view, width=80, height=24):
    console = Console(width=width, height=height, record=True, force_terminal=False,
                      color_system=None, file=open("/dev/null", "w"))
    console.print(top.frame(snap, view, height))
    return console.export_text()


def test_frame_fits_80x24_and_shows_the_scanner_row_and_its_block():
    view = top.View()
    view.feed(snapshot(syn=1000), 10.0)
    view.feed(snapshot(syn=1500), 11.0)  # 500 SYN/s
    text = render(snapshot(syn=1500), view)
    lines = text.rstrip("\n").split("\n")
    assert len(lines) <= 24 and max(map(len, lines)) <= 80
    assert "pid 4242" in text and "up 1h" in text and "veth0 (native)" in text
    assert "500/s" in text
    row = next(line for line in lines if "198.18.0.2" in line and "blocked" in line)
    assert "40" in row and "SYN,FIN" in row and "33" in row and "59m" in row
    assert "stealth" in row
    assert "blocks 1 active / 4 made" in text and "events lost 2" in text
    assert "block   198.18.0.2 SYN/Normal 23/tcp" in text
    # the sparkline of SYN shows the jump; FIN stayed flat at the lowest bar
    syn_line = next(line for line in lines if line.startswith("SYN "))
    fin_line = next(line for line in lines if line.startswith("FIN "))
    assert syn_line.endswith("▁" * (top.HISTORY - 1) + "█")
    assert fin_line.endswith("▁" * top.HISTORY)


def test_sort_filter_and_unblock_keys():
    snap = snapshot()
    view = top.View()
    asked = []
    assert [s["addr"] for s in view.rows(snap)] == ["198.18.0.2", "198.18.7.9"]
    top.handle_key(view, "s", view.rows(snap), asked.append)  # -> address
    top.handle_key(view, "s", view.rows(snap), asked.append)  # -> ports
    assert view.sort == "ports"
    for key in "/7.9\r":
        top.handle_key(view, key, view.rows(snap), asked.append)
    assert [s["addr"] for s in view.rows(snap)] == ["198.18.7.9"]
    top.handle_key(view, "u", view.rows(snap), asked.append)
    assert "unblock 198.18.7.9? y/n" in render(snap, view)
    top.handle_key(view, "n", view.rows(snap), asked.append)
    assert asked == []
    top.handle_key(view, "u", view.rows(snap), asked.append)
    top.handle_key(view, "y", view.rows(snap), lambda a: asked.append(a) or f"{a} unblocked")
    assert asked == ["198.18.7.9"] and "198.18.7.9 unblocked" in render(snap, view)
    assert top.handle_key(view, "q", [], asked.append) is False


def test_arrow_keys_are_split_whole():
    assert top._split_keys(b"\x1b[Bq/") == ["\x1b[B", "q", "/"]


def test_plain_frame_lists_every_source_without_colour():
    many = [{"addr": f"198.18.1.{i}", "reports": i, "kinds": {"FIN": i}, "ports": 1,
             "first": NOW, "last": NOW, "state": "watching", "evidence": None, "left": None}
            for i in range(1, 60)]
    text = top.plain(snapshot(sources=many))
    assert "\x1b" not in text
    assert all(f"198.18.1.{i} " in text for i in range(1, 60))


def test_ipv6_addresses_are_shown_literally():
    src = {"addr": "fd53:7761:1234:5678::1", "reports": 3, "kinds": {"SYN/Normal": 3},
           "ports": 3, "first": NOW, "last": NOW, "state": "watching", "evidence": None,
           "left": None}
    text = top.plain(snapshot(sources=[src]))
    assert "fd53:7761:1234:5678::1" in text  # not ":1234:" turned into an emoji


def test_many_sources_still_fit_and_the_selection_scrolls_into_view():
    many = [{"addr": f"198.18.1.{i}", "reports": 100 - i, "kinds": {"FIN": 1}, "ports": 1,
             "first": NOW, "last": NOW, "state": "watching", "evidence": None, "left": None}
            for i in range(1, 60)]
    view = top.View()
    view.selected = 40
    text = render(snapshot(sources=many), view)
    assert len(text.rstrip("\n").split("\n")) <= 24
    assert "198.18.1.41 " in text and "198.18.1.1 " not in text
    assert "/59 sources" in text


def test_a_daemon_that_stops_answering_leaves_the_last_frame_and_says_so():
    from scanwatch.errors import NotRunning
    view = top.View()
    first = top._refresh(lambda: snapshot(syn=1000), None, view, 10.0)

    def gone():
        raise NotRunning("scanwatch is not running (no /run/scanwatch/scanwatch.sock)")

    kept = top._refresh(gone, first, view, 11.0)
    assert kept is first
    text = render(kept, view)
    assert "daemon not answering (scanwatch is not running" in text and "198.18.0.2" in text
    # a restarted daemon answers again with counters from zero: no negative rate, no message
    again = top._refresh(lambda: snapshot(syn=5), kept, view, 12.0)
    assert again["packets"]["SYN/Normal"] == 5 and view.lost == ""
    assert "daemon not answering" not in render(again, view)
    top._refresh(lambda: snapshot(syn=105), again, view, 13.0)
    assert list(view.history["SYN/Normal"])[-1] == 100.0


def test_sparkline_scales_from_zero_to_the_busiest_second():
    assert top.sparkline([0, 0, 0]) == "▁▁▁"
    assert top.sparkline([0, 2, 14]) == "▁▂█"
    assert top.sparkline([5, 5]) == "██"
    assert top.sparkline([]) == ""
