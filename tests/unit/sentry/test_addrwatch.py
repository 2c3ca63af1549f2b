"""addrwatch.address_change (issue 14): which netlink messages wake the own-address re-read."""
import struct

from scanwatch.sentry.addrwatch import RTM_DELADDR, RTM_NEWADDR, address_change


def msg(kind, payload=b"\0" * 8):
    return struct.pack("=IHHII", 16 + len(payload), kind, 0, 0, 0) + payload


def test_new_or_deleted_address_anywhere_in_the_buffer():
    assert address_change(msg(RTM_NEWADDR))
    assert address_change(msg(16) + msg(RTM_DELADDR))  # after an RTM_NEWLINK
    assert address_change(msg(24, b"\0" * 5) + b"\0" * 3 + msg(RTM_NEWADDR))  # 4-byte aligned


def test_other_messages_and_garbage_are_not_a_change():
    assert not address_change(msg(16) + msg(24))
    assert not address_change(b"")
    assert not address_change(struct.pack("=IHHII", 3, 16, 0, 0, 0) + msg(RTM_NEWADDR))
