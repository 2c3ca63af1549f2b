"""The one module that imports bcc: compile, attach and talk to the XDP sentry.

Everything it hands out is a plain record from model.py or a dict.
"""
import ctypes as C
import ipaddress
import os
import time

from . import contract as K
from .errors import KernelError
from .ignore import from_key, to_key, to_lpm
from .model import ScanEvent, SourceStats

REASONS = {K.EV_HIT: "hit", K.EV_TRIGGER: "trigger", K.EV_SWEEP: "sweep"}


def _addr(raw):
    return K.Addr((C.c_uint8 * 16)(*to_key(raw)))


def mono_now():
    return time.clock_gettime(time.CLOCK_MONOTONIC)


class Sentry:
    """The loaded XDP program and its maps."""

    def __init__(self, max_sources=65536, max_blocked=65536, max_ignore=4096):
        self.cflags = [f"-I{K.BPF_DIR}", f"-DSW_MAX_SOURCES={max_sources}",
                       f"-DSW_MAX_BLOCKED={max_blocked}", f"-DSW_MAX_IGNORE={max_ignore}",
                       "-Wno-unused-function"]
        self.bpf = None
        self.fn = None
        self.attached = {}   # ifname -> "native" | "generic"

    def load(self):
        try:
            from bcc import BPF
        except ImportError as err:
            raise KernelError("bcc is not installed (Debian: python3-bpfcc); run `make setup`") from err
        if not os.path.isdir(f"/lib/modules/{os.uname().release}/build"):
            raise KernelError(f"no kernel headers at /lib/modules/{os.uname().release}/build; "
                              "run `make setup`")
        try:
            self.bpf = BPF(src_file=str(K.PROGRAM), cflags=self.cflags)
            self.fn = self.bpf.load_func("xdp_sentry", BPF.XDP)
        except Exception as err:  # bcc raises bare Exception for compile and load failures
            raise KernelError(f"cannot load {K.PROGRAM.name}: {err}") from err
        self._BPF = BPF

    def attach(self, ifname):
        """Attach natively where the driver can, else in generic mode; replaces a stale program."""
        BPF = self._BPF
        for mode, flag in (("native", BPF.XDP_FLAGS_DRV_MODE), ("generic", BPF.XDP_FLAGS_SKB_MODE)):
            try:
                BPF.attach_xdp(ifname, self.fn, flag)
            except Exception as err:
                last = err
                continue
            self.attached[ifname] = mode
            return mode
        raise KernelError(f"cannot attach XDP to {ifname}: {last}") from last

    def detach(self):
        BPF = self._BPF
        for ifname, mode in list(self.attached.items()):
            flag = BPF.XDP_FLAGS_DRV_MODE if mode == "native" else BPF.XDP_FLAGS_SKB_MODE
            try:
                BPF.remove_xdp(ifname, flag)
            except Exception:
                pass  # the interface may be gone already; nothing left to detach
            del self.attached[ifname]

    def prog_id(self):
        """The kernel's id of the loaded program (for bpftool)."""
        from bcc import libbcc  # noqa: the module that owns bcc may use its internals
        info = C.create_string_buffer(256)
        size = C.c_uint32(256)
        fd = self.fn.fd
        rc = libbcc.lib.bpf_obj_get_info(fd, info, C.byref(size))
        if rc != 0:
            return None
        return C.c_uint32.from_buffer(info, 4).value

    # --- parameters -------------------------------------------------------------------
    def configure(self, *, scan_trigger, sweep_ports, sweep_window, block_timeout,
                  watch_tcp, watch_udp, kblock_tcp, kblock_udp):
        cfg = K.Config()
        cfg.sweep_window_ns = int(sweep_window * 1e9)
        cfg.block_timeout_ns = int(block_timeout * 1e9)
        cfg.scan_trigger = scan_trigger
        cfg.sweep_ports = sweep_ports
        cfg.watch[:] = (int(watch_tcp), int(watch_udp))
        cfg.kblock[:] = (int(kblock_tcp), int(kblock_udp))
        table = self.bpf["config"]
        table[table.Key(0)] = table.Leaf.from_buffer_copy(bytes(cfg))

    def set_watched(self, proto, ports):
        """Replace the watched-port bitmap of one protocol (TCP = 0, UDP = 1)."""
        words = [0] * K.PORT_WORDS
        for p in ports:
            words[p >> 6] |= 1 << (p & 63)
        table = self.bpf["watched"]
        base = proto * K.PORT_WORDS
        for i, w in enumerate(words):
            table[table.Key(base + i)] = table.Leaf(w)

    def set_ignored(self, networks):
        """Make the ignore trie hold exactly these networks."""
        table = self.bpf["ignored"]
        want = {}
        for net in networks:
            plen, key = to_lpm(net)
            want[(plen, key)] = True
        have = {(k.prefixlen, bytes(k.a)) for k in table.keys()}
        for plen, key in have - set(want):
            del table[K.LpmKey(plen, (C.c_uint8 * 16)(*key))]
        for plen, key in set(want) - have:
            table[K.LpmKey(plen, (C.c_uint8 * 16)(*key))] = C.c_uint8(1)

    # --- blocks and sources -------------------------------------------------------------
    def block(self, addr, expires_mono=None):
        table = self.bpf["blocked"]
        ns = int(expires_mono * 1e9) if expires_mono else 0
        table[_addr(addr)] = K.Block(ns)

    def block_many(self, items):
        """[(addr, expires_mono or None)] in one batched map update where the kernel can."""
        table = self.bpf["blocked"]
        if not items:
            return
        keys = (table.Key * len(items))()
        values = (table.Leaf * len(items))()
        for i, (addr, exp) in enumerate(items):
            C.memmove(C.byref(keys[i]), to_key(addr), 16)
            values[i] = table.Leaf.from_buffer_copy(bytes(K.Block(int(exp * 1e9) if exp else 0)))
        try:
            table.items_update_batch(keys, values)
        except Exception:  # kernels without batch ops: one update per element
            for k, v in zip(keys, values):
                table[k] = v

    def unblock(self, addr):
        """Lift a block and forget the source's counts, so it is judged afresh."""
        for name in ("blocked", "sources"):
            try:
                del self.bpf[name][_addr(addr)]
            except KeyError:
                pass

    def forget(self, addr):
        try:
            del self.bpf["sources"][_addr(addr)]
        except KeyError:
            pass

    def blocked(self):
        """Address -> expiry (monotonic seconds) or None, for every live kernel block."""
        now = mono_now()
        out = {}
        for k, v in self.bpf["blocked"].items():
            exp = v.expires_ns / 1e9 if v.expires_ns else None
            if exp is None or exp > now:
                out[str(from_key(bytes(k.a)))] = exp
        return out

    def _source_stats(self, key, value):
        s = K.Source.from_buffer_copy(bytes(value))
        flagged = tuple(n for n, bit in (("TCP", K.F_FLAG_TCP), ("UDP", K.F_FLAG_UDP))
                        if s.flags & bit)
        return SourceStats(
            addr=from_key(bytes(key.a)), first_mono=s.first_ns / 1e9, last_mono=s.last_ns / 1e9,
            hits={K.KIND_NAMES[i]: s.hits[i] for i in range(K.NKINDS) if s.hits[i]},
            distinct=s.distinct, sweep=s.sweep, last_port=s.last_port,
            last_kind=K.KIND_NAMES[min(s.last_kind, K.NKINDS - 1)], flagged=flagged,
            ports=tuple(K.recent_ports(s.recent, s.distinct)))

    def sources(self):
        return [self._source_stats(k, v) for k, v in self.bpf["sources"].items()]

    def source(self, addr):
        """One source's kernel row, or None."""
        key = _addr(addr)
        value = self.bpf["sources"].get(key)
        return None if value is None else self._source_stats(key, value)

    def source_count(self):
        """Entries in the sources map; batched, so a full map costs milliseconds."""
        table = self.bpf["sources"]
        try:
            return sum(1 for _ in table.items_lookup_batch())
        except Exception:  # kernels without batch ops: walk the keys one by one
            return sum(1 for _ in table.keys())

    def counters(self):
        table = self.bpf["counters"]
        return {name: sum(table[table.Key(i)]) for i, name in enumerate(K.COUNTER_NAMES)}

    # --- events -----------------------------------------------------------------------
    def open_events(self, handler):
        """Call handler(ScanEvent) for each ring-buffer record during poll()."""
        def on_record(_ctx, data, size):
            raw = C.string_at(data, min(size, C.sizeof(K.Event)))
            handler(decode_event(raw))
        self._cb = on_record  # keep a reference: bcc holds only a weak C pointer
        self.bpf["events"].open_ring_buffer(on_record)

    def poll(self, timeout_ms):
        self.bpf.ring_buffer_poll(timeout_ms)

    def close(self):
        self.detach()
        if self.bpf is not None:
            self.bpf.cleanup()
            self.bpf = None


def decode_event(raw):
    ev = K.Event.from_buffer_copy(raw.ljust(C.sizeof(K.Event), b"\0"))
    return ScanEvent(
        addr=from_key(bytes(ev.src.a)), mono=ev.ts_ns / 1e9,
        proto=K.PROTO_NAMES[ev.proto & 1], port=ev.port,
        kind=K.KIND_NAMES[min(ev.kind, K.NKINDS - 1)],
        reason=REASONS.get(ev.reason, "hit"), tcp_flags=ev.tcp_flags,
        tripwire=ev.tripwire, sweep=ev.sweep,
        kernel_blocked=bool(ev.flags & K.F_KBLOCKED), ip_options=bool(ev.flags & K.F_IPOPTS),
        ports=tuple(K.recent_ports(ev.recent, ev.distinct)))


__all__ = ["Sentry", "decode_event", "mono_now", "ipaddress"]
