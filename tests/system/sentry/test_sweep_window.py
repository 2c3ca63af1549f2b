"""Issue 14: the sweep window slides, so a burst straddling a window boundary is caught.

The sweep detector counted distinct closed ports in fixed windows that restarted
SWEEP_WINDOW after their first probe: 15 ports just before that reset and 15 just after
(30 in about a second, SWEEP_PORTS 20) were never caught."""
import time

from resilience import Sentry, ipv4, kernel_blocked, send_l3, target_mac, tcp
from sentryproc import wait_for

WINDOW, PORTS = 4, 20


def test_a_burst_straddling_the_old_reset_is_caught(lab, workdir):
    lab.wait_reachable()
    tgt, src, mac = lab.target_ip4, "198.51.100.41", target_mac(lab)
    # Ports outside every watched list: only the sweep detector sees them.
    sw = Sentry(lab, workdir, conf=f'SWEEP_PORTS="{PORTS}"\nSWEEP_WINDOW="{WINDOW}"\n'
                                   'SLOW_PORTS="0"\nSCAN_TRIGGER="1000"\n')

    def probes(ports):
        send_l3(lab, [ipv4(src, tgt, tcp(src, tgt, p, sport=41000 + p % 1000)) for p in ports],
                mac)

    try:
        c0 = sw.status()["counters"]
        probes([47000])  # opens the (old) fixed window
        t0 = time.monotonic()
        time.sleep(max(0.0, t0 + WINDOW - 0.5 - time.monotonic()))
        probes(range(47001, 47016))  # 15 ports half a second before the old reset
        time.sleep(max(0.0, t0 + WINDOW + 0.5 - time.monotonic()))
        probes(range(47016, 47031))  # 15 more half a second after it
        wait_for(lambda: sw.status()["counters"]["kernel_blocks"] > c0["kernel_blocks"], 5,
                 what="the straddling burst caught as a sweep")
        assert src in kernel_blocked(sw.pid)
    finally:
        sw.stop()


def test_bursts_further_apart_than_the_window_are_not_summed(lab, workdir):
    """The sliding window forgets: 15 ports, then 15 more 2.5 windows later, are two
    small bursts, not a sweep of 30."""
    lab.wait_reachable()
    tgt, src, mac = lab.target_ip4, "198.51.100.42", target_mac(lab)
    sw = Sentry(lab, workdir, conf=f'SWEEP_PORTS="{PORTS}"\nSWEEP_WINDOW="{WINDOW}"\n'
                                   'SLOW_PORTS="0"\nSCAN_TRIGGER="1000"\n')
    try:
        c0 = sw.status()["counters"]
        send_l3(lab, [ipv4(src, tgt, tcp(src, tgt, p)) for p in range(47001, 47016)], mac)
        time.sleep(2.5 * WINDOW)
        send_l3(lab, [ipv4(src, tgt, tcp(src, tgt, p)) for p in range(47016, 47031)], mac)
        wait_for(lambda: sw.status()["counters"]["packets"] >= c0["packets"] + 30, 5,
                 what="30 probes seen")
        time.sleep(0.5)
        assert sw.status()["counters"]["kernel_blocks"] == c0["kernel_blocks"]
    finally:
        sw.stop()
