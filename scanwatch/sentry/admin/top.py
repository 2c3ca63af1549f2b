"""`scanwatch top`: an htop-like live view of a running daemon, redrawn about once a
second from the control socket's {"cmd": "top"} answer. rich draws every frame (no
escape code is written here); keys are read from the terminal in cbreak mode.

frame() is pure (snapshot in, renderable out), so a unit test draws it from a fixed
snapshot, and `--once` prints it as plain text when stdout is not a terminal.
"""
import collections
import os
import select
import signal
import time

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from . import control
from ...errors import ScanwatchError

KINDS = ("SYN/Normal", "FIN", "NULL", "XMAS", "Unknown Type", "UDP")
SHORT = {"SYN/Normal": "SYN", "Unknown Type": "UNK"}
SORTS = ("activity", "address", "ports", "state", "last")
HISTORY = 20  # seconds of sparkline


BARS = "▁▂▃▄▅▆▇█"


def sparkline(values):
    """Packets/s over the last HISTORY seconds as block characters on a scale from 0 to
    the highest second (a quiet second is the lowest bar, never a hole). Our own eight
    lines rather than the sparklines package: Debian has no package of it, and the .deb
    (make deb) depends on Debian's packages only."""
    values = list(values)
    top = max(max(values, default=0), 1)
    return "".join(BARS[min(len(BARS) - 1, max(0, round(v / top * (len(BARS) - 1))))] for v in values)


def _dur(seconds):
    if seconds is None:
        return "never"
    seconds = int(max(0, seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class View:
    """What the person chose: sort column, address filter, selected row, prompts; plus
    the per-second packet history behind the rates and sparklines."""

    def __init__(self):
        self.sort, self.filter, self.selected = "activity", "", 0
        self.mode, self.typed, self.message = "normal", "", ""
        self.lost = ""  # why the daemon did not answer the last refresh
        self.history = {k: collections.deque([0] * HISTORY, maxlen=HISTORY) for k in KINDS}
        self.prev = None  # (monotonic time, packets) of the last snapshot

    def feed(self, snap, mono):
        """Record packets/s from the change since the previous snapshot."""
        if self.prev is not None:
            dt = max(1e-3, mono - self.prev[0])
            for k in KINDS:
                self.history[k].append(max(0, snap["packets"][k] - self.prev[1][k]) / dt)
        self.prev = (mono, dict(snap["packets"]))

    def rows(self, snap):
        rows = [s for s in snap["sources"] if self.filter in s["addr"]]
        key = {"activity": lambda s: (-s["reports"], s["addr"]),
               "address": lambda s: s["addr"],
               "ports": lambda s: (-s["ports"], s["addr"]),
               "state": lambda s: (s["state"] != "blocked", s["addr"]),
               "last": lambda s: -s["last"]}[self.sort]
        return sorted(rows, key=key)


def header(snap, view):
    up = _dur(snap["now"] - snap["since"]) if snap.get("since") else "starting"
    ifaces = ", ".join(f"{n} ({m})" for n, m in snap["interfaces"].items()) or "none"
    first = Text.assemble(("scanwatch", "bold"), f"  pid {snap['pid']}  up {up}  ",
                          f"modes {','.join(snap['modes'])}  if {ifaces}",
                          ("  DRY RUN", "bold red") if snap.get("dry_run") else "")
    c = snap["counters"]
    grid = Table.grid(padding=(0, 1))
    for k in KINDS:
        hist = list(view.history[k])
        now = f"{hist[-1]:>7.0f}/s" if view.prev is not None else ""
        grid.add_row(f"{SHORT.get(k, k):<4}", f"{snap['packets'][k]:>9}", now,
                     Text(sparkline(hist), style="cyan"))
    blocks = Text.assemble(f"blocks {snap['blocks_active']} active / "
                           f"{snap['blocks_total']} made   dropped {c.get('dropped', 0)}   ",
                           ("events lost " + str(c.get("events_lost", 0)),
                            "bold red" if c.get("events_lost") else ""))
    return [first, grid, blocks]


def source_table(snap, view, height):
    t = Table(box=None, padding=(0, 1), expand=True, show_edge=False,
              header_style="reverse")
    t.add_column("SOURCE", no_wrap=True, ratio=3)
    t.add_column("REP", justify="right")
    t.add_column("TYPES", no_wrap=True, ratio=1)
    t.add_column("PORTS", justify="right")
    t.add_column("EVIDENCE", no_wrap=True, max_width=9)
    t.add_column("STATE", no_wrap=True)
    t.add_column("LEFT", justify="right")
    rows = view.rows(snap)
    view.selected = min(view.selected, max(0, len(rows) - 1))
    start = max(0, view.selected - height + 1)
    for i, s in enumerate(rows[start:start + height], start):
        types = ",".join(SHORT.get(k, k) for k, _ in
                         sorted(s["kinds"].items(), key=lambda kv: -kv[1]))
        left = "" if s["state"] == "watching" else _dur(s["left"])
        style = "reverse bold" if i == view.selected else (
            "red" if s["state"] == "blocked" else "")
        # Text, not str: rich would read "[...]" as markup and ":1234:" as an emoji code
        t.add_row(*map(Text, (s["addr"], str(s["reports"]), types or "sweep", str(s["ports"]),
                              s.get("evidence") or "-", s["state"], left)), style=style)
    return t, len(rows)


def recent_pane(snap, lines):
    out = []
    for r in list(snap["recent"])[-lines:]:
        out.append(f"{time.strftime('%H:%M:%S', time.localtime(r['time']))} {r['action']:<7} "
                   f"{r['addr']} {r['scan_type']} {r['port']}/{r['proto'].lower()}"
                   f"{' sweep' if r.get('reason') == 'sweep' else ''}")
    return Text("\n".join(out) or "(no reports yet)", no_wrap=True, overflow="ellipsis")


def footer(view, shown, total):
    if view.mode == "filter":
        return Text(f"filter address: {view.typed}_   (Enter apply, Esc cancel)",
                    style="reverse")
    if view.mode == "confirm":
        return Text(f"unblock {view.typed}? y/n", style="bold reverse")
    keys = (f"q quit  s sort:{view.sort}  / filter{'=' + view.filter if view.filter else ''}"
            f"  up/down select  u unblock   {shown}/{total} sources")
    if view.lost and not view.message:
        return Text(view.lost, style="bold reverse red", no_wrap=True, overflow="ellipsis")
    return Text(view.message or keys, style="reverse", no_wrap=True, overflow="ellipsis")


def frame(snap, view, height=24):
    """The whole screen for one snapshot, fitting `height` lines."""
    head = header(snap, view)
    recent_lines = max(2, min(6, (height - 12) // 3))
    table_rows = max(1, height - 9 - 2 - recent_lines - 2)  # header, titles, pane, footer
    table, total = source_table(snap, view, table_rows)
    return Group(*head, table, Text("latest reports", style="reverse"),
                 recent_pane(snap, recent_lines), footer(view, min(total, table_rows), total))


def plain(snap, width=80):
    """One frame as text without colour, for pipes, cron mail and `--once`."""
    console = Console(width=width, record=True, force_terminal=False, color_system=None,
                      file=open(os.devnull, "w"))
    console.print(frame(snap, View(), height=10 ** 4))
    return console.export_text()


class Keys:
    """stdin in cbreak mode (no echo, no line buffering) for the life of the view."""

    def __init__(self, fd):
        self.fd, self.saved = fd, None

    def __enter__(self):
        import termios
        import tty
        self.saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc):
        import termios
        termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def handle_key(view, key, rows, unblock):
    """Apply one key press; returns False to quit."""
    if view.mode == "filter":
        if key in ("\r", "\n"):
            view.filter, view.mode = view.typed.strip(), "normal"
        elif key == "\x1b":
            view.mode = "normal"
        elif key in ("\x7f", "\b"):
            view.typed = view.typed[:-1]
        elif key.isprintable():
            view.typed += key
        return True
    if view.mode == "confirm":
        if key in ("y", "Y"):
            view.message = unblock(view.typed)
        view.mode = "normal"
        return True
    view.message = ""
    if key in ("q", "Q"):
        return False
    if key in ("s", ">"):
        view.sort = SORTS[(SORTS.index(view.sort) + 1) % len(SORTS)]
    elif key == "/":
        view.mode, view.typed = "filter", view.filter
    elif key in ("\x1b[A", "k"):
        view.selected = max(0, view.selected - 1)
    elif key in ("\x1b[B", "j"):
        view.selected += 1
    elif key in ("u", "U") and rows:
        view.mode, view.typed = "confirm", rows[min(view.selected, len(rows) - 1)]["addr"]
    return True


def _split_keys(data):
    """Bytes read from the terminal -> key strings; arrow keys stay whole."""
    text, keys, i = data.decode("utf-8", "replace"), [], 0
    while i < len(text):
        if text.startswith("\x1b[", i) and i + 2 < len(text):
            keys.append(text[i:i + 3])
            i += 3
        else:
            keys.append(text[i])
            i += 1
    return keys


class Live:
    """The running daemon as `top` sees it: one control-socket request per refresh."""

    def __init__(self, run_dir):
        self.run_dir = run_dir

    def fetch(self):
        return control.request(self.run_dir, {"cmd": "top"})

    def unblock(self, addr):
        """Unblock through the daemon; the message shown in the footer."""
        try:
            was = control.request(self.run_dir, {"cmd": "unblock", "addr": addr})["was_blocked"]
        except ScanwatchError as err:
            return f"unblock {addr}: {err}"
        return f"{addr} unblocked" if was else f"{addr} was not blocked"


def _refresh(fetch, snap, view, mono):
    """A new snapshot; while the daemon does not answer (a restart, a stop) the last one
    stays on screen with the reason, and the next refresh tries again."""
    try:
        fresh = fetch()
    except ScanwatchError as err:
        view.lost = f"daemon not answering ({err}); retrying"
        return snap
    if view.lost:
        view.lost, view.prev = "", None  # a restarted daemon's counters start again
    view.feed(fresh, mono)
    return fresh


def run(fetch, unblock, interval=1.0):
    """The interactive loop: fetch() -> snapshot, unblock(addr) -> message text."""
    from rich.live import Live
    # COLUMNS/LINES exported by a shell or a CI runner would pin rich to that size and
    # a resized terminal would never be followed: ask the terminal itself
    console = Console(_environ={k: v for k, v in os.environ.items()
                                if k not in ("COLUMNS", "LINES")})
    view = View()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    old_wakeup = signal.set_wakeup_fd(wake_w)  # SIGWINCH wakes the loop to redraw
    old_winch = signal.signal(signal.SIGWINCH, lambda *_: None)
    fd = 0
    try:
        with Keys(fd), Live(console=console, screen=True, auto_refresh=False) as live:
            next_fetch = 0.0
            snap = None
            while True:
                now = time.monotonic()
                if now >= next_fetch:
                    snap = _refresh(fetch, snap, view, now)
                    next_fetch = now + interval
                live.update(frame(snap, view, console.size.height), refresh=True)
                ready, _, _ = select.select([fd, wake_r], [], [],
                                            max(0.0, next_fetch - time.monotonic()))
                if wake_r in ready:
                    os.read(wake_r, 512)
                if fd in ready:
                    for key in _split_keys(os.read(fd, 64)):
                        if not handle_key(view, key, view.rows(snap), unblock):
                            return 0
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGWINCH, old_winch)
        signal.set_wakeup_fd(old_wakeup)
        os.close(wake_r)
        os.close(wake_w)
