"""The loader child's hand-over (issue 14): fds arrive close-on-exec, a short list is an
error with nothing leaked, a child that does not answer in time is killed and reaped."""
import fcntl
import json
import os
import socket
import time

import pytest

from scanwatch.errors import KernelError
from scanwatch.sentry.kernel import loader
from scanwatch.sentry.kernel.program import Sentry


def open_fds():
    return set(os.listdir("/proc/self/fd"))


def send(names, nfds):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pipes = [os.pipe() for _ in range((nfds + 1) // 2)]
    fds = [fd for p in pipes for fd in p][:nfds]
    socket.send_fds(a, [json.dumps(names).encode()], fds)
    for p in pipes:
        for fd in p:
            os.close(fd)
    a.close()
    return b


def test_every_fd_arrives_close_on_exec():
    names = ["prog", *loader.MAPS]
    sock = send(names, len(names))
    got = loader.receive(sock)
    sock.close()
    try:
        assert sorted(got) == sorted(names)
        for name, fd in got.items():
            assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC, name
    finally:
        for fd in got.values():
            os.close(fd)


@pytest.mark.parametrize("nfds", [0, 3, len(loader.MAPS)])
def test_a_short_fd_list_is_an_error_and_leaks_nothing(nfds):
    sock = send(["prog", *loader.MAPS], nfds)
    before = open_fds()
    with pytest.raises(KernelError, match=f"sent {nfds} fds for {len(loader.MAPS) + 1} names"):
        loader.receive(sock)
    sock.close()
    assert open_fds() <= before


def test_unexpected_names_are_an_error():
    names = ["prog", *loader.MAPS[:-1], "surprise"]
    sock = send(names, len(names))
    with pytest.raises(KernelError):
        loader.receive(sock)
    sock.close()


def children():
    me = str(os.getpid())
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open(f"/proc/{pid}/stat").read()
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[1] == me and b"kernel.loader" in cmd:
            out.append(pid)
    return out


def test_a_child_that_does_not_answer_in_time_is_killed_and_reaped():
    # The real child: compiling the program takes seconds, far more than 0.2 s.
    t0 = time.monotonic()
    with pytest.raises(KernelError, match=r"did not answer in 0\.2 s; killed"):
        loader.load(Sentry().cflags, timeout=0.2)
    assert time.monotonic() - t0 < 10
    assert children() == [], "the loader child is still there (running or a zombie)"
