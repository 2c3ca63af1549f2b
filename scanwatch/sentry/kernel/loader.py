"""The one module that imports bcc. It runs in a child process: compile bpf/sentry.bpf.c,
load it, and pass the program and map fds back over a Unix socket (SCM_RIGHTS).

Keeping LLVM in a short-lived child keeps the daemon's resident memory small (~30 MB
instead of ~200 MB) and lets it start its control socket while the compiler works.
"""
import array
import ctypes
import json
import os
import socket
import subprocess
import sys

from . import contract as K
from ...errors import KernelError

MAPS = ("config", "watched", "counters", "ignored", "sources", "blocked", "kblocked", "events", "alerts",
        "cookies", "answers", "hops",  # issue 13
        "claims", "local", "natted",  # issue 14
        "fast",  # kernel cost: the verdict cache, which program.py empties through its mmap
        "full_path")  # kernel cost: xdp_full, which xdp_sentry tail-calls on a cache miss


def load(cflags, timeout=120):
    """Compile and load in a child; returns {"prog": fd, map name: fd, ...}. A child that
    does not answer within `timeout` seconds is killed and reaped."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        proc = subprocess.Popen(
            # -P: the installed package, never a scanwatch/ in the current directory
            [sys.executable, "-P", "-m", "scanwatch.sentry.kernel.loader", str(child.fileno()), *cflags],
            pass_fds=[child.fileno()], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL)
        child.close()
        parent.settimeout(timeout)
        fds, problem, late = {}, None, False
        try:
            fds = receive(parent)
        except socket.timeout:
            problem, late = f"the loader did not answer in {timeout:g} s; killed", True
        except (KernelError, OSError) as err:
            problem = str(err)
        if late:
            proc.kill()
        try:
            _out, err = proc.communicate(timeout=None if late else timeout)  # reaps it
        except subprocess.TimeoutExpired:
            proc.kill()
            _out, err = proc.communicate()
            problem, late = f"the loader did not exit in {timeout:g} s; killed", True
    finally:
        parent.close()
    if proc.returncode != 0 or problem or not fds:
        for fd in fds.values():
            os.close(fd)
        text = err.decode(errors="replace").strip()
        lines = [l for l in text.splitlines() if l.strip()]
        # the child's own last word says more than "sent nothing", unless it hung
        why = (problem if late or not (proc.returncode and lines) else lines[-1]) \
            or (lines[-1] if lines else f"loader exited with {proc.returncode}")
        raise KernelError(f"cannot load {K.PROGRAM.name}: {why}"
                          + (f"\n{text}" if os.environ.get("SCANWATCH_DEBUG") else ""))
    return fds


def receive(sock):
    """The names and fds the child sent: {name: fd}, close-on-exec (so no command the
    daemon runs later inherits a map). A short or truncated list is an error, never a
    partial set: every fd received is closed then."""
    # recvmsg, not socket.recv_fds: that one drops its flags argument (CPython 3.11)
    msg, anc, flags, _addr = sock.recvmsg(65536, socket.CMSG_SPACE((len(MAPS) + 2) * 4),
                                          socket.MSG_CMSG_CLOEXEC)
    fds = array.array("i")
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % 4])
    try:
        if not msg:
            raise KernelError("the loader sent nothing")
        if flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC):
            raise KernelError("the loader's message was truncated")
        try:
            names = json.loads(msg)
        except ValueError:
            raise KernelError("the loader's message is not a list of names") from None
        if not isinstance(names, list) or len(names) != len(fds) or \
                set(names) != {"prog", *MAPS}:
            raise KernelError(f"the loader sent {len(fds)} fds for {len(names)} names; "
                              f"expected {len(MAPS) + 1}")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return dict(zip(names, fds))


def _child(sock_fd, cflags):
    from bcc import BPF  # the only bcc import in scanwatch
    b = BPF(src_file=str(K.PROGRAM), cflags=cflags)
    fn = b.load_func("xdp_sentry", BPF.XDP)
    # The prog array holds the full path for as long as the daemon holds the array's fd.
    full = b.load_func("xdp_full", BPF.XDP)
    b["full_path"][ctypes.c_int(0)] = ctypes.c_int(full.fd)
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
