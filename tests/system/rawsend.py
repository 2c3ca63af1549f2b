"""Send hand-built Ethernet frames (not a test): run inside a namespace as root.

    python rawsend.py IFACE DST_MAC SRC_IP DST_IP --ports 3000-3030 [--flags S] [--vlan 100]

Used where the kernel cannot build the packet for us (an 802.1Q tag without the 8021q
module, odd flag combinations, IP options).
"""
import argparse
import ipaddress
import socket
import struct

FLAGS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20}


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_segment(src, dst, sport, dport, flags, pseudo):
    hdr = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 1024, 0, 0)
    csum = checksum(pseudo + hdr)
    return hdr[:16] + struct.pack("!H", csum) + hdr[18:]


def frame(src_mac, dst_mac, src, dst, sport, dport, flags, vlan=None, ip_options=b"",
          frag=0, overlap=False):
    """One Ethernet frame, or with frag=N (a multiple of 8) the IP fragments of N bytes;
    overlap: fragments of 2N bytes every N bytes, each rewriting half of the one before."""
    src, dst = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if src.version == 4:
        pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, 6, 20)
    else:
        pseudo = src.packed + dst.packed + struct.pack("!IxxxB", 20, 6)
    l4 = tcp_segment(src, dst, sport, dport, flags, pseudo)
    step = frag * 2 if overlap else frag
    pieces = [(0, l4, False)] if not frag else [
        (off, l4[off:off + step], off + step < len(l4)) for off in range(0, len(l4), frag)]
    eth = dst_mac + src_mac
    if vlan is not None:
        eth += struct.pack("!HH", 0x8100, vlan)
    out = []
    for off, data, more in pieces:
        if src.version == 4:
            ihl = 5 + len(ip_options) // 4
            fo = (0x2000 if more else 0) | off // 8
            ip = struct.pack("!BBHHHBBH4s4s", 4 << 4 | ihl, 0, ihl * 4 + len(data), 1, fo, 64, 6,
                             0, src.packed, dst.packed) + ip_options
            ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
            out.append(eth + struct.pack("!H", 0x0800) + ip + data)
        else:
            nh, ext = 6, b""
            if frag:  # fragment header: next header TCP, offset, M flag, identification
                nh, ext = 44, struct.pack("!BBHI", 6, 0, off | (1 if more else 0), 0x5357)
            ip = struct.pack("!IHBB16s16s", 6 << 28, len(ext) + len(data), nh, 64,
                             src.packed, dst.packed)
            out.append(eth + struct.pack("!H", 0x86DD) + ip + ext + data)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("iface")
    ap.add_argument("dst_mac")
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--ports", default="1")
    ap.add_argument("--flags", default="S")
    ap.add_argument("--vlan", type=int)
    ap.add_argument("--ip-options", action="store_true", help="add 4 bytes of NOP options")
    ap.add_argument("--frag", type=int, default=0, help="fragment the TCP header every N bytes")
    ap.add_argument("--reverse", action="store_true", help="send the fragments last first")
    ap.add_argument("--overlap", action="store_true", help="fragments overlap by half")
    a = ap.parse_args()
    lo, _, hi = a.ports.partition("-")
    flags = sum(FLAGS[c] for c in a.flags)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((a.iface, 0))
    src_mac = s.getsockname()[4]
    dst_mac = bytes.fromhex(a.dst_mac.replace(":", ""))
    for port in range(int(lo), int(hi or lo) + 1):
        frames = frame(src_mac, dst_mac, a.src, a.dst, 40000, port, flags, a.vlan,
                       b"\x01\x01\x01\x00" if a.ip_options else b"", a.frag, a.overlap)
        for f in reversed(frames) if a.reverse else frames:
            s.send(f)


if __name__ == "__main__":
    main()
