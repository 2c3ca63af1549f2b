"""The kernel boundary: everything that knows the BPF program's maps and byte layouts.

contract mirrors bpf/scanwatch.h (tests/unit/sentry/test_contract.py checks it against the
compiled header); loader is the only module that imports bcc and runs in a short-lived
child; bpfsys does map operations, ring buffers and XDP attachment with bpf(2) and netlink;
program turns them into model records for the daemon.
"""
