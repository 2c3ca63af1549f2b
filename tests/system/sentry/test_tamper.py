"""Someone else flushes the ruleset, deletes our table or flushes our chain: it comes back
(issue 6)."""
import random
import time


from sentryproc import connect
from resilience import Sentry, figure, nft_all, scan_both, v6_block


# --- 4. someone else flushes the ruleset or deletes our table ---------------------------------
RESTORE_WITHIN_S = 1.0  # the goal
MONITOR_S = 0.25        # measured 0.015-0.034 s from the notification to the table back
POLL_SLACK_S = 0.2      # should the netlink monitor miss it, the fallback check runs every
                        # REFRESH_S=0.5 s from a loop polling the ring buffer 200 ms at a time


def test_flushed_ruleset_and_deleted_table_come_back_within_a_second(lab, web, workdir):
    """`nft flush ruleset`, `nft delete table`, and `nft flush chain` (the drop rules
    gone, the sets still there), each at a random moment: the daemon hears it from
    nftables' netlink notifications and puts everything back with the remaining time."""
    lab.wait_reachable()
    v4, v6 = lab.scanner_ip4, v6_block(lab.scanner_ip6)  # IPv6: blocked per /64 (issue 14)
    sw = Sentry(lab, workdir)

    def whole():
        rules = lab.run(lab.target_ns, "nft", "list", "chain", "inet", "scanwatch", "input").stdout
        return "@blocked4" in rules and "@blocked6" in rules and set(nft_all(lab)) == {v4, v6}

    try:
        scan_both(lab, sw)
        rng = random.Random()
        times = []
        trials = [cmd for _ in range(2) for cmd in (
            ["flush", "ruleset"], ["delete", "table", "inet", "scanwatch"],
            ["flush", "chain", "inet", "scanwatch", "input"])]
        for cmd in trials:
            time.sleep(rng.uniform(0, 1))  # a random phase against the fallback check
            before = nft_all(lab)
            assert whole()
            t0 = time.monotonic()
            assert lab.run(lab.target_ns, "nft", *cmd).returncode == 0
            t1 = time.monotonic()
            while not whole():
                assert time.monotonic() - t0 < 5, sw.log()
                time.sleep(0.005)
            times.append((" ".join(cmd[:2]), time.monotonic() - t1))
            after = nft_all(lab)
            elapsed = time.monotonic() - t0 + 1
            for a in (v4, v6):  # the remaining time, not a fresh BLOCK_TIMEOUT
                assert before[a][1] - elapsed - 1 <= after[a][1] <= before[a][1], (before, after)
        assert not connect(lab, lab.target_ip4, web), "the restored table does not drop"
        assert sw.log().count("was removed or changed by someone else; restored it with 2 "
                              "blocks") == len(trials)
        worst = max(t for _, t in times)
        figure("table restored after", ", ".join(f"{c}: {t:.3f} s" for c, t in times)
               + f"; worst {worst:.3f} s (goal {RESTORE_WITHIN_S} s)")
        assert worst <= RESTORE_WITHIN_S + POLL_SLACK_S
        # The netlink monitor, not the 0.5 s fallback poll, did it: with the poll alone
        # all six trials would fall under MONITOR_S about once in a hundred runs.
        assert worst <= MONITOR_S, times
    finally:
        sw.stop()
