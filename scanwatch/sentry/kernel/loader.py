"""The one module that imports bcc. It runs in a child process: compile bpf/sentry.bpf.c,
load it, and pass the program and map fds back over a Unix socket (SCM_RIGHTS).

Keeping LLVM in a short-lived child keeps the daemon's resident memory small (~30 MB
instead of ~200 MB) and lets it start its control socket while the compiler works.
"""
import json
import os
import socket
import subprocess
import sys

from . import contract as K
from ...errors import KernelError

MAPS = ("config", "watched", "counters", "ignored", "sources", "blocked", "kblocked", "events", "alerts",
        "cookies", "answers", "hops")  # the last three: issue 13


def load(cflags, timeout=120):
    """Compile and load in a child; returns {"prog": fd, map name: fd, ...}."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        proc = subprocess.Popen(
            # -P: the installed package, never a scanwatch/ in the current directory
            [sys.executable, "-P", "-m", "scanwatch.sentry.kernel.loader", str(child.fileno()), *cflags],
            pass_fds=[child.fileno()], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL)
        child.close()
        parent.settimeout(timeout)
        try:
            msg, fds, _flags, _addr = socket.recv_fds(parent, 65536, len(MAPS) + 1)
        except (OSError, socket.timeout):
            msg, fds = b"", []
        _out, err = proc.communicate(timeout=timeout)
    finally:
        parent.close()
    if proc.returncode != 0 or not msg:
        for fd in fds:
            os.close(fd)
        text = err.decode(errors="replace").strip()
        lines = [l for l in text.splitlines() if l.strip()]
        raise KernelError(f"cannot load {K.PROGRAM.name}: "
                          + (lines[-1] if lines else f"loader exited with {proc.returncode}")
                          + (f"\n{text}" if os.environ.get("SCANWATCH_DEBUG") else ""))
    names = json.loads(msg)
    return dict(zip(names, fds))


def _child(sock_fd, cflags):
    from bcc import BPF  # the only bcc import in scanwatch
    b = BPF(src_file=str(K.PROGRAM), cflags=cflags)
    fn = b.load_func("xdp_sentry", BPF.XDP)
    names = ["prog", *MAPS]
    fds = [fn.fd] + [b[name].map_fd for name in MAPS]
    sock = socket.socket(fileno=sock_fd)
    socket.send_fds(sock, [json.dumps(names).encode()], fds)
    sock.close()


if __name__ == "__main__":
    try:
        _child(int(sys.argv[1]), sys.argv[2:])
    except Exception as err:  # reported to the parent on stderr, which raises KernelError
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)
