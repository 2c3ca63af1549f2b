"""bpf(2) without bcc: map operations, the ring buffer and XDP attachment.

The daemon never imports bcc: scanwatch/loader.py compiles and loads the program in a
child process and hands over the program and map fds, so LLVM's ~150 MB stay out of the
daemon. What remains here is a few syscalls and the ring buffer's shared-memory protocol.
"""
import ctypes as C
import errno
import mmap
import os
import platform
import select
import struct

NR_BPF = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "ppc64le": 361, "s390x": 351,
          "riscv64": 280}.get(platform.machine(), 321)
MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MAP_DELETE_ELEM, MAP_GET_NEXT_KEY = 1, 2, 3, 4
OBJ_GET_INFO_BY_FD, MAP_LOOKUP_BATCH, MAP_UPDATE_BATCH = 15, 24, 26
PERCPU_TYPES = {5, 6, 10}  # percpu hash, percpu array, lru percpu hash
RINGBUF_BUSY, RINGBUF_DISCARD, RINGBUF_HDR = 1 << 31, 1 << 30, 8

_libc = C.CDLL(None, use_errno=True)
_libc.syscall.restype = C.c_long
u32, u64 = C.c_uint32, C.c_uint64


class _Elem(C.Structure):
    _fields_ = [("map_fd", u32), ("pad", u32), ("key", u64), ("value", u64), ("flags", u64)]


class _Batch(C.Structure):
    _fields_ = [("in_batch", u64), ("out_batch", u64), ("keys", u64), ("values", u64),
                ("count", u32), ("map_fd", u32), ("elem_flags", u64), ("flags", u64)]


class _Info(C.Structure):
    _fields_ = [("bpf_fd", u32), ("info_len", u32), ("info", u64)]


class MapInfo(C.Structure):  # the head of struct bpf_map_info
    _fields_ = [("type", u32), ("id", u32), ("key_size", u32), ("value_size", u32),
                ("max_entries", u32), ("map_flags", u32), ("name", C.c_char * 16)]


def _bpf(cmd, attr):
    rc = _libc.syscall(NR_BPF, cmd, C.byref(attr), C.sizeof(attr))
    if rc < 0:
        err = C.get_errno()
        raise OSError(err, os.strerror(err))
    return rc


def obj_info(fd, info):
    buf = C.create_string_buffer(256)
    attr = _Info(fd, 256, C.addressof(buf))
    _bpf(OBJ_GET_INFO_BY_FD, attr)
    C.memmove(C.byref(info), buf, C.sizeof(info))
    return info


def possible_cpus():
    with open("/sys/devices/system/cpu/possible") as fh:
        n = 0
        for part in fh.read().strip().split(","):
            lo, _, hi = part.partition("-")
            n += int(hi or lo) - int(lo) + 1
        return n


class Map:
    """One BPF map by fd; keys and values are bytes (see contract.py for their layout)."""

    def __init__(self, fd):
        self.fd = fd
        info = obj_info(fd, MapInfo())
        self.type, self.key_size, self.max_entries = info.type, info.key_size, info.max_entries
        self.name = info.name.decode()
        self.percpu = info.type in PERCPU_TYPES
        self.ncpus = possible_cpus() if self.percpu else 1
        # a per-CPU value is one 8-byte-aligned slot per possible CPU
        self.value_size = ((info.value_size + 7) & ~7) * self.ncpus if self.percpu \
            else info.value_size

    def lookup(self, key):
        value = C.create_string_buffer(self.value_size)
        kbuf = C.create_string_buffer(bytes(key), self.key_size)
        try:
            _bpf(MAP_LOOKUP_ELEM, _Elem(self.fd, 0, C.addressof(kbuf), C.addressof(value), 0))
        except OSError as err:
            if err.errno == errno.ENOENT:
                return None
            raise
        return value.raw

    def update(self, key, value, flags=0):
        kbuf = C.create_string_buffer(bytes(key), self.key_size)
        vbuf = C.create_string_buffer(bytes(value), self.value_size)
        _bpf(MAP_UPDATE_ELEM, _Elem(self.fd, 0, C.addressof(kbuf), C.addressof(vbuf), flags))

    def delete(self, key):
        kbuf = C.create_string_buffer(bytes(key), self.key_size)
        try:
            _bpf(MAP_DELETE_ELEM, _Elem(self.fd, 0, C.addressof(kbuf), 0, 0))
        except OSError as err:
            if err.errno == errno.ENOENT:
                return False
            raise
        return True

    def keys(self):
        prev = None
        nxt = C.create_string_buffer(self.key_size)
        while True:
            kbuf = C.create_string_buffer(prev, self.key_size) if prev is not None else None
            try:
                _bpf(MAP_GET_NEXT_KEY, _Elem(self.fd, 0, C.addressof(kbuf) if kbuf else 0,
                                              C.addressof(nxt), 0))
            except OSError as err:
                if err.errno == errno.ENOENT:
                    return
                raise
            prev = nxt.raw
            yield prev

    def items(self):
        """Every (key, value); one batched syscall per 4096 entries where the kernel can.
        A generator: a walk of a full 65,536-entry map never holds more than a batch."""
        try:
            for n, kraw, vraw in self._batches():
                ks, vs = self.key_size, self.value_size
                for i in range(n):
                    yield kraw[i * ks:(i + 1) * ks], vraw[i * vs:(i + 1) * vs]
            return
        except _NoBatch:
            pass
        for k in self.keys():
            v = self.lookup(k)
            if v is not None:
                yield k, v

    def count(self):
        """Entries in use, by the same batched walk, without copying them out."""
        try:
            return sum(n for n, _k, _v in self._batches())
        except _NoBatch:
            return sum(1 for _ in self.keys())

    def _batches(self, chunk=4096):
        keys = C.create_string_buffer(self.key_size * chunk)
        values = C.create_string_buffer(self.value_size * chunk)
        token_in = C.create_string_buffer(max(self.key_size, 8))
        token_out = C.create_string_buffer(max(self.key_size, 8))
        first = True
        while True:
            attr = _Batch(0 if first else C.addressof(token_in), C.addressof(token_out),
                          C.addressof(keys), C.addressof(values), chunk, self.fd, 0, 0)
            done = False
            try:
                _bpf(MAP_LOOKUP_BATCH, attr)
            except OSError as err:
                if first and err.errno in (errno.EINVAL, 524):  # 524: the kernel's ENOTSUPP
                    raise _NoBatch() from err
                if err.errno != errno.ENOENT:
                    raise
                done = True  # the last (possibly partial) batch
            n = attr.count
            if n:
                yield n, C.string_at(keys, n * self.key_size), \
                    C.string_at(values, n * self.value_size)
            if done or n == 0:
                return
            C.memmove(token_in, token_out, C.sizeof(token_in))
            first = False

    def update_batch(self, pairs):
        if not pairs:
            return
        keys = C.create_string_buffer(b"".join(bytes(k) for k, _ in pairs))
        values = C.create_string_buffer(b"".join(bytes(v) for _, v in pairs))
        attr = _Batch(0, 0, C.addressof(keys), C.addressof(values), len(pairs), self.fd, 0, 0)
        try:
            _bpf(MAP_UPDATE_BATCH, attr)
        except OSError:  # kernels without batch ops: one element at a time
            for k, v in pairs:
                self.update(k, v)

    def percpu_sums(self, n):
        """For a per-CPU array whose one value is n u64s: each u64 summed over every CPU."""
        raw = self.lookup(struct.pack("<I", 0)) or b""
        words = struct.unpack(f"<{len(raw) // 8}Q", raw)
        return [sum(words[i::n]) for i in range(n)]


class _NoBatch(Exception):
    """The kernel has no batched lookup for this map type."""


# The ring buffer's positions and record headers are shared with the producing CPUs: the
# consumer must read the producer position and each header with acquire ordering (then
# the record behind them is complete) and publish its own position with release ordering
# (then the kernel does not reuse the space before we read it). x86 gives that for plain
# loads and stores; arm64 and others do not, so the accesses go through libatomic's
# __atomic_* (ldar/stlr on arm64). Plain access is the fallback on x86 only.
_ACQUIRE, _RELEASE = 2, 3
try:
    _atomic = C.CDLL("libatomic.so.1")
    _atomic.__atomic_load_8.argtypes = _atomic.__atomic_load_4.argtypes = [C.c_void_p, C.c_int]
    _atomic.__atomic_load_8.restype, _atomic.__atomic_load_4.restype = u64, u32
    _atomic.__atomic_store_8.argtypes = [C.c_void_p, u64, C.c_int]
    _atomic.__atomic_store_8.restype = None

    def load_acquire64(addr):
        return _atomic.__atomic_load_8(addr, _ACQUIRE)

    def load_acquire32(addr):
        return _atomic.__atomic_load_4(addr, _ACQUIRE)

    def store_release64(addr, value):
        _atomic.__atomic_store_8(addr, value, _RELEASE)
except (OSError, AttributeError):
    if platform.machine() not in ("x86_64", "i686", "i386"):
        raise ImportError("libatomic.so.1 is needed for the ring buffer on "
                          + platform.machine()) from None

    def load_acquire64(addr):
        return u64.from_address(addr).value

    def load_acquire32(addr):
        return u32.from_address(addr).value

    def store_release64(addr, value):
        u64.from_address(addr).value = value

_libc.mmap.restype = C.c_void_p
_libc.mmap.argtypes = [C.c_void_p, C.c_size_t, C.c_int, C.c_int, C.c_int, C.c_long]
_libc.munmap.argtypes = [C.c_void_p, C.c_size_t]
_MAP_FAILED = C.c_void_p(-1).value


def _map(fd, length, prot, offset):
    addr = _libc.mmap(None, length, prot, mmap.MAP_SHARED, fd, offset)
    if addr in (None, _MAP_FAILED):
        err = C.get_errno()
        raise OSError(err, os.strerror(err))
    return addr


class MappedArray:
    """The values of a BPF_F_MMAPABLE array, mapped read-write into this process."""

    def __init__(self, fd, length):
        self.length = (length + mmap.PAGESIZE - 1) & ~(mmap.PAGESIZE - 1)
        self.addr = _map(fd, self.length, mmap.PROT_READ | mmap.PROT_WRITE, 0)

    def zero(self):
        C.memset(self.addr, 0, self.length)

    def close(self):
        if self.addr:
            _libc.munmap(self.addr, self.length)
            self.addr = None


class RingBuffer:
    """Consumer side of a BPF_MAP_TYPE_RINGBUF: mmap'd positions and data (RingSet waits)."""

    def __init__(self, fd, size, callback):
        page = mmap.PAGESIZE
        self.fd, self.mask, self.callback, self.page = fd, size - 1, callback, page
        self.cons = _map(fd, page, mmap.PROT_READ | mmap.PROT_WRITE, 0)
        # the data area is mapped twice in a row, so a record that wraps is contiguous
        self.prod_len = page + 2 * size
        try:
            self.prod = _map(fd, self.prod_len, mmap.PROT_READ, page)
        except OSError:
            _libc.munmap(self.cons, page)
            raise

    def consume(self, limit=256):
        """Hand at most `limit` records to the callback, so a flood of events cannot keep
        the caller from its other work (signals, status, expiry)."""
        cons = u64.from_address(self.cons).value  # only we write it
        prod = load_acquire64(self.prod)
        n = 0
        while cons < prod and n < limit:
            off = self.prod + self.page + (cons & self.mask)
            word = load_acquire32(off)
            if word & RINGBUF_BUSY:
                break  # the producer has reserved it and not yet submitted
            size = word & ~(RINGBUF_BUSY | RINGBUF_DISCARD)
            if not word & RINGBUF_DISCARD:
                self.callback(C.string_at(off + RINGBUF_HDR, size))
                n += 1
            cons += (size + RINGBUF_HDR + 7) & ~7
            store_release64(self.cons, cons)
            if cons >= prod:
                prod = load_acquire64(self.prod)
        return n

    def close(self):
        if self.cons:
            _libc.munmap(self.cons, self.page)
            _libc.munmap(self.prod, self.prod_len)
            self.cons = self.prod = None


class RingSet:
    """Ring buffers behind one epoll, each drained in turn on every wakeup (at most
    consume()'s limit from each), so a flood in one never starves the others."""

    def __init__(self, rings):
        self.rings = rings
        self.ep = select.epoll()
        for ring in rings:
            self.ep.register(ring.fd, select.EPOLLIN)

    def poll(self, timeout_ms):
        try:
            self.ep.poll(timeout_ms / 1000.0)
        except InterruptedError:
            pass
        for ring in self.rings:
            ring.consume()

    def close(self):
        self.ep.close()
        for ring in self.rings:
            ring.close()
