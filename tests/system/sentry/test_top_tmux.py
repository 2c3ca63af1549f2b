"""`scanwatch top` used as a person would: in an 80x24 tmux window inside the target
namespace, while nmap scans from the scanner namespace; what the screen shows is read
back with `tmux capture-pane`."""
import re
import shutil
import time

import pytest

from sentryproc import SCANWATCH, SentryProcess, nmap, wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None,
                                reason="tmux not installed (scripts/setup.sh)")


class Tmux:
    def __init__(self, lab, sock):
        self.lab, self.sock = lab, str(sock)

    def __call__(self, *args):
        return self.lab.run(self.lab.target_ns, "tmux", "-S", self.sock, *args, timeout=20)

    def screen(self):
        return self("capture-pane", "-p", "-t", "=top:").stdout

    def wait_screen(self, pred, timeout=20, what="screen", extra=lambda: ""):
        try:
            return wait_for(lambda: pred(self.screen()), timeout, what, step=0.2)
        except AssertionError:
            raise AssertionError(f"{what}; the screen was:\n{self.screen()}\n{extra()}") from None


def syn_count(screen):
    m = re.search(r"^SYN\s+(\d+)", screen, re.M)
    return int(m.group(1)) if m else None


def test_top_shows_the_scanner_its_block_and_moving_counters(lab):
    lab.wait_reachable()
    with SentryProcess(lab) as sw:
        tmux = Tmux(lab, sw.dir / "tmux.sock")
        cmd = " ".join([*SCANWATCH[:2], repr(SCANWATCH[2]), "top",
                        "--run-dir", str(sw.paths["run"])])
        res = tmux("new-session", "-d", "-s", "top", "-x", "80", "-y", "24",
                   f"exec {cmd} 2>{sw.dir / 'top1.err'}")
        assert res.returncode == 0, res.stderr
        try:
            first = tmux.wait_screen(lambda s: "scanwatch  pid" in s and "0/s" in s and s,
                                     what="top drew its first frame")
            before = syn_count(first)
            assert before is not None and "latest reports" in first
            assert "(no reports yet)" in first
            nmap(lab, "-sS", "-p", "1-40")
            row = rf"^ ?{re.escape(lab.scanner_ip4)}\s+\d+\s+\S+\s+\d+\s+stealth\s+blocked\s+\S+"
            screen = tmux.wait_screen(lambda s: re.search(row, s, re.M) and s,
                                      what="the scanner's row shows it blocked")
            assert syn_count(screen) > before  # the counters moved
            assert re.search(r"blocks 1 active", screen)
            assert re.search(rf"block\s+{re.escape(lab.scanner_ip4)} SYN/Normal \d+/tcp", screen)
            lines = screen.rstrip("\n").split("\n")
            assert len(lines) <= 24 and max(map(len, lines)) <= 80
            # u asks first; y unblocks the selected (only) source
            tmux("send-keys", "-t", "=top:", "u")
            tmux.wait_screen(lambda s: f"unblock {lab.scanner_ip4}? y/n" in s,
                             what="u asks before unblocking")
            assert sw.status()["blocked"]  # nothing happened before the answer
            tmux("send-keys", "-t", "=top:", "y")
            tmux.wait_screen(lambda s: f"{lab.scanner_ip4} unblocked" in s,
                             what="the unblock is confirmed on screen")
            assert sw.status()["blocked"] == []
            tmux.wait_screen(lambda s: re.search(rf"{re.escape(lab.scanner_ip4)}\s.*watching", s),
                             what="the row shows the source watched again")
            # s changes the sort column; / filters by address (Enter applies)
            tmux("send-keys", "-t", "=top:", "s")
            tmux.wait_screen(lambda s: "sort:address" in s, what="s sorts by address")
            tmux("send-keys", "-t", "=top:", "/", "z", "z", "Enter")
            tmux.wait_screen(lambda s: "filter=zz" in s and lab.scanner_ip4 + " " not in
                             s.split("latest reports")[0], what="/zz hides the scanner's row")
            tmux("send-keys", "-t", "=top:", "/", "BSpace", "BSpace", "Enter")
            tmux.wait_screen(lambda s: "filter=" not in s and re.search(
                rf"^ ?{re.escape(lab.scanner_ip4)}\s", s, re.M), what="filter cleared")
            # SIGWINCH: a bigger window is redrawn to its size at once (no wait for a tick)
            assert tmux("resize-window", "-t", "=top:", "-x", "120", "-y", "40").returncode == 0
            assert tmux("display-message", "-p", "-t", "=top:",
                        "#{pane_width}x#{pane_height}").stdout.strip() == "120x40"
            # the table spreads its columns over the new width (LEFT ends near column 120)
            tmux.wait_screen(lambda s: re.search(r"^ SOURCE .{90,}LEFT", s, re.M),
                             timeout=0.9, what="redrawn at 120x40 within a refresh",
                             extra=lambda: (sw.dir / "top1.err").read_text())
            # q quits cleanly: the pane's process ends and tmux closes the session
            tmux("send-keys", "-t", "=top:", "q")
            wait_for(lambda: tmux("has-session", "-t", "=top").returncode != 0, 10,
                     "top quit on q")
            # Ctrl-C (SIGINT) too, with exit status 0 and no traceback
            res = tmux("new-session", "-d", "-s", "top", "-x", "80", "-y", "24",
                       cmd + f" 2>{sw.dir / 'top.err'}; echo $? > {sw.dir / 'top.rc'}")
            assert res.returncode == 0, res.stderr
            tmux.wait_screen(lambda s: "scanwatch  pid" in s, what="top started again")
            # the daemon stops (a restart, say): top keeps its last frame and says so
            assert sw.stop() == 0
            tmux.wait_screen(lambda s: "daemon not answering" in s and "scanwatch  pid" in s,
                             what="top says the daemon does not answer")
            tmux("send-keys", "-t", "=top:", "C-c")
            wait_for(lambda: (sw.dir / "top.rc").exists(), 10, "top quit on Ctrl-C")
            time.sleep(0.2)
            assert (sw.dir / "top.rc").read_text().strip() == "0"
            assert "Traceback" not in (sw.dir / "top.err").read_text()
        finally:
            tmux("kill-server")


def test_top_once_prints_plain_text_when_not_a_terminal(lab):
    lab.wait_reachable()
    with SentryProcess(lab) as sw:
        nmap(lab, "-sS", "-p", "1-40")
        sw.wait_block_event()
        res = lab.run(lab.target_ns, *SCANWATCH, "top", "--run-dir", sw.paths["run"],
                      timeout=30)  # stdout is a pipe: one plain frame, no escape codes
        assert res.returncode == 0, res.stderr
        assert "\x1b" not in res.stdout
        assert re.search(rf"^ ?{re.escape(lab.scanner_ip4)}\s.*blocked", res.stdout, re.M)
        assert syn_count(res.stdout) > 0
        # status --json keeps its fields (top uses a request of its own)
        st = sw.status()
        for key in ("running", "pid", "since", "packets", "counters", "blocked", "logged"):
            assert key in st

