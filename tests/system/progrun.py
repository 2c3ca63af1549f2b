"""Run the loaded XDP program on one frame, in the kernel, without a network: the bpf(2)
BPF_PROG_TEST_RUN command. For tests that must know which exit a packet took."""
import ctypes as C
import struct

from scanwatch.sentry.kernel import bpfsys

BPF_PROG_TEST_RUN = 10
XDP_DROP, XDP_PASS = 1, 2


class _TestRun(C.Structure):  # the test-run member of union bpf_attr
    _fields_ = [("prog_fd", C.c_uint32), ("retval", C.c_uint32), ("data_size_in", C.c_uint32),
                ("data_size_out", C.c_uint32), ("data_in", C.c_uint64),
                ("data_out", C.c_uint64), ("repeat", C.c_uint32), ("duration", C.c_uint32),
                ("ctx_size_in", C.c_uint32), ("ctx_size_out", C.c_uint32),
                ("ctx_in", C.c_uint64), ("ctx_out", C.c_uint64), ("flags", C.c_uint32),
                ("cpu", C.c_uint32), ("batch_size", C.c_uint32)]


def loaded_sentry(sweep_ports=20):
    """The sentry's programs loaded and configured as for these runs: TCP watched, port 1
    the one tripwire, sweeps of `sweep_ports` closed ports caught, no kernel block of its
    own (blocks come from userspace), no listener in the namespace it runs in."""
    from scanwatch.sentry.kernel.program import Sentry
    s = Sentry()
    s.load()
    s.configure(scan_trigger=0, sweep_ports=sweep_ports, sweep_window=3, block_timeout=0,
                watch_tcp=1, watch_udp=0, kblock_tcp=0, kblock_udp=0)
    s.set_watched(0, [1])
    return s


def ether(l3):
    """An Ethernet frame around an IPv4 or IPv6 packet (lab-local MACs)."""
    kind = 0x0800 if l3[0] >> 4 == 4 else 0x86DD
    return b"\x02\0\0\0\0\x01" + b"\x02\0\0\0\0\x02" + struct.pack("!H", kind) + l3


def run(prog_fd, frame, repeat=1):
    """(XDP action, mean ns per run) of the program on frame, run `repeat` times."""
    buf = C.create_string_buffer(frame, len(frame))
    attr = _TestRun(prog_fd=prog_fd, data_size_in=len(frame), data_in=C.addressof(buf),
                    repeat=repeat)
    bpfsys._bpf(BPF_PROG_TEST_RUN, attr)
    return attr.retval, attr.duration
