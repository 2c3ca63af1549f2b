"""UDP probe payloads from nmap's `nmap-payloads` data file (when installed).

A service that ignores an empty datagram often answers its own protocol (a DNS
query, an SNMP get), so, like nmap, a probe to a known port carries that
protocol's request; other ports get an empty datagram. The first payload listed
for a port is used.
"""

from __future__ import annotations

import re

NMAP_PAYLOADS = "/usr/share/nmap/nmap-payloads"
_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|(#.*)|(\S+)')
_ESCAPES = {"n": b"\n", "r": b"\r", "t": b"\t", "0": b"\0", "\\": b"\\", '"': b'"',
            "a": b"\a", "b": b"\b", "f": b"\f", "v": b"\v"}


def unescape(text: str) -> bytes:
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            n = text[i + 1]
            if n == "x" and i + 3 < len(text) + 1:
                out.append(int(text[i + 2:i + 4], 16))
                i += 4
                continue
            out += _ESCAPES.get(n, n.encode("latin-1"))
            i += 2
            continue
        out += c.encode("latin-1")
        i += 1
    return bytes(out)


def port_list(spec: str) -> list[int]:
    """'80,443,1000-1002' -> [80, 443, 1000, 1001, 1002]; other parts are skipped."""
    out = []
    for part in spec.split(","):
        if "-" in part:
            a, _, b = part.partition("-")
            out.extend(range(int(a), int(b) + 1))
        elif part.isdigit():
            out.append(int(part))
    return out


def parse(text: str) -> dict[int, bytes]:
    """port -> payload (the first listed for each port)."""
    payloads: dict[int, bytes] = {}
    tokens = []
    for line in text.splitlines():
        for m in _TOKEN.finditer(line):
            if m.group(2) is not None:      # a comment: the rest of the line
                break
            tokens.append(("str", m.group(1)) if m.group(1) is not None else ("word", m.group(3)))
    i = 0
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "word" and value == "udp" and i + 1 < len(tokens):
            try:
                ports = port_list(tokens[i + 1][1])
            except ValueError:
                i += 1
                continue
            i += 2
            data = b""
            while i < len(tokens) and tokens[i][0] == "str":
                data += unescape(tokens[i][1])
                i += 1
            for p in ports:
                payloads.setdefault(p, data)
            continue
        i += 1
    return payloads


_CACHE: dict[str, dict[int, bytes]] = {}


def load(path: str = NMAP_PAYLOADS) -> dict[int, bytes]:
    if path not in _CACHE:
        try:
            with open(path, encoding="latin-1") as f:
                _CACHE[path] = parse(f.read())
        except OSError:
            _CACHE[path] = {}
    return _CACHE[path]
