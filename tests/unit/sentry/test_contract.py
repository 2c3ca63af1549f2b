"""contract.py against bpf/scanwatch.h (compiled with the host cc), and program.decode_event."""
import ctypes as C
import ipaddress
import re
import shutil
import subprocess
import sys

import pytest

from scanwatch.sentry.kernel import contract as K
from scanwatch.sentry.ignore import to_key
from scanwatch.sentry.model import ScanEvent

HEADER_TEXT = K.HEADER.read_text()


# --- layout: compile the header ---------------------------------------------------------

def _c_program():
    lines = ["#include <stdio.h>", "#include <stddef.h>", '#include "scanwatch.h"',
             "int main(void) {"]
    for sname, cls in K.STRUCTS.items():
        lines.append(f'  printf("{sname} . %zu %zu\\n", sizeof(struct {sname}), '
                     f"_Alignof(struct {sname}));")
        for fname, *_ in cls._fields_:
            lines.append(f'  printf("{sname} {fname} %zu %zu\\n", '
                         f"offsetof(struct {sname}, {fname}), "
                         f"sizeof(((struct {sname} *)0)->{fname}));")
    lines += ["  return 0;", "}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory):
    cc = shutil.which("cc")
    assert cc, "the system C compiler `cc` is required (build-essential)"
    d = tmp_path_factory.mktemp("contract")
    src, exe = d / "layout.c", d / "layout"
    src.write_text(_c_program())
    build = subprocess.run([cc, "-std=gnu11", "-Wall", "-Werror", "-I", str(K.BPF_DIR),
                            "-o", str(exe), str(src)], capture_output=True, text=True)
    assert build.returncode == 0, f"cc failed:\n{build.stderr}"
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    layout = {}
    for line in out.splitlines():
        sname, fname, a, b = line.split()
        layout[(sname, fname)] = (int(a), int(b))
    return layout


def test_structs_cover_the_header():
    declared = re.findall(r"^struct\s+(sw_\w+)\s*\{", HEADER_TEXT, re.M)
    assert sorted(declared) == sorted(K.STRUCTS)


def _header_fields(sname):
    body = re.search(rf"^struct\s+{sname}\s*\{{(.*?)^\}};", HEADER_TEXT, re.M | re.S).group(1)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    names = []
    for decl in body.split(";"):
        decl = decl.strip()
        if decl:
            names.append(re.search(r"(\w+)\s*(\[[^\]]*\])?$", decl).group(1))
    return names


@pytest.mark.parametrize("sname", sorted(K.STRUCTS))
def test_field_names_and_order(sname):
    assert [f[0] for f in K.STRUCTS[sname]._fields_] == _header_fields(sname)


@pytest.mark.parametrize("sname", sorted(K.STRUCTS))
def test_struct_size_and_alignment(c_layout, sname):
    cls = K.STRUCTS[sname]
    size, align = c_layout[(sname, ".")]
    assert C.sizeof(cls) == size
    assert C.alignment(cls) == align


@pytest.mark.parametrize("sname,fname", [(s, f[0]) for s, cls in sorted(K.STRUCTS.items())
                                         for f in cls._fields_])
def test_field_offset_and_size(c_layout, sname, fname):
    desc = getattr(K.STRUCTS[sname], fname)
    assert (desc.offset, desc.size) == c_layout[(sname, fname)]


def test_known_sizes(c_layout):
    # Pinned so that an accidental change shows up even if both sides move together.
    assert {s: c_layout[(s, ".")][0] for s in K.STRUCTS} == {
        "sw_config": 56, "sw_addr": 16, "sw_lpm_key": 20, "sw_block": 8,
        "sw_source": 528, "sw_event": 184, "sw_cookie": 8, "sw_answer": 32, "sw_fast": 32, "sw_counters": 240}


# --- constants: parse the header's #defines ---------------------------------------------

DEFINES = {m.group(1): int(m.group(2), 0) for m in re.finditer(
    r"^#define\s+(SW_\w+)\s+(0x[0-9A-Fa-f]+|\d+)\b", HEADER_TEXT, re.M)}


def test_header_defines_expected_families():
    for prefix in ("SW_KIND_", "SW_CNT_", "SW_EV_", "SW_F_"):
        assert any(n.startswith(prefix) for n in DEFINES), prefix
    for name in ("SW_NKINDS", "SW_RECENT", "SW_PORT_WORDS", "SW_BLOOM_WORDS", "SW_NCOUNTERS",
                 "SW_PROTO_TCP", "SW_PROTO_UDP"):
        assert name in DEFINES, name
    # Every `#define SW_...` with a value was understood by the regex (SCANWATCH_H has none).
    assert len(DEFINES) == len(re.findall(r"^#define\s+SW_\w+\s+\S", HEADER_TEXT, re.M))


@pytest.mark.parametrize("name", sorted(DEFINES))
def test_define_matches_contract(name):
    py = name.removeprefix("SW_")
    assert hasattr(K, py), f"contract.py has no {py} for {name}"
    assert getattr(K, py) == DEFINES[name]


def test_kind_and_counter_tables():
    kinds = sorted((v, n) for n, v in DEFINES.items() if n.startswith("SW_KIND_"))
    assert [v for v, _ in kinds] == list(range(DEFINES["SW_NALLKINDS"]))
    assert len(K.KIND_NAMES) == K.NALLKINDS > K.NKINDS
    assert K.KIND_NAMES[K.KIND_SYN] == "SYN/Normal"
    assert K.KIND_NAMES[K.KIND_UNKNOWN] == "Unknown Type"
    assert len(K.COUNTER_NAMES) == K.CNT_FAST_DROPPED
    assert len(set(K.COUNTER_NAMES)) == K.CNT_FAST_DROPPED
    cnts = sorted(v for n, v in DEFINES.items() if n.startswith("SW_CNT_"))
    # The per-kind packet counters come first, then one slot per named SW_CNT_*, then the
    # verdict cache's: a drop, a pass per kind tcp_kind() and UDP give (0-7), a pass.
    assert cnts == list(range(K.NKINDS, K.CNT_FAST_DROPPED)) + [
        K.CNT_FAST_DROPPED, K.CNT_FAST_KIND, K.CNT_FAST_PASSED]
    assert K.CNT_FAST_KIND + K.FAST_KINDS == K.CNT_FAST_PASSED
    assert K.FAST_KINDS == K.KIND_MAIMON + 1 and K.KIND_UDP < K.FAST_KINDS
    assert K.CNT_FAST_PASSED == K.CNT_FAST_KIND + 8 == K.NCOUNTERS - 1
    # issue 13's kinds (no hits[] slot) count in the slots after CNT_PACKETS, in order
    for kind in range(K.NKINDS, K.NALLKINDS):
        assert K.COUNTER_NAMES[K.CNT_SCTP_INIT + kind - K.NKINDS] == K.KIND_NAMES[kind]
    assert K.COUNTER_NAMES[K.CNT_DROPPED] == "dropped"
    assert K.COUNTER_NAMES[K.CNT_LOST] == "events_lost"
    assert K.COUNTER_NAMES[K.CNT_TRIPWIRE] == "tripwire"
    assert K.COUNTER_NAMES[K.CNT_KBLOCKS] == "kernel_blocks"
    assert K.COUNTER_NAMES[K.CNT_PACKETS] == "packets"


def test_fold_counters_adds_the_verdict_cache_exits():
    raw = [0] * K.NCOUNTERS
    raw[K.CNT_PACKETS], raw[K.CNT_DROPPED], raw[K.KIND_SYN], raw[K.KIND_UDP] = 10, 3, 4, 1
    raw[K.CNT_FAST_DROPPED] = 100
    raw[K.CNT_FAST_KIND + K.KIND_SYN], raw[K.CNT_FAST_KIND + K.KIND_UDP] = 20, 5
    raw[K.CNT_FAST_PASSED] = 7
    c = K.fold_counters(raw)
    assert list(c) == list(K.COUNTER_NAMES)
    assert c["dropped"] == 103
    assert c["SYN/Normal"] == 24 and c["UDP"] == 6 and c["FIN"] == 0
    assert c["packets"] == 10 + 100 + 20 + 5 + 7


def test_ring_sizes_are_powers_of_two():
    # sentry.bpf.c indexes with `& (N - 1)`.
    for n in (K.RECENT, K.BLOOM_WORDS):
        assert n > 0 and n & (n - 1) == 0
    assert K.PORT_WORDS * 64 == 65536


def test_flags_are_distinct_bits():
    flags = [v for n, v in DEFINES.items() if n.startswith("SW_F_")]
    for f in flags:
        assert f & (f - 1) == 0
    assert len(set(flags)) == len(flags)


# --- program.py imports without bcc --------------------------------------------------------

def test_import_kernel_does_not_import_bcc():
    code = ("import sys\n"
            "import scanwatch.sentry.kernel.program as k\n"
            "assert callable(k.decode_event)\n"
            "print(sorted(m for m in sys.modules if m == 'bcc' or m.startswith('bcc.')))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
    assert r.stderr == ""


def test_sentry_construction_needs_no_bcc():
    from scanwatch.sentry.kernel import program
    s = program.Sentry(max_sources=128)
    assert s.maps == {} and s.attached == {}
    assert f"-I{K.BPF_DIR}" in s.cflags and "-DSW_MAX_SOURCES=128" in s.cflags


# --- decode_event -----------------------------------------------------------------------

def _kernel_ring(ports):
    """Replay sentry.bpf.c: recent[distinct & (RECENT-1)] = proto<<16|port; distinct++."""
    ring = [0] * K.RECENT
    distinct = 0
    for proto, port in ports:
        ring[distinct & (K.RECENT - 1)] = proto << 16 | port
        distinct += 1
    return ring, distinct


def _event(addr, *, ports=(), **fields):
    ev = K.Event()
    ev.src.a[:] = list(to_key(addr))
    ring, distinct = _kernel_ring(ports)
    ev.recent[:] = ring
    ev.distinct = distinct
    for k, v in fields.items():
        setattr(ev, k, v)
    return bytes(ev)


def test_decode_v4_trigger():
    from scanwatch.sentry.kernel.program import decode_event
    raw = _event("192.0.2.33", ports=[(0, 31337)], ts_ns=1_500_000_000, tripwire=3, sweep=1,
                 port=31337, proto=K.PROTO_TCP, kind=K.KIND_XMAS, tcp_flags=0x29,
                 reason=K.EV_TRIGGER, flags=K.F_KBLOCKED | K.F_IPOPTS)
    assert len(raw) == C.sizeof(K.Event)
    ev = decode_event(raw)
    assert ev == ScanEvent(addr=ipaddress.IPv4Address("192.0.2.33"), mono=1.5, proto="TCP",
                           port=31337, kind="XMAS", reason="trigger", tcp_flags=0x29,
                           tripwire=3, sweep=1, kernel_blocked=True, ip_options=True,
                           ports=(("TCP", 31337),))
    assert isinstance(ev.addr, ipaddress.IPv4Address)


def test_decode_v6_udp_hit():
    from scanwatch.sentry.kernel.program import decode_event
    raw = _event("2001:db8::42", ports=[(1, 161)], ts_ns=42, port=161, proto=K.PROTO_UDP,
                 kind=K.KIND_UDP, reason=K.EV_HIT, tripwire=1)
    ev = decode_event(raw)
    assert ev.addr == ipaddress.IPv6Address("2001:db8::42")
    assert (ev.proto, ev.port, ev.kind, ev.reason) == ("UDP", 161, "UDP", "hit")
    assert ev.kernel_blocked is False and ev.ip_options is False
    assert ev.ports == (("UDP", 161),)
    assert ev.mono == pytest.approx(42e-9)


@pytest.mark.parametrize("reason,name", [(K.EV_HIT, "hit"), (K.EV_TRIGGER, "trigger"),
                                         (K.EV_SWEEP, "sweep"), (K.EV_PERSIST, "persist")])
def test_decode_reasons(reason, name):
    from scanwatch.sentry.kernel.program import decode_event
    assert decode_event(_event("192.0.2.1", reason=reason)).reason == name


@pytest.mark.parametrize("kind", range(K.NKINDS))
def test_decode_kinds(kind):
    from scanwatch.sentry.kernel.program import decode_event
    assert decode_event(_event("192.0.2.1", kind=kind)).kind == K.KIND_NAMES[kind]


@pytest.mark.parametrize("n", [0, 1, 2, 31, 32, 33, 40, 63, 64, 65, 100, 1000])
def test_recent_ring_oldest_first(n):
    from scanwatch.sentry.kernel.program import decode_event
    sent = [(i % 2, 1000 + i) for i in range(n)]  # alternate TCP/UDP, all distinct
    expected = tuple((K.PROTO_NAMES[p], port) for p, port in sent[-K.RECENT:]) if n else ()
    ring, distinct = _kernel_ring(sent)
    assert tuple(K.recent_ports(ring, distinct)) == expected
    ev = decode_event(_event("192.0.2.1", ports=sent, reason=K.EV_SWEEP))
    assert ev.ports == expected
    assert len(ev.ports) == min(n, K.RECENT)
    if n > K.RECENT:
        assert ev.ports[0] == (K.PROTO_NAMES[(n - K.RECENT) % 2], 1000 + n - K.RECENT)
    if n:
        assert ev.ports[-1] == (K.PROTO_NAMES[(n - 1) % 2], 1000 + n - 1)


def test_decode_short_record_is_zero_padded():
    from scanwatch.sentry.kernel.program import decode_event
    raw = _event("192.0.2.1", port=7, reason=K.EV_HIT)
    ev = decode_event(raw[:40])  # up to and including `pad`, no ring
    assert ev.addr == ipaddress.IPv4Address("192.0.2.1")
    assert ev.port == 7
    assert ev.ports == ()
