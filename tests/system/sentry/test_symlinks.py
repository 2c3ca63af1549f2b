"""Symlinks planted in the state dir are never followed (issue 6)."""
import os
import stat
import time

import pytest

from sentryproc import nmap, wait_for
from resilience import Sentry, figure, nft_elems, refused_start, snapshot_addrs


# --- 10. symlinks planted in the state dir ----------------------------------------------------
VICTIM = b"victim's own bytes\n"


def plant(state, name, victim, exists=True):
    """state/name -> victim (a file outside the state dir, with VICTIM in it if exists)."""
    state.mkdir(mode=0o700, exist_ok=True)
    if exists:
        victim.write_bytes(VICTIM)
    os.symlink(victim, state / name)


def block_and_stop(lab, workdir):
    sw = Sentry(lab, workdir)
    try:
        nmap(lab, "-sS", "-p", "1-40")
        sw.wait_history(lab.scanner_ip4)
        assert sw.stop() == 0
    finally:
        sw.stop()
    return sw


def test_a_planted_temp_file_symlink_is_not_followed(lab, workdir):
    """blocks.json.tmp points elsewhere before the start; the daemon blocks, records and
    stops (rewriting the snapshot through that temp name twice); the victim is unchanged
    and the state files are regular files, 0600, in a 0700 directory."""
    lab.wait_reachable()
    state = workdir / "state"
    victim = workdir / "victim-tmp"
    plant(state, "blocks.json.tmp", victim)
    sw = block_and_stop(lab, workdir)
    assert victim.read_bytes() == VICTIM
    modes = {p.name: oct(stat.S_IMODE(os.lstat(p).st_mode)) for p in state.iterdir()}
    figure("state files", f"{modes}, dir {oct(stat.S_IMODE(os.stat(state).st_mode))}")
    for p in state.iterdir():
        st = os.lstat(p)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, (p, modes)
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    assert f"ALL: {lab.scanner_ip4}\n" in sw.read("hosts_deny")
    assert snapshot_addrs(state) == [lab.scanner_ip4]


def test_a_planted_hosts_deny_state_symlink_is_not_followed(lab, workdir):
    lab.wait_reachable()
    victim = workdir / "victim-hostsdeny.json"
    plant(workdir / "state", "hostsdeny.json", victim)
    sw = Sentry(lab, workdir)
    try:
        nmap(lab, "-sS", "-p", "1-40")
        wait_for(lambda: "attackalert: Host" in sw.log(), 5, what="block")
        time.sleep(1)
        errors = [l for l in sw.log().splitlines() if "error" in l.lower()]
        figure("hostsdeny.json -> victim", f"victim unchanged {victim.read_bytes() == VICTIM}; "
               f"errors: {errors}")
        assert victim.read_bytes() == VICTIM
        assert f"ALL: {lab.scanner_ip4}\n" in sw.read("hosts_deny") and not errors
    finally:
        sw.stop()


@pytest.mark.parametrize("name", ["blocks.json", "blocks.journal"])
def test_a_planted_block_table_symlink_is_refused_not_read(lab, workdir, name):
    lab.wait_reachable()
    victim = workdir / f"victim-{name}"
    plant(workdir / "state", name, victim)
    rc, out, err = refused_start(lab, workdir)
    figure(f"{name} -> victim", f"exit {rc}: {err.strip()!r}")
    assert rc not in (0, None) and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {workdir / 'state' / name}: ") and "symbolic link" in err
    assert victim.read_bytes() == VICTIM and (workdir / "state" / name).is_symlink()


def test_a_planted_events_log_symlink_is_not_followed(lab, workdir):
    lab.wait_reachable()
    victim = workdir / "victim-events"
    plant(workdir / "state", "events.jsonl", victim)
    block_and_stop(lab, workdir)
    figure("events.jsonl -> victim", f"victim now {len(victim.read_bytes())} bytes")
    assert victim.read_bytes() == VICTIM


def test_a_planted_lock_symlink_does_not_create_its_target(lab, workdir):
    lab.wait_reachable()
    victim = workdir / "created-through-a-symlink"
    plant(workdir / "state", "hostsdeny.json.lock", victim, exists=False)
    block_and_stop(lab, workdir)
    figure("hostsdeny.json.lock -> missing file", f"created: {victim.exists()}")
    assert not victim.exists()


def test_a_journal_swapped_for_a_symlink_at_runtime_is_refused_and_the_block_still_reported(
        lab, workdir):
    lab.wait_reachable()
    victim = workdir / "victim-journal"
    sw = Sentry(lab, workdir)
    try:
        journal = sw.paths["state"] / "blocks.journal"
        assert not journal.is_symlink()
        if journal.exists():  # no journal yet when nothing was ever blocked
            journal.unlink()
        plant(sw.paths["state"], "blocks.journal", victim)
        nmap(lab, "-sS", "-p", "1-40")
        wait_for(lambda: lab.scanner_ip4 in nft_elems(lab, 4), 5, what="nft block")
        try:
            sw.wait_history(lab.scanner_ip4, timeout=3)
            reported = True
        except AssertionError:
            reported = False
        figure("journal swapped at runtime", f"victim unchanged {victim.read_bytes() == VICTIM}, "
               f"block reported {reported}; log: "
               f"{[l for l in sw.log().splitlines() if 'error' in l][:1]}")
        assert victim.read_bytes() == VICTIM
        assert reported
    finally:
        sw.stop()
