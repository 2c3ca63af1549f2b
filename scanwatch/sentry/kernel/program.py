"""The XDP sentry as the daemon sees it: program and maps by fd (no bcc here; see
loader.py), XDP attachment over netlink, typed records out.
"""
import ctypes as C
import errno
import os
import struct
import time

from . import contract as K
from . import loader, xdp
from .bpfsys import Map, MappedArray, RingBuffer, RingSet
from ...errors import KernelError
from ..ignore import MAPPED_PREFIX, covered, from_key, to_key, to_lpm
from ..model import ScanEvent, SourceStats

REASONS = {K.EV_HIT: "hit", K.EV_TRIGGER: "trigger", K.EV_SWEEP: "sweep",
           K.EV_PERSIST: "persist"}


FAST_TICK_S = 1.0  # longest a verdict cached in the kernel outlives its source (a block's end)


def mono_now():
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def _u32(i):
    return struct.pack("<I", i)


class Sentry:
    """The loaded XDP program and its maps."""

    def __init__(self, max_sources=65536, max_blocked=65536, max_ignore=4096):
        self.cflags = [f"-I{K.BPF_DIR}", f"-DSW_MAX_SOURCES={max_sources}",
                       f"-DSW_MAX_BLOCKED={max_blocked}", f"-DSW_MAX_IGNORE={max_ignore}",
                       "-Wno-unused-function"]
        # Keys the sweep filters' and the verdict cache's hashes (issue 14): fixed for this
        # load, unknown outside, so a scanner cannot order ports to reuse bits. A -D flag,
        # not a config field: the packets the verdict cache ends then read no second line.
        self.bloom_seed = int.from_bytes(os.urandom(8), "little")
        self.cflags.append(f"-DSW_SEED={self.bloom_seed:#x}ULL")
        self.fds = {}
        self.maps = {}
        self.ring = None
        self.attached = {}   # ifname -> "native" | "generic"
        self._attachments = {}  # ifname -> xdp.Attachment
        self._say = None
        self._cfg = None      # the last config written (set_local turns local_only on/off)
        self.local_only = 0   # issue 14: on once `local` holds this host's addresses
        self.v6_prefix = 128  # issue 14: IPv6 sources counted per prefix of this length
        # The kernel's verdict cache (`fast`) is emptied, and the generation of `listening`
        # moved on, after every change of blocks or ignores and every FAST_TICK_S: that
        # bounds how long a cached verdict can outlive what it was made from (a block's end).
        self.fast_gen = 1
        self._fast_due = 0.0
        self._fast = None     # the verdict cache's slots, mapped

    def load(self):
        release = os.uname().release
        if not os.path.isdir(f"/lib/modules/{release}/build"):
            raise KernelError(f"no kernel headers at /lib/modules/{release}/build; "
                              "run `make setup`")
        self.fds = loader.load(self.cflags)
        self.maps = {name: Map(fd) for name, fd in self.fds.items() if name != "prog"}
        fast = self.maps["fast"]
        self._fast = MappedArray(fast.fd, fast.max_entries * C.sizeof(K.Fast))

    @property
    def prog_fd(self):
        return self.fds["prog"]

    # --- attachment -----------------------------------------------------------------------
    def attach(self, ifname, replace=False, say=None, state_dir=None):
        """Attach natively where the driver can, else in generic mode. A program left by
        a daemon that died is replaced; another tool's only with `replace` (see xdp.py).
        state_dir keeps the record of the program id attached to ifname."""
        record = os.path.join(state_dir, f"xdp-{ifname}.id") if state_dir else None
        att = xdp.attach(ifname, self.prog_fd, replace, say, record=record)
        att.record = record
        self._say = say  # detach (at close) says what it left alone the same way
        self._attachments[ifname] = att
        self.attached[ifname] = att.mode
        return att.mode

    def detach(self):
        for ifname in list(self.attached):
            att = self._attachments.pop(ifname)
            note = xdp.detach(att, self.prog_fd)
            xdp.forget(att.record)
            if note and self._say:
                self._say(note)
            del self.attached[ifname]

    # --- parameters -----------------------------------------------------------------------
    def configure(self, *, scan_trigger, sweep_ports, sweep_window, block_timeout,
                  watch_tcp, watch_udp, kblock_tcp, kblock_udp, persist_probes=0,
                  slow_ports=0, slow_window=0, hit_rate=1, v6_prefix=128):
        cfg = K.Config()
        cfg.sweep_window_ns = int(sweep_window * 1e9)
        cfg.slow_window_ns = int(slow_window * 1e9)
        cfg.slow_ports = slow_ports
        cfg.block_timeout_ns = int(block_timeout * 1e9)
        cfg.scan_trigger = scan_trigger
        cfg.sweep_ports = sweep_ports
        cfg.watch[:] = (int(watch_tcp), int(watch_udp))
        cfg.kblock[:] = (int(kblock_tcp), int(kblock_udp))
        cfg.persist_probes = persist_probes
        cfg.hit_rate = hit_rate
        cfg.local_only = self.local_only
        self.v6_prefix = v6_prefix if 0 < v6_prefix < 128 else 128
        cfg.v6_prefix = self.v6_prefix % 128
        self._cfg = cfg
        self._write_config()

    def _write_config(self):
        """Write the config with a new generation of `listening`, and empty the verdict
        cache: its hits compare no generation, so that they read no line of the config."""
        self.fast_gen = self.fast_gen % 0xffffffff + 1
        self._cfg.fast_gen = self.fast_gen
        self.maps["config"].update(_u32(0), bytes(self._cfg))
        # After the change it follows. A fill that read the old state and lands behind
        # the memset survives until the next one (FAST_TICK_S), as it outlived a new
        # generation before; a slot torn by the two writers fails its address check.
        self._fast.zero()
        self._fast_due = mono_now() + FAST_TICK_S

    def forget_verdicts(self):
        """Every verdict the kernel cached is judged afresh from the maps (cheap: one
        56-byte map write and a 512 KiB memset)."""
        if self._cfg is not None:
            self._write_config()

    # --- issue 14: which packets are for this host ----------------------------------------
    def set_local(self, addrs):
        """Make `local` hold exactly these own addresses; the kernel then counts only
        packets to them. False (and every packet counts again) if they do not fit."""
        m = self.maps["local"]
        want = {to_key(a) for a in addrs}
        have = set(m.keys())
        ok = bool(want)
        try:
            for k in have - want:
                m.delete(k)
            for k in want - have:
                m.update(k, b"\1")
        except OSError as err:
            if err.errno not in (errno.E2BIG, errno.ENOMEM, errno.ENOSPC):
                raise
            ok = False
        self.local_only = int(ok)
        if self._cfg is not None and self._cfg.local_only != self.local_only:
            self._cfg.local_only = self.local_only
            self._write_config()
        return ok or not want

    def set_forwarded(self, tcp, udp):
        """The ports DNAT/redirect rules forward, per protocol: served behind NAT, so open."""
        self._set_ports("natted", 0, tcp)
        self._set_ports("natted", 1, udp)

    def set_watched(self, proto, ports):
        """Replace the watched-port bitmap of one protocol (TCP = 0, UDP = 1)."""
        self._set_ports("watched", proto, ports)

    def _set_ports(self, name, proto, ports):
        words = [0] * K.PORT_WORDS
        for p in ports:
            words[p >> 6] |= 1 << (p & 63)
        base = proto * K.PORT_WORDS
        self.maps[name].update_batch(
            [(_u32(base + i), struct.pack("<Q", w)) for i, w in enumerate(words)])

    def set_ignored(self, networks):
        """Make the ignore trie hold exactly these networks."""
        trie = self.maps["ignored"]
        want = {struct.pack("<I", plen) + key for plen, key in map(to_lpm, networks)}
        have = set(trie.keys())
        for k in have - want:
            trie.delete(k)
        for k in want - have:
            trie.update(k, b"\1")
        # The kernel consults the trie when it creates a source's entry: an address that
        # got one before it was ignored would keep counting. Forget those (after the trie
        # is in place, so no new entry can slip in behind the walk).
        added = [(int.from_bytes(k[:4], "little"), k[4:]) for k in want - have]
        if added:
            stale = [k for k in self.maps["sources"].keys() if covered(k, added)]
            for k in stale:
                self.maps["sources"].delete(k)
        self.forget_verdicts()

    # --- blocks and sources ---------------------------------------------------------------
    def source_key(self, addr):
        """The kernel's key for addr's counts and own blocks: the address, or for IPv6 its
        V6_PREFIX network (issue 14)."""
        key = to_key(addr)
        if self.v6_prefix >= 128 or key[:12] == MAPPED_PREFIX:
            return key
        mask = ((1 << self.v6_prefix) - 1) << (128 - self.v6_prefix)
        return (int.from_bytes(key, "big") & mask).to_bytes(16, "big")

    def block(self, addr, expires_mono=None, unreported=False):
        """A reported block goes into `blocked`, which never evicts (full: KernelError);
        an unreported one (past BLOCK_RATE, likely spoofed) into the kernel's own LRU, so a
        forged flood can never push a reported block out."""
        ns = int(expires_mono * 1e9) if expires_mono else 0
        key = to_key(addr)
        blocked = self.maps["kblocked" if unreported else "blocked"]
        try:
            blocked.update(key, struct.pack("<Q", ns))
        except OSError as err:
            if err.errno != errno.E2BIG:
                raise
            raise KernelError(f"XDP blocked map full (MAX_BLOCKED={blocked.max_entries}): "
                              f"{addr} not blocked in XDP") from None
        # The XDP program trusts a known source's own block flag and checks `blocked`
        # only for addresses without an entry. Userspace never writes a source entry
        # back (a read-modify-write would undo the counts CPUs add meanwhile): a source
        # the kernel has not blocked itself loses its entry, so its next packet finds
        # `blocked`; one it blocked itself consults `blocked` when that block ends.
        sources, key = self.maps["sources"], self.source_key(addr)
        raw = sources.lookup(key)
        if raw is not None and not K.Source.from_buffer_copy(raw).state & K.F_BLOCKED:
            sources.delete(key)
        self.forget_verdicts()  # a cached "caught, not blocked" must not outlive this

    def block_many(self, items):
        """[(addr, expires_mono or None)] in one batched map update where the kernel can
        (at start, when the sources map is empty). The map never evicts: beyond its
        capacity the last (most recent) items are kept."""
        items = items[-self.maps["blocked"].max_entries:]
        self.maps["blocked"].update_batch(
            [(to_key(a), struct.pack("<Q", int(e * 1e9) if e else 0)) for a, e in items])
        self.forget_verdicts()

    def unblock(self, addr):
        """Lift a block and forget the source's counts, so it is judged afresh."""
        key, skey = to_key(addr), self.source_key(addr)
        self.maps["blocked"].delete(key)
        self.maps["kblocked"].delete(key)
        self.maps["kblocked"].delete(skey)  # the kernel's own block of its prefix (issue 14)
        self.maps["sources"].delete(skey)
        self.forget_verdicts()  # a cached drop must not outlive the block

    @staticmethod
    def _source_stats(key, value):
        s = K.Source.from_buffer_copy(value)
        flagged = tuple(n for n, bit in (("TCP", K.F_FLAG_TCP), ("UDP", K.F_FLAG_UDP))
                        if s.state & bit)
        return SourceStats(
            addr=from_key(key), first_mono=s.first_ns / 1e9, last_mono=s.last_ns / 1e9,
            hits={K.KIND_NAMES[i]: s.hits[i] for i in range(K.NKINDS) if s.hits[i]},
            distinct=s.distinct, sweep=s.sweep + s.sweep_prev, last_port=s.last_port,
            last_kind=K.KIND_NAMES[min(s.last_kind, K.NALLKINDS - 1)], flagged=flagged,
            ports=tuple(K.recent_ports(s.recent, s.distinct)))

    def source(self, addr):
        """One source's kernel row (its prefix's, for aggregated IPv6), or None."""
        key = self.source_key(addr)
        value = self.maps["sources"].lookup(key)
        return None if value is None else self._source_stats(key, value)

    def source_walk(self, wanted=()):
        """(sources in the map, {key: first packet in CLOCK_MONOTONIC ns} for the keys
        in `wanted`): one batched walk that holds one batch at a time, so status during
        a flood that fills the map costs no memory spike."""
        first, at = struct.Struct("<Q").unpack_from, K.Source.first_ns.offset
        n, firsts = 0, {}
        for key, value in self.maps["sources"].items():
            n += 1
            if key in wanted:
                firsts[key] = first(value, at)[0]
        return n, firsts

    def map_fill(self):
        """Entries in use per bounded map, for status and metrics."""
        return {name: (self.maps[name].count(), self.maps[name].max_entries)
                for name in ("sources", "blocked", "kblocked")}

    def counters(self):
        return K.fold_counters(self.maps["counters"].percpu_sums(K.NCOUNTERS))

    # --- events ---------------------------------------------------------------------------
    def set_cookie(self, addr, cookie):
        """Expect a RST from addr whose seq is cookie (the challenge's ack number)."""
        self.maps["cookies"].update(to_key(addr), struct.pack("<II", cookie, 0))

    def drop_cookie(self, addr):
        self.maps["cookies"].delete(to_key(addr))

    def open_events(self, handler, on_answer=None):
        """Call handler(ScanEvent) for each ring-buffer record during poll(). `events`
        first: a source's trigger there comes before its EV_PERSIST in `alerts`, unless
        a flood queued or lost it."""
        def ring(name):
            m = self.maps[name]
            return RingBuffer(m.fd, m.max_entries, lambda raw: handler(decode_event(raw)))
        rings = [ring("events"), ring("alerts")]
        if on_answer is not None:
            m = self.maps["answers"]
            rings.insert(0, RingBuffer(m.fd, m.max_entries,
                                       lambda raw: on_answer(*decode_answer(raw))))
        self.ring = RingSet(rings)

    def poll(self, timeout_ms):
        self.ring.poll(timeout_ms)
        if self._cfg is not None and mono_now() >= self._fast_due:
            self.forget_verdicts()

    def close(self):
        self.detach()
        if self.ring is not None:
            self.ring.close()
            self.ring = None
        if self._fast is not None:
            self._fast.close()
            self._fast = None
        for fd in self.fds.values():
            os.close(fd)
        self.fds, self.maps = {}, {}


def decode_event(raw):
    ev = K.Event.from_buffer_copy(bytes(raw).ljust(C.sizeof(K.Event), b"\0"))
    return ScanEvent(
        addr=from_key(bytes(ev.src.a)), mono=ev.ts_ns / 1e9,
        proto=K.PROTO_NAMES[ev.proto & 1], port=ev.port,
        kind=K.KIND_NAMES[min(ev.kind, K.NALLKINDS - 1)],
        reason=REASONS.get(ev.reason, "hit"), tcp_flags=ev.tcp_flags,
        tripwire=ev.tripwire, sweep=ev.sweep,
        kernel_blocked=bool(ev.flags & K.F_KBLOCKED), ip_options=bool(ev.flags & K.F_IPOPTS),
        fragmented=bool(ev.flags & K.F_FRAG), slow=bool(ev.flags & K.F_SLOW),
        ports=tuple(K.recent_ports(ev.recent, ev.distinct)),
        ttl=ev.ttl, peer_hops=ev.peer_hops, hop_mismatch=bool(ev.flags & K.F_SUSPECT))


def decode_answer(raw):
    """An `answers` record: (address, CLOCK_MONOTONIC seconds, seq)."""
    a = K.Answer.from_buffer_copy(bytes(raw).ljust(C.sizeof(K.Answer), b"\0"))
    return from_key(bytes(a.src.a)), a.ts_ns / 1e9, a.seq
