"""From OS-probe answers to an nmap-style fingerprint (SEQ OPS WIN ECN T1-T7 U1 IE),
with the test definitions nmap documents; plus the uptime and IP ID readings.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

from .osprobe import U1_DATA, U1_ID, Answers


@dataclass
class Tcp:
    ttl: int
    df: bool
    ipid: int
    seq: int
    ack: int
    flags: int
    window: int
    urgent: int
    reserved: int
    options: list
    data: bytes


def parse_tcp(pkt: bytes) -> Tcp:
    ihl = (pkt[0] & 15) * 4
    ipid = struct.unpack("!H", pkt[4:6])[0]
    df = bool(struct.unpack("!H", pkt[6:8])[0] & 0x4000)
    t = pkt[ihl:]
    seq, ack = struct.unpack("!II", t[4:12])
    off = (t[12] >> 4) * 4
    window, _, urgent = struct.unpack("!HHH", t[14:20])
    return Tcp(pkt[8], df, ipid, seq, ack, t[13], window, urgent, t[12] & 0x0F,
               _options(t[20:off]), t[off:])


def _options(raw: bytes) -> list:
    out, i = [], 0
    while i < len(raw):
        kind = raw[i]
        if kind == 0:
            out.append(("L",))
            break
        if kind == 1:
            out.append(("N",))
            i += 1
            continue
        if i + 1 >= len(raw) or raw[i + 1] < 2:
            break
        length = raw[i + 1]
        body = raw[i + 2:i + length]
        if kind == 2 and len(body) == 2:
            out.append(("M", struct.unpack("!H", body)[0]))
        elif kind == 3 and len(body) == 1:
            out.append(("W", body[0]))
        elif kind == 4:
            out.append(("S",))
        elif kind == 8 and len(body) == 8:
            out.append(("T",) + struct.unpack("!II", body))
        i += length
    return out


def ops_string(options) -> str:
    s = ""
    for o in options:
        if o[0] == "M":
            s += f"M{o[1]:X}"
        elif o[0] == "W":
            s += f"W{o[1]:X}"
        elif o[0] == "T":
            s += f"T{int(o[1] != 0)}{int(o[2] != 0)}"
        else:
            s += o[0]
    return s


def flags_string(flags: int) -> str:
    return "".join(c for c, bit in (("E", 0x40), ("U", 0x20), ("A", 0x10), ("P", 0x08),
                                    ("R", 0x04), ("S", 0x02), ("F", 0x01)) if flags & bit)


def ttl_guess(ttl: int) -> int:
    for g in (32, 64, 128, 255):
        if ttl <= g:
            return g
    return 255


class Fingerprinter:
    def __init__(self, ans: Answers) -> None:
        self.ans = ans
        self.hops = None            # routers between us and the target (from U1)
        if ans.u1 is not None:
            inner = (ans.u1[0] & 15) * 4 + 8
            self.hops = max(0, 64 - ans.u1[inner + 8])

    @property
    def distance(self) -> int | None:
        return None if self.hops is None else self.hops + 1

    def _ttl(self, ttl: int) -> dict[str, str]:
        out = {"TG": f"{ttl_guess(ttl):X}"}
        if self.hops is not None:
            out["T"] = f"{ttl + self.hops:X}"
        return out

    # -- SEQ ------------------------------------------------------------------------
    def seq(self) -> dict[str, str]:
        ans, out = self.ans, {}
        rows = sorted((i, ans.seq_sent[i], parse_tcp(p)) for i, (_, p) in ans.seq.items()
                      if parse_tcp(p).flags & 0x12 == 0x12)
        if len(rows) >= 2:
            diffs, rates = [], []
            for (_, t0, a), (_, t1, b) in zip(rows, rows[1:]):
                d = (b.seq - a.seq) & 0xFFFFFFFF
                d = min(d, 0x100000000 - d)
                diffs.append(d)
                rates.append(d / max(t1 - t0, 1e-6))
            gcd = 0
            for d in diffs:
                gcd = math.gcd(gcd, d)
            out["GCD"] = f"{gcd:X}"
            avg = sum(rates) / len(rates)
            out["ISR"] = f"{0 if avg < 1 else round(8 * math.log2(avg)):X}"
            if len(rows) >= 4:
                if gcd > 9:
                    rates = [r / gcd for r in rates]
                mean = sum(rates) / len(rates)
                sd = math.sqrt(sum((r - mean) ** 2 for r in rates) / len(rates))
                out["SP"] = f"{0 if sd <= 1 else round(8 * math.log2(sd)):X}"
        ti = ipid_class([r[2].ipid for r in rows], 3)
        if ti:
            out["TI"] = ti
        closed = [parse_tcp(ans.tcp[n]).ipid for n in ("T5", "T6", "T7") if n in ans.tcp]
        ci = ipid_class(closed, 2)
        if ci:
            out["CI"] = ci
        ie = [struct.unpack("!H", ans.ie[n][4:6])[0] for n in (1, 2) if n in ans.ie]
        ii = ipid_class(ie, 2, allow_rd=False)
        if ii:
            out["II"] = ii
        if ti in ("RI", "BI", "I") and ii == ti and rows and ie:
            out["SS"] = "S"
        ts = self.ts_class(rows)
        if ts is not None:
            out["TS"] = ts
        return out

    def ts_class(self, rows) -> str | None:
        vals = []
        for _, t, r in rows:
            tsopt = [o for o in r.options if o[0] == "T"]
            if not tsopt:
                return "U"
            vals.append((t, tsopt[0][1]))
        if len(vals) < 2:
            return None
        if any(v == 0 for _, v in vals):
            return "0"
        rates = [((b - a) & 0xFFFFFFFF) / max(tb - ta, 1e-6)
                 for (ta, a), (tb, b) in zip(vals, vals[1:])]
        avg = sum(rates) / len(rates)
        if avg <= 5.66:
            return "1"
        if 70 <= avg <= 150:
            return "7"
        if 150 < avg <= 350:
            return "8"
        return f"{round(math.log2(avg)):X}"

    def uptime(self) -> tuple[float | None, str | None]:
        """Seconds since boot from the timestamp clock, unless it is randomised."""
        vals = []
        for i, (t, p) in sorted(self.ans.seq.items()):
            ts = [o for o in parse_tcp(p).options if o[0] == "T"]
            if ts:
                vals.append((self.ans.seq_sent[i], ts[0][1]))
        if len(vals) < 3:
            return None, "no TCP timestamps"
        rates = [((b - a) & 0xFFFFFFFF) / max(tb - ta, 1e-6)
                 for (ta, a), (tb, b) in zip(vals, vals[1:])]
        hz = next((h for h in (1000, 250, 100, 10) if all(0.7 * h <= r <= 1.3 * h
                                                          for r in rates)), None)
        if hz is None:
            return None, "TCP timestamps are randomised per connection"
        return vals[-1][1] / hz, None

    # -- the rest -----------------------------------------------------------------------
    def ops_win(self) -> tuple[dict, dict]:
        ops, win = {}, {}
        for i in range(6):
            if i in self.ans.seq:
                r = parse_tcp(self.ans.seq[i][1])
                if r.flags & 0x12 == 0x12:
                    ops[f"O{i + 1}"] = ops_string(r.options)
                    win[f"W{i + 1}"] = f"{r.window:X}"
        return ops, win

    def tcp_test(self, name: str, pkt: bytes | None, with_wo: bool = True) -> dict[str, str]:
        if pkt is None:
            return {"R": "N"}
        r = parse_tcp(pkt)
        probe_seq, probe_ack = self.ans.probes.get(name, (0, 0))
        out = {"R": "Y", "DF": "Y" if r.df else "N", **self._ttl(r.ttl)}
        if with_wo:
            out["W"] = f"{r.window:X}"
        out["S"] = ("Z" if r.seq == 0 else "A" if r.seq == probe_ack else
                    "A+" if r.seq == (probe_ack + 1) & 0xFFFFFFFF else "O")
        out["A"] = ("Z" if r.ack == 0 else "S" if r.ack == probe_seq else
                    "S+" if r.ack == (probe_seq + 1) & 0xFFFFFFFF else "O")
        out["F"] = flags_string(r.flags)
        if with_wo:
            out["O"] = ops_string(r.options)
        out["RD"] = f"{zlib.crc32(r.data):X}" if r.flags & 0x04 and r.data else "0"
        out["Q"] = _quirks(r)
        return out

    def ecn(self) -> dict[str, str]:
        pkt = self.ans.tcp.get("ECN")
        if pkt is None:
            return {"R": "N"}
        r = parse_tcp(pkt)
        ece, cwr = bool(r.flags & 0x40), bool(r.flags & 0x80)
        cc = "Y" if ece and not cwr else "N" if not ece and not cwr else "S" if ece and cwr \
            else "O"
        return {"R": "Y", "DF": "Y" if r.df else "N", **self._ttl(r.ttl),
                "W": f"{r.window:X}", "O": ops_string(r.options), "CC": cc, "Q": _quirks(r)}

    def u1(self) -> dict[str, str]:
        pkt = self.ans.u1
        if pkt is None:
            return {"R": "N"}
        ihl = (pkt[0] & 15) * 4
        inner = ihl + 8
        ihl2 = (pkt[inner] & 15) * 4
        sent = self.ans.u1_sent
        ripl = struct.unpack("!H", pkt[inner + 2:inner + 4])[0]
        rid = struct.unpack("!H", pkt[inner + 4:inner + 6])[0]
        rck = struct.unpack("!H", pkt[inner + 10:inner + 12])[0]
        udp = pkt[inner + ihl2:]
        ruck = struct.unpack("!H", udp[6:8])[0] if len(udp) >= 8 else 0
        data = udp[8:]
        sent_ck = struct.unpack("!H", sent[26:28])[0]
        return {"R": "Y", "DF": "Y" if struct.unpack("!H", pkt[6:8])[0] & 0x4000 else "N",
                **self._ttl(pkt[8]), "IPL": f"{struct.unpack('!H', pkt[2:4])[0]:X}",
                "UN": f"{struct.unpack('!I', pkt[ihl + 4:ihl + 8])[0]:X}",
                "RIPL": "G" if ripl == 20 + 8 + len(U1_DATA) else f"{ripl:X}",
                "RID": "G" if rid == U1_ID else f"{rid:X}",
                "RIPCK": "Z" if rck == 0 else "G" if _ipck_ok(pkt[inner:inner + ihl2]) else "I",
                "RUCK": "G" if ruck == sent_ck else f"{ruck:X}",
                "RUD": "G" if U1_DATA.startswith(data) else "I"}

    def ie(self) -> dict[str, str]:
        if len(self.ans.ie) < 2:
            return {"R": "N"}
        a, b = self.ans.ie[1], self.ans.ie[2]
        dfa, dfb = (bool(struct.unpack("!H", p[6:8])[0] & 0x4000) for p in (a, b))
        dfi = "N" if not dfa and not dfb else "S" if dfa and not dfb else "Y" if dfa and dfb \
            else "O"
        ca, cb = a[(a[0] & 15) * 4 + 1], b[(b[0] & 15) * 4 + 1]
        cd = "Z" if ca == cb == 0 else "S" if (ca, cb) == (9, 0) else \
            f"{ca:X}" if ca == cb else "O"
        return {"R": "Y", "DFI": dfi, **self._ttl(a[8]), "CD": cd}

    def tests(self) -> dict[str, dict[str, str]]:
        ops, win = self.ops_win()
        out = {"SEQ": self.seq(), "OPS": ops, "WIN": win, "ECN": self.ecn(),
               "T1": self.tcp_test("SEQ0", self.ans.seq.get(0, (0, None))[1], with_wo=False)}
        for name in ("T2", "T3", "T4", "T5", "T6", "T7"):
            out[name] = self.tcp_test(name, self.ans.tcp.get(name))
        out["U1"] = self.u1()
        out["IE"] = self.ie()
        return {k: v for k, v in out.items() if v}


def _quirks(r: Tcp) -> str:
    q = ""
    if r.reserved:
        q += "R"
    if r.urgent and not r.flags & 0x20:
        q += "U"
    return q


def _ipck_ok(hdr: bytes) -> bool:
    total = sum(struct.unpack(f"!{len(hdr) // 2}H", hdr))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def ipid_class(ids: list[int], minimum: int, allow_rd: bool = True) -> str | None:
    """nmap's IP ID sequence classes: Z, RD, constant hex, RI, BI, I (else None)."""
    if len(ids) < minimum:
        return None
    if all(i == 0 for i in ids):
        return "Z"
    diffs = [(b - a) & 0xFFFF for a, b in zip(ids, ids[1:])]
    if allow_rd and any(d >= 20000 for d in diffs):
        return "RD"
    if all(i == ids[0] for i in ids):
        return f"{ids[0]:X}"
    if any(d > 1000 and d % 256 for d in diffs):
        return "RI"
    if all(d % 256 == 0 and d <= 5120 for d in diffs):
        return "BI"
    if all(d < 10 for d in diffs):
        return "I"
    return None


IPID_NAMES = {"Z": "All zeros", "RD": "Randomized", "RI": "Random positive increments",
              "BI": "Broken little-endian incremental", "I": "Incremental"}


SEQ_ORDER = ["SP", "GCD", "ISR", "TI", "CI", "II", "SS", "TS"]


def format_fingerprint(tests: dict[str, dict[str, str]], width: int = 71) -> str:
    """nmap's printed form: tests in order, T (not TG) when the distance is known,
    wrapped in `OS:` lines."""
    parts = []
    for name, attrs in tests.items():
        keys = [k for k in SEQ_ORDER if k in attrs] if name == "SEQ" else list(attrs)
        if "T" in attrs:
            keys = [k for k in keys if k != "TG"]
            if "T" in keys:
                keys.remove("T")
                keys.insert(keys.index("DF") + 1 if "DF" in keys else
                            keys.index("DFI") + 1 if "DFI" in keys else 0, "T")
        parts.append(f"{name}({'%'.join(f'{k}={attrs[k]}' for k in keys)})")
    text = "".join(parts)
    return "\n".join("OS:" + text[i:i + width - 3] for i in range(0, len(text), width - 3))
