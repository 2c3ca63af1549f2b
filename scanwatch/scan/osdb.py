"""nmap-os-db: reference fingerprints and the weighted match nmap documents.

A fingerprint is {test: {attribute: value}} (SEQ, OPS, WIN, ECN, T1-T7, U1, IE).
A reference value is an expression: alternatives `a|b`, hex ranges `a-b`,
`>a`, `<a`, or a literal (the empty string matches the empty string). The
score of a reference is the sum of MatchPoints weights of the attributes both
fingerprints have that match, over the sum of the weights of those compared;
100% is an exact match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

OS_DB = "/usr/share/nmap/nmap-os-db"
TESTS = ["SEQ", "OPS", "WIN", "ECN", "T1", "T2", "T3", "T4", "T5", "T6", "T7", "U1", "IE"]


@dataclass
class Reference:
    name: str
    line: int
    classes: list[dict] = field(default_factory=list)
    tests: dict[str, dict[str, str]] = field(default_factory=dict)


_TEST = re.compile(r"([A-Z][A-Z0-9]*)\(([^()]*)\)")


def parse_tests(text: str) -> dict[str, dict[str, str]]:
    """`T1(R=Y%DF=N)T2(R=N)` (one or more a line, or nmap's wrapped `OS:` lines)
    -> {"T1": {"R": "Y", "DF": "N"}, "T2": {"R": "N"}}."""
    lines = [ln.strip() for ln in text.splitlines()]
    joined = "".join(ln[3:] if ln.startswith("OS:") else ln for ln in lines)
    out: dict[str, dict[str, str]] = {}
    for name, body in _TEST.findall(joined):
        attrs = {}
        for item in body.split("%"):
            if item:
                k, _, v = item.partition("=")
                attrs[k] = v
        out[name] = attrs
    return out


def load(path: str = OS_DB) -> tuple[dict[str, dict[str, int]], list[Reference]]:
    """(MatchPoints, references) of nmap-os-db; ({}, []) when it is not installed."""
    points: dict[str, dict[str, int]] = {}
    refs: list[Reference] = []
    try:
        f = open(path, encoding="utf-8", errors="replace")
    except OSError:
        return points, refs
    cur: Reference | None = None
    in_points = False
    with f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                in_points = False if not line else in_points
                continue
            if line == "MatchPoints":
                in_points, cur = True, None
                continue
            if line.startswith("Fingerprint "):
                in_points = False
                cur = Reference(line[len("Fingerprint "):], n)
                refs.append(cur)
                continue
            if in_points:
                for test, attrs in parse_tests(line).items():
                    points[test] = {k: int(v) for k, v in attrs.items() if v.isdigit()}
                continue
            if cur is None:
                continue
            if line.startswith("Class "):
                parts = [p.strip() for p in line[6:].split("|")]
                parts += [""] * (4 - len(parts))
                cur.classes.append({"vendor": parts[0], "osfamily": parts[1],
                                    "osgen": parts[2], "type": parts[3], "cpe": []})
            elif line.startswith("CPE "):
                cpe = line[4:].split()[0]
                if cur.classes:
                    cur.classes[-1]["cpe"].append(cpe)
            else:
                cur.tests.update(parse_tests(line))
    return points, refs


def _hex(text: str) -> int | None:
    try:
        return int(text, 16)
    except ValueError:
        return None


def value_matches(expr: str, value: str) -> bool:
    """Does an observed value satisfy a reference expression?"""
    for alt in expr.split("|"):
        if alt == value:
            return True
        v = _hex(value)
        if v is None or not alt:
            continue
        if alt[0] in "<>":
            bound = _hex(alt[1:])
            if bound is not None and ((alt[0] == ">" and v > bound) or
                                      (alt[0] == "<" and v < bound)):
                return True
        elif "-" in alt:
            lo, _, hi = alt.partition("-")
            lo_v, hi_v = _hex(lo), _hex(hi)
            if lo_v is not None and hi_v is not None and lo_v <= v <= hi_v:
                return True
    return False


def score(subject: dict[str, dict[str, str]], ref: Reference,
          points: dict[str, dict[str, int]]) -> float:
    got = possible = 0
    for test, attrs in ref.tests.items():
        mine = subject.get(test)
        if mine is None:
            continue
        weights = points.get(test, {})
        for attr, expr in attrs.items():
            if attr not in mine:
                continue
            w = weights.get(attr, 0)
            possible += w
            if value_matches(expr, mine[attr]):
                got += w
    return got / possible if possible else 0.0


def best_matches(subject, points, refs, limit: int = 10) -> list[tuple[float, Reference]]:
    scored = sorted(((score(subject, r, points), r) for r in refs),
                    key=lambda x: (-x[0], x[1].line))
    out, seen = [], set()
    for s, r in scored:
        if r.name in seen:
            continue
        seen.add(r.name)
        out.append((s, r))
        if len(out) >= limit:
            break
    return out
