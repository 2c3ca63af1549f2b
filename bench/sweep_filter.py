"""Why the sweep detector keeps a 1024-bit Bloom filter per source (bpf/sentry.bpf.c).

Replays bloom_add() exactly (same multiplicative hash, same two bit positions) over
random scan orders and reports how often a distinct port is mistaken for one already
seen, i.e. how many extra probes a scanner gets before SWEEP_PORTS is reached.
A false positive can only delay the trigger, never cause one.
Run: .venv/bin/python bench/sweep_filter.py
"""
import ctypes
import random
import sys

sys.path.insert(0, __import__("os").path.dirname(__file__) + "/..")
from scanwatch.sentry.kernel import contract as K  # noqa: E402


def bloom_bits(proto, port, bits):
    h = ((proto << 16 | port) * 2654435761) & 0xFFFFFFFF
    shift = 32 - (bits.bit_length() - 1)
    return h >> shift, (h >> 12) & (bits - 1)


def probes_to_trigger(order, threshold, bits):
    seen, counted = set(), 0
    for n, port in enumerate(order, 1):
        b1, b2 = bloom_bits(0, port, bits)
        if b1 not in seen or b2 not in seen:
            counted += 1
        seen.update((b1, b2))
        if counted >= threshold:
            return n
    return None


def main(trials=20000, threshold=20):
    rnd = random.Random(1)
    print(f"sweep threshold {threshold}, {trials} random scan orders over 1-65535\n")
    print("| filter bits | bytes/source | scans needing extra probes | worst extra |")
    print("|---|---|---|---|")
    for bits in (256, 512, 1024, 2048):
        extra = []
        for _ in range(trials):
            order = rnd.sample(range(1, 65536), threshold * 4)
            extra.append(probes_to_trigger(order, threshold, bits) - threshold)
        late = sum(1 for e in extra if e) / trials
        print(f"| {bits} | {bits // 8} | {late:.2%} | {max(extra)} |")
    src = ctypes.sizeof(K.Source)
    print(f"\nstruct sw_source is {src} bytes (Bloom {K.BLOOM_WORDS * 8} B, recent-port ring "
          f"{K.RECENT * 4} B); at 65,536 sources the LRU map holds about "
          f"{65536 * (src + 16 + 48) / 2**20:.0f} MiB of kernel memory (value + key + ~48 B "
          "hash-element overhead).")
    print("Alternatives for the same job:")
    print(f"- exact 65,536-bit port bitmap per source: 8,192 B/source, "
          f"{65536 * 8192 / 2**30:.1f} GiB at 65,536 sources.")
    print("- an LRU set of (source, port) entries: ~84 B per probed port, so "
          f"{threshold} ports = {threshold * 84} B per scanner, and one source spraying "
          "ports evicts every other source's entries (a flood erases the evidence).")
    print("- a linear array of the last N ports: exact, but O(N) per packet in the verifier-"
          "bounded loop and capped at N = SWEEP_PORTS.")


if __name__ == "__main__":
    main()
