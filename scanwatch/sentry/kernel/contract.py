"""ctypes mirror of bpf/scanwatch.h, the kernel/user contract.

tests/unit/test_contract.py compiles the header and checks every size and offset here.
"""
import ctypes as C
from pathlib import Path

_PKG = Path(__file__).resolve().parents[2]  # the scanwatch package
# Installed (make install) the C sources ship inside the package; in a checkout they
# live at the top, next to scanwatch/.
BPF_DIR = _PKG / "bpf" if (_PKG / "bpf").is_dir() else _PKG.parent / "bpf"
HEADER = BPF_DIR / "scanwatch.h"
PROGRAM = BPF_DIR / "sentry.bpf.c"

(KIND_SYN, KIND_FIN, KIND_NULL, KIND_XMAS, KIND_UNKNOWN, KIND_UDP, KIND_ACK, KIND_MAIMON,
 KIND_TINYFRAG) = range(9)
NKINDS = 9
KIND_NAMES = ("SYN/Normal", "FIN", "NULL", "XMAS", "Unknown Type", "UDP", "ACK/Window", "Maimon",
              "Tiny Fragment")

PROTO_TCP, PROTO_UDP = 0, 1
PROTO_NAMES = ("TCP", "UDP")
PORT_WORDS = 1024
BLOOM_WORDS = 16
RECENT = 32

CNT_DROPPED, CNT_IGNORED, CNT_LOST, CNT_MALFORMED = 9, 10, 11, 12
CNT_TRIPWIRE, CNT_KBLOCKS, CNT_PACKETS = 13, 14, 15
# issue 13: kinds without a hits[] slot; their packet counters come after CNT_PACKETS
KIND_SCTP_INIT, KIND_SCTP_COOKIE, KIND_IPPROTO = 9, 10, 11
NALLKINDS = 12
CNT_SCTP_INIT, CNT_SCTP_COOKIE, CNT_IPPROTO = 16, 17, 18
KIND_NAMES += ("SCTP INIT", "SCTP COOKIE-ECHO", "IP Protocol")
CNT_BADSUM = 19  # issue 13: bad-checksum probes (nmap --badsum), never judged
# kernel cost: the verdict cache's exits count here, one counter a packet (fold_counters)
CNT_FAST_DROPPED, CNT_FAST_KIND, CNT_FAST_PASSED = 20, 21, 29
NCOUNTERS = 30
COUNTER_NAMES = KIND_NAMES[:NKINDS] + ("dropped", "ignored", "events_lost", "malformed",
                                       "tripwire", "kernel_blocks", "packets") + \
    KIND_NAMES[NKINDS:] + ("badsum",)


def fold_counters(sums):
    """The named counters (COUNTER_NAMES) from the NCOUNTERS raw sums: the verdict cache's
    own counts added to what they stand for."""
    c = list(sums[:CNT_FAST_DROPPED])
    fast_kinds = sums[CNT_FAST_KIND:CNT_FAST_PASSED]
    c[CNT_DROPPED] += sums[CNT_FAST_DROPPED]
    for kind, n in enumerate(fast_kinds):
        c[kind] += n
    c[CNT_PACKETS] += sums[CNT_FAST_DROPPED] + sum(fast_kinds) + sums[CNT_FAST_PASSED]
    return dict(zip(COUNTER_NAMES, c))


EV_HIT, EV_TRIGGER, EV_SWEEP, EV_PERSIST = 1, 2, 3, 4
F_KBLOCKED, F_IPOPTS, F_FLAG_TCP, F_FLAG_UDP, F_BLOCKED = 0x01, 0x02, 0x04, 0x08, 0x10
F_FRAG, F_SLOW = 0x20, 0x40
F_SUSPECT = 0x80  # issue 13


class Config(C.Structure):
    _fields_ = [
        ("fast_gen", C.c_uint32),  # kernel cost: generation of the `fast` verdicts
        ("watch", C.c_uint8 * 2),
        ("kblock", C.c_uint8 * 2),
        ("sweep_ports", C.c_uint32),
        ("scan_trigger", C.c_uint32),
        ("sweep_window_ns", C.c_uint64),
        ("block_timeout_ns", C.c_uint64),
        ("persist_probes", C.c_uint32),
        ("slow_ports", C.c_uint32),
        ("slow_window_ns", C.c_uint64),
        ("hit_rate", C.c_uint32),
        ("local_only", C.c_uint8),  # issue 14
        ("v6_prefix", C.c_uint8),  # issue 14
        ("pad", C.c_uint8 * 2),
    ]


class Addr(C.Structure):
    _fields_ = [("a", C.c_uint8 * 16)]


class LpmKey(C.Structure):
    _fields_ = [("prefixlen", C.c_uint32), ("a", C.c_uint8 * 16)]


class Block(C.Structure):
    _fields_ = [("expires_ns", C.c_uint64)]


class Source(C.Structure):
    _fields_ = [
        ("first_ns", C.c_uint64),
        ("last_ns", C.c_uint64),
        ("block_ns", C.c_uint64),
        ("window_ns", C.c_uint64),
        ("event_ns", C.c_uint64),
        ("bloom", C.c_uint64 * BLOOM_WORDS),
        ("hits", C.c_uint32 * NKINDS),
        ("tripwire", C.c_uint32 * 2),
        ("sweep", C.c_uint32),
        ("sweep_open", C.c_uint32),
        ("distinct", C.c_uint32),
        ("recent", C.c_uint32 * RECENT),
        ("last_port", C.c_uint16),
        ("last_kind", C.c_uint8),
        ("last_tcp_flags", C.c_uint8),
        ("flags", C.c_uint8),
        ("pad", C.c_uint8 * 3),
        ("dropped", C.c_uint32),
        ("slow_ns", C.c_uint64),
        ("slow_bloom", C.c_uint64 * BLOOM_WORDS),
        ("slow", C.c_uint32),
        ("hit_events", C.c_uint32),
        ("state", C.c_uint64),  # issue 14: F_FLAG_*, F_BLOCKED (atomic in the kernel)
        ("sweep_prev", C.c_uint32),  # issue 14: the previous half of the sweep window
        ("open_prev", C.c_uint32),
    ]


class Event(C.Structure):
    _fields_ = [
        ("src", Addr),
        ("ts_ns", C.c_uint64),
        ("tripwire", C.c_uint32),
        ("sweep", C.c_uint32),
        ("port", C.c_uint16),
        ("proto", C.c_uint8),
        ("kind", C.c_uint8),
        ("tcp_flags", C.c_uint8),
        ("reason", C.c_uint8),
        ("flags", C.c_uint8),
        ("pad", C.c_uint8),
        ("distinct", C.c_uint32),
        ("recent", C.c_uint32 * RECENT),
        ("ttl", C.c_uint8),
        ("peer_hops", C.c_uint8),
        ("pad2", C.c_uint8 * 6),
    ]


class Cookie(C.Structure):
    _fields_ = [("cookie", C.c_uint32), ("pad", C.c_uint32)]


class Answer(C.Structure):
    _fields_ = [("src", Addr), ("ts_ns", C.c_uint64), ("seq", C.c_uint32), ("pad", C.c_uint32)]


class Counters(C.Structure):
    """The one per-CPU value of `counters`: SW_CNT_* and the per-kind packet counts."""
    _fields_ = [("c", C.c_uint64 * NCOUNTERS)]


# Kernel cost (issues 13, 14): the `fast` verdict cache in front of the hash maps.
FAST_DROP = 1
FAST_CAUGHT = 2
FAST_CLEAN = 3
FAST_KINDS = 8  # the kinds 0-7 a caught source's slot may pass: CNT_FAST_KIND + kind
FAST_NOPASS = 0xFFFF  # the pass key (in Fast.meta) of a slot that passes nothing


class Fast(C.Structure):
    _fields_ = [("src", Addr), ("meta", C.c_uint64), ("budget", C.c_uint32),
                ("pad", C.c_uint32)]


STRUCTS = {"sw_config": Config, "sw_addr": Addr, "sw_lpm_key": LpmKey, "sw_block": Block,
           "sw_source": Source, "sw_event": Event, "sw_cookie": Cookie, "sw_answer": Answer,
           "sw_fast": Fast, "sw_counters": Counters}


def recent_ports(ring, distinct):
    """The ring of recent distinct closed ports, oldest first, as (proto name, port)."""
    n = min(distinct, RECENT)
    start = distinct - n
    out = []
    for i in range(start, distinct):
        v = ring[i % RECENT]
        out.append((PROTO_NAMES[(v >> 16) & 1], v & 0xFFFF))
    return out
