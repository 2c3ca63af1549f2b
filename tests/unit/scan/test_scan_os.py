"""OS fingerprint tests and nmap-os-db matching on canned packets and a canned database;
service matching and UDP payloads on canned data files."""
import struct
from pathlib import Path

import pytest

from scanwatch.scan import osdb, service
from scanwatch.scan.osfp import Fingerprinter, format_fingerprint, ipid_class, ops_string
from scanwatch.scan.osprobe import Answers, U1_DATA, ip_header, tcp_packet
from scanwatch.scan.probes import payloads

# what nmap 7.93 printed for a Linux 6.x target over a veth pair
LINUX_FP = """\
OS:SEQ(SP=104%GCD=1%ISR=108%TI=Z%CI=Z%II=I%TS=22)OPS(O1=M5B4ST11NWA%O2=M5B4ST11NWA%O3=M5B4NNT11NWA%O4=M5B4ST11NWA
OS:%O5=M5B4ST11NWA%O6=M5B4ST11)WIN(W1=FE88%W2=FE88%W3=FE88%W4=FE88%W5=FE88%W6=FE88)
OS:ECN(R=Y%DF=Y%T=40%W=FAF0%O=M5B4NNSNWA%CC=Y%Q=)T1(R=Y%DF=Y%T=40%S=O%A=S+%F=AS%RD=0%Q=)T2(R=N)T3(R=N)
OS:T4(R=Y%DF=Y%T=40%W=0%S=A%A=Z%F=R%O=%RD=0%Q=)T5(R=Y%DF=Y%T=40%W=0%S=Z%A=S+%F=AR%O=%RD=0%Q=)
OS:T6(R=Y%DF=Y%T=40%W=0%S=A%A=Z%F=R%O=%RD=0%Q=)T7(R=Y%DF=Y%T=40%W=0%S=Z%A=S+%F=AR%O=%RD=0%Q=)
OS:U1(R=Y%DF=N%T=40%IPL=164%UN=0%RIPL=G%RID=G%RIPCK=G%RUCK=G%RUD=G)IE(R=Y%DFI=N%T=40%CD=S)
"""

CANNED_DB = """\
# canned nmap-os-db
MatchPoints
SEQ(SP=25%GCD=75%ISR=25%TI=100%CI=50%II=100%SS=80%TS=100)
OPS(O1=20%O2=20%O3=20%O4=20%O5=20%O6=20)
WIN(W1=15%W2=15%W3=15%W4=15%W5=15%W6=15)
ECN(R=100%DF=20%T=15%TG=15%W=15%O=15%CC=100%Q=20)
T1(R=100%DF=20%T=15%TG=15%S=20%A=20%F=30%RD=20%Q=20)
T4(R=100%DF=20%T=15%TG=15%W=25%S=20%A=20%F=30%O=10%RD=20%Q=20)
U1(R=50%DF=20%T=15%TG=15%IPL=100%UN=100%RIPL=100%RID=100%RIPCK=100%RUCK=100%RUD=100)
IE(R=50%DFI=40%T=15%TG=15%CD=100)

Fingerprint Linux 5.3 - 5.4
Class Linux | Linux | 5.X | general purpose
CPE cpe:/o:linux:linux_kernel:5 auto
SEQ(SP=FE-108%GCD=1-6%ISR=104-10E%CI=Z%II=I%TS=A)
OPS(O1=M5B4ST11NWA%O2=M5B4ST11NWA%O3=M5B4NNT11NWA%O4=M5B4ST11NWA%O5=M5B4ST11NWA%O6=M5B4ST11)
WIN(W1=FE88%W2=FE88%W3=FE88%W4=FE88%W5=FE88%W6=FE88)
ECN(R=Y%DF=Y|N%T=3B-45%TG=40%W=FAF0%O=M5B4NNSNWA%CC=Y%Q=)
T1(R=Y%DF=Y|N%T=3B-45%TG=40%S=O%A=S+%F=AS%RD=0%Q=)
T4(R=Y%DF=Y%T=3B-45%TG=40%W=0%S=A%A=Z%F=R%O=%RD=0%Q=)
U1(DF=N%T=3B-45%TG=40%IPL=164%UN=0%RIPL=G%RID=G%RIPCK=G%RUCK=G%RUD=G)
IE(DFI=N%T=3B-45%TG=40%CD=S)

Fingerprint Microsoft Windows 10
Class Microsoft | Windows | 10 | general purpose
SEQ(SP=F5-FF%GCD=1-6%ISR=FA-104%TI=I%CI=I%II=I%SS=S%TS=A)
OPS(O1=M5B4NW8ST11%O2=M5B4NW8ST11%O3=M5B4NW8NNT11%O4=M5B4NW8ST11%O5=M5B4NW8ST11%O6=M5B4ST11)
WIN(W1=FFFF%W2=FFFF%W3=FFFF%W4=FFFF%W5=FFFF%W6=FFFF)
ECN(R=Y%DF=Y%T=7B-85%TG=80%W=FFFF%O=M5B4NW8NNS%CC=N%Q=)
T1(R=Y%DF=Y%T=7B-85%TG=80%S=O%A=S+%F=AS%RD=0%Q=)
T4(R=Y%DF=Y%T=7B-85%TG=80%W=0%S=A%A=O%F=R%O=%RD=0%Q=)
U1(R=N)
IE(R=Y%DFI=N%T=7B-85%TG=80%CD=Z)
"""


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "nmap-os-db"
    path.write_text(CANNED_DB)
    return osdb.load(str(path))


def test_expressions():
    m = osdb.value_matches
    assert m("FE-108", "104") and not m("FE-108", "109")
    assert m("Y|N", "N") and m("", "") and not m("", "0")
    assert m(">A", "B") and not m(">A", "A") and m("<10", "F")
    assert m("M5B4ST11NWA|M5B4ST11NW7", "M5B4ST11NW7") and not m("M5B4", "M5B4S")


def test_linux_fingerprint_matches_linux_best(db):
    points, refs = db
    assert points["SEQ"]["GCD"] == 75 and len(refs) == 2
    assert refs[0].classes[0]["cpe"] == ["cpe:/o:linux:linux_kernel:5"]
    subject = osdb.parse_tests(LINUX_FP)
    assert len(subject) == 13 and subject["T2"] == {"R": "N"}
    (s1, r1), (s2, r2) = osdb.best_matches(subject, points, refs)
    assert r1.name == "Linux 5.3 - 5.4" and 0.9 < s1 < 1.0      # TS differs: not exact
    assert r2.name.startswith("Microsoft") and s2 < 0.6 < s1
    real = Path(osdb.OS_DB)
    if real.exists():       # against nmap's own database too
        points, refs = osdb.load(str(real))
        top = osdb.best_matches(subject, points, refs, limit=5)
        assert top[0][1].classes[0]["osfamily"] == "Linux" and top[0][0] >= 0.9


# --- fingerprint tests from canned answers -------------------------------------------

SRC, DST = "198.18.9.2", "198.18.9.1"


def synack(seq, ack, ts, window=0xFE88, ttl=64):
    opts = [("M", 1460), ("S",), ("T",), ("N",), ("W", 10)]
    pkt = bytearray(tcp_packet(DST, SRC, 22, 40000, seq, ack, 0x12, window, opts, True, 0))
    pkt[8] = ttl
    ts_at = pkt.find(bytes([8, 10]))
    pkt[ts_at + 2:ts_at + 10] = struct.pack("!II", ts, 1)
    return bytes(pkt)


def canned_answers(ts_rate=1000, random_ts=False):
    ans = Answers(open_port=22, closed_port=1, closed_udp=30000)
    for i in range(6):
        t = i * 0.1
        ans.seq_sent[i] = t
        probe_seq = 1000 + i
        ans.probes[f"SEQ{i}"] = (probe_seq, 0)
        ts = (0x12345678 * (i + 3)) & 0xFFFFFFFF if random_ts else 5_000_000 + int(t * ts_rate)
        ans.seq[i] = (t, synack(0x10000000 + i * 1_500_000 + i * i * 7, probe_seq + 1, ts))
    ans.probes["T5"] = (77, 0)
    ans.tcp["T5"] = tcp_packet(DST, SRC, 1, 40011, 0, 78, 0x14, 0, [], True, 0)
    udp = struct.pack("!HHHH", 40000, 30000, 308, 0x1234) + U1_DATA
    ans.u1_sent = ip_header(SRC, DST, 17, len(udp), 0x1042, False) + udp
    quoted = ans.u1_sent
    icmp = struct.pack("!BBHI", 3, 3, 0, 0) + quoted
    ans.u1 = ip_header(DST, SRC, 1, len(icmp), 0, False) + icmp
    return ans


def test_fingerprint_tests_from_answers():
    fp = Fingerprinter(canned_answers())
    tests = fp.tests()
    assert fp.distance == 1
    assert tests["OPS"]["O1"] == "M5B4ST11NWA" and tests["WIN"]["W1"] == "FE88"
    assert tests["SEQ"]["TI"] == "Z" and tests["SEQ"]["TS"] == "A"
    assert tests["T1"] == {"R": "Y", "DF": "Y", "TG": "40", "T": "40", "S": "O", "A": "S+",
                           "F": "AS", "RD": "0", "Q": ""}
    assert tests["T5"]["F"] == "AR" and tests["T5"]["A"] == "S+" and tests["T5"]["S"] == "Z"
    assert tests["T2"] == {"R": "N"}
    assert tests["U1"]["IPL"] == "164" and tests["U1"]["RID"] == "G"
    assert tests["U1"]["RIPL"] == "G" and tests["U1"]["RUD"] == "G"
    assert tests["IE"] == {"R": "N"}
    text = format_fingerprint(tests)
    assert all(len(line) <= 71 and line.startswith("OS:") for line in text.splitlines())
    assert "T1(R=Y%DF=Y%T=40%S=O" in text.replace("\nOS:", "")


def test_uptime_only_from_a_steady_clock():
    up, note = Fingerprinter(canned_answers(ts_rate=1000)).uptime()
    assert note is None and 4990 < up < 5010
    up, note = Fingerprinter(canned_answers(random_ts=True)).uptime()
    assert up is None and "randomised per connection" in note


def test_ipid_classes_and_options():
    assert ipid_class([0, 0, 0], 3) == "Z"
    assert ipid_class([1, 2, 3], 3) == "I"
    assert ipid_class([100, 30000, 200], 3) == "RD"
    assert ipid_class([256, 512, 768], 3) == "BI"
    assert ipid_class([5, 5], 2) == "5"
    assert ipid_class([1, 2], 3) is None
    assert ops_string([("M", 1460), ("N",), ("W", 7), ("T", 5, 0), ("S",), ("L",)]) == \
        "M5B4NW7T10SL"


# --- service matching and payloads ---------------------------------------------------

PROBES = r"""
Probe TCP NULL q||
match ssh m|^SSH-([\d.]+)-OpenSSH_([\w._-]+)[ -]{1,2}Debian[ -_]([^\r\n]+)\r?\n| p/OpenSSH/ v/$2 Debian $3/ i/protocol $1/ o/Linux/ cpe:/a:openbsd:openssh:$2/ cpe:/o:linux:linux_kernel/a
softmatch ftp m|^220[ -]|
Probe TCP GetRequest q|GET / HTTP/1.0\r\n\r\n|
match http m|^HTTP/1\.[01] \d\d\d .*\r\nServer: nginx/([\d.]+)\r\n|s p/nginx/ v/$1/
"""


def test_service_matching(tmp_path, monkeypatch):
    path = tmp_path / "probes"
    path.write_text(PROBES)
    monkeypatch.setattr(service, "_DB", None)
    db = service.load_probes(str(path))
    got = service.identify("NULL", b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n", db)
    assert got == ("ssh", {"p": "OpenSSH", "v": "9.2p1 Debian 2+deb12u3", "i": "protocol 2.0",
                           "o": "Linux", "cpe": ["cpe:/o:linux:linux_kernel"]}, False)
    assert service.identify("NULL", b"220 hello\r\n", db)[0:3:2] == ("ftp", True)
    http = b"HTTP/1.1 200 OK\r\nDate: x\r\nServer: nginx/1.22.1\r\n\r\n"
    assert service.identify("GetRequest", http, db)[1]["v"] == "1.22.1"
    assert service.identify("NULL", b"\x00\x01garbage", db) is None
    monkeypatch.setattr(service, "_DB", None)


def test_udp_payloads(tmp_path):
    path = tmp_path / "payloads"
    path.write_text('# comment "x"\nudp 7 "\\x0D\\x0A"  # trailing\n'
                    'udp 53,69,100-101\n  "\\x00\\x01" "ab#c"\n  source 53\n'
                    'udp 53 "second"\n')
    got = payloads.parse(path.read_text())
    assert got[7] == b"\r\n" and got[53] == b"\x00\x01ab#c" and got[101] == got[69]
