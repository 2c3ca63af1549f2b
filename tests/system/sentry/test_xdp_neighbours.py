"""Living beside other XDP users (issue 14): scanwatch never replaces or removes an XDP
program it did not attach, says what is there, and replaces it only when told to."""
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from sentryproc import SCANWATCH, SentryProcess, wait_for
from resilience import prog_exists, xdp_attached

# A program of another tool: `r0 = XDP_PASS; exit`, loaded and attached (native, the veth
# driver's mode) from inside the target namespace by bpf(2) and netlink; it stays attached
# after the loader exits. With `replace`, it takes the place of whatever is there.
FOREIGN = r"""
import ctypes as C, os, sys
from pyroute2 import IPRoute
libc = C.CDLL(None, use_errno=True)
insns = bytes.fromhex("b700000002000000" "9500000000000000")
lic = C.create_string_buffer(b"GPL")
attr = (C.c_uint8 * 128)()
C.memmove(attr, (C.c_uint32 * 2)(6, 2), 8)                   # BPF_PROG_TYPE_XDP, 2 insns
buf = C.create_string_buffer(insns)
C.memmove(C.addressof(attr) + 8, (C.c_uint64 * 2)(C.addressof(buf), C.addressof(lic)), 16)
C.memmove(C.addressof(attr) + 48, sys.argv[2].encode(), len(sys.argv[2]))  # prog_name
libc.syscall.restype = C.c_long
from scanwatch.sentry.kernel.bpfsys import NR_BPF
fd = libc.syscall(NR_BPF, 5, attr, 128)                        # BPF_PROG_LOAD
assert fd >= 0, os.strerror(C.get_errno())
with IPRoute() as ipr:
    idx = ipr.link_lookup(ifname=sys.argv[1])[0]
    flags = 1 << 2 | (0 if sys.argv[3] == "replace" else 1)  # DRV_MODE (| UPDATE_IF_NOEXIST)
    ipr.link("set", index=idx, IFLA_XDP={"attrs": [("IFLA_XDP_FD", fd), ("IFLA_XDP_FLAGS", flags)]})
"""


def attach_foreign(lab, name="xdp_fw", how="new"):
    res = lab.run(lab.target_ns, sys.executable, "-c", FOREIGN, lab.target_if, name, how)
    assert res.returncode == 0, res.stderr
    ids = xdp_attached(lab)
    assert len(ids) == 1
    return ids[0]


def run_args(d):
    d = Path(d)
    (d / "ignore").write_text("")
    return ["run", "--state-dir", d / "state", "--run-dir", d / "run", "--hosts-deny",
            d / "hosts.deny", "--history-file", d / "history", "--blocked-file", d / "blocked",
            "--ignore-file", d / "ignore", "-i", lab_if]


lab_if = "swt0"


def test_refuses_to_replace_a_program_it_did_not_attach(lab):
    assert lab.target_if == lab_if
    theirs = attach_foreign(lab)
    with tempfile.TemporaryDirectory() as d:
        try:
            res = lab.run(lab.target_ns, *SCANWATCH, *run_args(d), timeout=60)
        except subprocess.TimeoutExpired as err:
            pytest.fail(f"scanwatch started over their program: {err.stderr}")
    assert res.returncode != 0, res.stdout + res.stderr
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert f"XDP program 'xdp_fw' (id {theirs}, native) is already attached" in lines[0]
    assert "XDP_REPLACE=1" in lines[0]
    assert xdp_attached(lab) == [theirs], "their program must stay attached"


def test_replaces_when_told_and_puts_theirs_back(lab):
    theirs = attach_foreign(lab)
    with SentryProcess(lab, args=["-i", lab.target_if], conf="XDP_REPLACE=1\n") as sw:
        sw.wait_log(f"replacing XDP program 'xdp_fw' (id {theirs}, native); it is put back at exit")
        ours = xdp_attached(lab)
        assert ours and ours != [theirs]
        assert sw.stop() == 0
    assert xdp_attached(lab) == [theirs], "their program is back after scanwatch stops"
    wait_for(lambda: not prog_exists(ours[0]), 10, what="our program freed")


def test_never_removes_a_program_put_in_its_place(lab):
    assert xdp_attached(lab) == []
    with SentryProcess(lab, args=["-i", lab.target_if]) as sw:
        ours = xdp_attached(lab)
        assert len(ours) == 1
        theirs = attach_foreign(lab, "xdp_lb", "replace")  # e.g. an admin's load balancer
        assert theirs != ours[0]
        assert sw.stop() == 0
        log = sw.log()
    assert xdp_attached(lab) == [theirs], "scanwatch's exit removed another tool's program"
    assert f"XDP program 'xdp_lb' (id {theirs}, native) took scanwatch's place; left attached" in log


def test_takes_over_what_an_earlier_scanwatch_left(lab):
    """A daemon killed with -9 leaves its program; the next one replaces it without being
    told (it is scanwatch's own), and says so."""
    first = SentryProcess(lab, args=["-i", lab.target_if])
    old = xdp_attached(lab)
    first.proc.kill()
    first.proc.wait()
    first.log_fh.close()
    assert xdp_attached(lab) == old
    with SentryProcess(lab, args=["-i", lab.target_if]) as sw:
        sw.wait_log(f"replacing XDP program 'xdp_sentry' (id {old[0]}, native), left by an "
                    "earlier scanwatch")
        assert xdp_attached(lab) not in ([], old)
        assert sw.stop() == 0
    assert xdp_attached(lab) == []
