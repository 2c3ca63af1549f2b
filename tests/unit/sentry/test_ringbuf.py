"""The ring buffer consumer's protocol (issue 14), on a memfd laid out as the kernel lays
out a BPF ring buffer: consumer page, producer page, data. The producer position and each
record header are read with acquire ordering and the consumer position is published
with release ordering (what arm64 needs; x86 does not show the difference)."""
import mmap
import os
import struct

import pytest

from scanwatch.sentry.kernel import bpfsys

PAGE = mmap.PAGESIZE
SIZE = 4 * PAGE


@pytest.fixture
def ring():
    fd = os.memfd_create("ring")
    os.ftruncate(fd, 2 * PAGE + 2 * SIZE)
    mem = mmap.mmap(fd, 2 * PAGE + 2 * SIZE)
    got = []
    rb = bpfsys.RingBuffer(fd, SIZE, got.append)
    yield mem, rb, got
    rb.close()
    mem.close()
    os.close(fd)


def put(mem, pos, payload, flags=0):
    """A record at producer position `pos`; returns the next position."""
    struct.pack_into("<II", mem, 2 * PAGE + pos, len(payload) | flags, 0)
    mem[2 * PAGE + pos + 8:2 * PAGE + pos + 8 + len(payload)] = payload
    return pos + ((len(payload) + 8 + 7) & ~7)


def positions(mem):
    return struct.unpack_from("<Q", mem, 0)[0], struct.unpack_from("<Q", mem, PAGE)[0]


def test_records_busy_discard_and_limit(ring):
    mem, rb, got = ring
    pos = put(mem, 0, b"one")
    pos = put(mem, pos, b"skipped", bpfsys.RINGBUF_DISCARD)
    pos = put(mem, pos, b"three!")
    busy_at = pos
    pos = put(mem, pos, b"not yet", bpfsys.RINGBUF_BUSY)
    struct.pack_into("<Q", mem, PAGE, pos)
    assert rb.consume(limit=1) == 1 and got == [b"one"]
    assert positions(mem)[0] == 16, "the consumer position moves past each record read"
    assert rb.consume() == 1 and got == [b"one", b"three!"]
    assert positions(mem)[0] == busy_at, "a busy record stops the consumer"
    put(mem, busy_at, b"not yet")  # submitted
    assert rb.consume() == 1 and got[-1] == b"not yet" and positions(mem)[0] == pos


def test_shared_positions_use_acquire_and_release(ring, monkeypatch):
    mem, rb, got = ring
    pos = put(mem, 0, b"a")
    pos = put(mem, pos, b"bb")
    struct.pack_into("<Q", mem, PAGE, pos)
    calls = []
    for name in ("load_acquire64", "load_acquire32", "store_release64"):
        real = getattr(bpfsys, name)
        monkeypatch.setattr(bpfsys, name,
                            lambda *a, _n=name, _r=real: calls.append((_n, a[0])) or _r(*a))
    assert rb.consume() == 2
    data = rb.prod + PAGE
    assert calls[0] == ("load_acquire64", rb.prod), "producer position first, acquired"
    assert ("load_acquire32", data) in calls and ("load_acquire32", data + 16) in calls
    assert [c for c in calls if c[0] == "store_release64"] == [("store_release64", rb.cons)] * 2
    assert positions(mem)[0] == pos
