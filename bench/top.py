"""CPU of `scanwatch top` while a flood runs, beside what admins do today,
`watch -n 1 scanwatch status`, both refreshing once a second in 80x24 tmux windows.

    .venv/bin/python bench/top.py              # 20 s flood
    .venv/bin/python bench/top.py --seconds 60

Run as root after `make setup`. A tests/system Lab (target and scanner namespaces) is
made and deleted; the daemon runs -stcp with BLOCK_TCP="0" so the flood (`hping3 -S
--flood -p ++1` from the scanner namespace) keeps being detected and reported rather
than dropped after the first block. CPU is utime+stime (+ reaped children, for watch)
from /proc/PID/stat over the flood, as a share of one core.
"""
import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "system"))
from lab import Lab  # noqa: E402
from sentryproc import SCANWATCH, SentryProcess  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu(pid, children=False):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime: reaped children
    return ticks / TICK


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    with Lab() as lab:
        lab.wait_reachable()
        with SentryProcess(lab, args=["-stcp"], conf='BLOCK_TCP="0"\nRESOLVE_HOST="0"\n') as sw:
            sock = str(sw.dir / "tmux.sock")

            def tmux(*a):
                return lab.run(lab.target_ns, "tmux", "-S", sock, *a, timeout=20)

            run_dir = str(sw.paths["run"])
            sw_cmd = " ".join([*SCANWATCH[:2], repr(SCANWATCH[2])])
            tmux("new-session", "-d", "-s", "top", "-x", "80", "-y", "24",
                 f"exec {sw_cmd} top --run-dir {run_dir}")
            tmux("new-session", "-d", "-s", "watch", "-x", "80", "-y", "24",
                 f"exec watch -n 1 {os.path.dirname(sys.executable)}/scanwatch status "
                 f"--run-dir {run_dir}")
            tmux("set-option", "-g", "remain-on-exit", "on")
            try:
                time.sleep(3)  # both drew their first screens
                pids = {name: int(tmux("display-message", "-p", "-t", f"={name}:",
                                       "#{pane_pid}").stdout) for name in ("top", "watch")}
                for name, pid in pids.items():  # the measured processes really are these
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    assert (b"top" if name == "top" else b"watch") in argv, argv
                daemon = int((sw.paths["run"] / "scanwatch.pid").read_text())
                c0 = {"top": cpu(pids["top"]), "watch": cpu(pids["watch"], True),
                      "daemon": cpu(daemon)}
                t0 = time.monotonic()
                hp = lab.popen("scanner", "hping3", "-S", "--flood", "-p", "++1",
                               lab.target_ip4, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
                time.sleep(args.seconds)
                c1 = {"top": cpu(pids["top"]), "watch": cpu(pids["watch"], True),
                      "daemon": cpu(daemon)}
                wall = time.monotonic() - t0
                hp.send_signal(signal.SIGINT)
                hp.wait(timeout=15)
                screen = tmux("capture-pane", "-p", "-t", "=top:").stdout
            finally:
                tmux("kill-server")
            share = {k: 100 * (c1[k] - c0[k]) / wall for k in c0}
            print(f"flood {wall:.1f} s; SYN counted by the daemon: "
                  f"{sw.status()['packets']['SYN/Normal']}")
            print(f"{'process':<34} {'% of a core':>12}   (CPU clock: {1000 // TICK} ms ticks)")
            print(f"{'scanwatch top (1 s refresh)':<34} {share['top']:>12.2f}")
            print(f"{'watch -n 1 scanwatch status':<34} {share['watch']:>12.2f}")
            print(f"{'scanwatch daemon (for scale)':<34} {share['daemon']:>12.2f}")
            if share["top"]:
                print(f"watch/status costs {share['watch'] / share['top']:.1f}x top's CPU")
            print("last top screen:\n" + screen)


if __name__ == "__main__":
    main()
