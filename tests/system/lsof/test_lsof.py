"""scanwatch lsof against the installed lsof, on processes this module starts.

Two holder processes run in a fresh network namespace (lo only): "swlsof_main" (root)
holds TCP listeners and connections on IPv4, IPv6 and v4-mapped IPv6, sockets in
CLOSE_WAIT and FIN_WAIT2, UDP bound and connected, UNIX sockets (path, abstract,
socketpair, datagram), regular files, a pipe; "swlsof_nobody" holds a few and runs as
nobody. Both tools run inside the namespace, so -i sees only these sockets, and the other
selections are restricted to the holders (-a -p PIDS, their command names, their files)
so that the machine's other processes cannot make the two runs differ.
"""
from __future__ import annotations

import difflib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "lsof"], capture_output=True).returncode != 0,
    reason="lsof is not installed (make setup installs it)")

OURS = [sys.executable, "-c",
        "import sys; from scanwatch.cli import main; sys.argv[0] = 'scanwatch'; main()",
        "lsof"]

HOLDER = r'''
import ctypes, json, os, socket, sys
role, where = sys.argv[1], sys.argv[2]
ctypes.CDLL(None).prctl(15, ("swlsof_" + role).encode(), 0, 0, 0)
os.chdir("/")
keep, info = [], {"pid": os.getpid()}

def listener(family, host, port=0):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(8)
    keep.append(s)
    return s

def pair(lst, host):
    c = socket.create_connection((host, lst.getsockname()[1]))
    a, _ = lst.accept()
    keep.extend((c, a))
    return c, a

def udp(family, host, port=0):
    u = socket.socket(family, socket.SOCK_DGRAM)
    u.bind((host, port))
    keep.append(u)
    return u

if role == "main":
    l4 = listener(socket.AF_INET, "127.0.0.1")
    l6 = listener(socket.AF_INET6, "::1")
    lany = listener(socket.AF_INET6, "::")
    listener(socket.AF_INET, "127.0.0.1", 80)
    pair(l4, "127.0.0.1"); pair(l6, "::1"); pair(lany, "127.0.0.1")
    lw = listener(socket.AF_INET, "127.0.0.1")
    c, a = pair(lw, "127.0.0.1")
    a.close(); keep.remove(a)                  # c: CLOSE_WAIT
    lf = listener(socket.AF_INET, "127.0.0.1")
    c2, a2 = pair(lf, "127.0.0.1")
    c2.shutdown(socket.SHUT_WR)                # c2: FIN_WAIT2, a2: CLOSE_WAIT
    u4 = udp(socket.AF_INET, "127.0.0.1")
    udp(socket.AF_INET6, "::", 53)
    uc = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    uc.connect(u4.getsockname()); keep.append(uc)
    us = socket.socket(socket.AF_UNIX); us.bind(os.path.join(where, "sock")); us.listen(1)
    ab = socket.socket(socket.AF_UNIX); ab.bind("\0swlsof-abstract"); ab.listen(1)
    keep.extend([us, ab, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)])
    keep.extend(socket.socketpair())
    keep.append(open(os.path.join(where, "read.txt")))
    w = open(os.path.join(where, "write.txt"), "w"); w.write("x" * 1234); w.flush()
    keep.append(w)
    keep.extend(os.pipe())
    info.update(port4=l4.getsockname()[1], port6=l6.getsockname()[1],
                portany=lany.getsockname()[1])
else:
    info.update(port=listener(socket.AF_INET, "127.0.0.1").getsockname()[1])
    udp(socket.AF_INET6, "::1")
    keep.extend(socket.socketpair())           # so that -u 65534 -U lists something
    keep.append(open(os.path.join(where, "read.txt")))
    os.setuid(65534)
print(json.dumps(info), flush=True)
sys.stdin.read()
'''


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                          check=check)


@pytest.fixture(scope="module")
def ns():
    name = f"swlsof-{os.getpid()}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        for _ in range(20):
            pids = _ip("netns", "pids", name, check=False).stdout.split()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            time.sleep(0.05)
        _ip("netns", "del", name, check=False)


@pytest.fixture(scope="module")
def files():
    with tempfile.TemporaryDirectory(prefix="swlsof-") as where:
        with open(os.path.join(where, "read.txt"), "w") as f:
            f.write("hello\n")
        os.chmod(where, 0o755)
        os.chmod(os.path.join(where, "read.txt"), 0o644)
        yield where


@pytest.fixture(scope="module")
def holders(ns, files):
    procs, info = [], {}
    try:
        for role in ("main", "nobody"):
            p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", HOLDER,
                                  role, files], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
            procs.append(p)
            line = p.stdout.readline()
            assert line, f"holder {role} did not start"
            info[role] = json.loads(line)
        time.sleep(0.2)  # let FIN_WAIT2 / CLOSE_WAIT settle
        yield info
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(timeout=10)


def run(ns, argv, timeout=60):
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True,
                          text=True, errors="surrogateescape", timeout=timeout, cwd="/")


def both(ns, *args):
    return run(ns, ["lsof", *args]), run(ns, OURS + list(args))


def assert_same(ns, *args, status=None):
    """Byte-equal stdout and equal exit status; a listing that should find something (any
    status but 1) must not be empty, or two empty outputs would pass as equal."""
    theirs, ours = both(ns, *args)
    assert "Traceback" not in ours.stderr, ours.stderr
    if status != 1:
        assert theirs.stdout, f"lsof {' '.join(args)} listed nothing: {theirs.stderr}"
    assert ours.stdout == theirs.stdout, (
        f"scanwatch lsof {' '.join(args)}\n--- lsof\n{theirs.stdout}--- ours\n{ours.stdout}")
    assert ours.returncode == theirs.returncode, (args, theirs.returncode, ours.returncode)
    if status is not None:
        assert ours.returncode == status
    return ours.stdout


def pids(holders):
    return f"{holders['main']['pid']},{holders['nobody']['pid']}"


def test_inet_listing_is_byte_identical(ns, holders):
    out = assert_same(ns, "-n", "-P", "-i", status=0)
    m = holders["main"]
    assert f"127.0.0.1:{m['port4']} (LISTEN)" in out
    assert f"[::1]:{m['port6']} (LISTEN)" in out and f"*:{m['portany']} (LISTEN)" in out
    for state in ("ESTABLISHED", "CLOSE_WAIT", "FIN_WAIT2"):
        assert f"({state})" in out
    assert " UDP *:53 \n" in out


@pytest.mark.parametrize("fork", ["always", "never"])
def test_inet_listing_with_and_without_the_forked_walker(ns, holders, fork, monkeypatch):
    monkeypatch.setenv("SCANWATCH_LSOF_FORK", fork)
    assert_same(ns, "-n", "-P", "-i", status=0)
    assert_same(ns, "-t", "-i", status=0)
    assert_same(ns, "-n", "-P", "-i", f":{holders['main']['port4']}", status=0)


def test_inet_listing_with_names(ns, holders):
    out = assert_same(ns, "-i", status=0)
    assert "localhost:http (LISTEN)" in out and "UDP *:domain" in out


@pytest.mark.parametrize("args", [
    ["-iTCP"], ["-iUDP"], ["-i4"], ["-i6"], ["-i", "4TCP"], ["-i", "TCP:http"],
    ["-i", "@127.0.0.1"], ["-i", "@[::1]"], ["-i", "@localhost"], ["-i", "UDP:domain"],
    ["-i", "6TCP"], ["-i", "4", "-i", "6"], ["-iTCP", "-sTCP:LISTEN"],
    ["-i", "-sTCP:^LISTEN"], ["-T", "-i"], ["-Tqs", "-i"], ["-l", "-i"],
])
def test_inet_selections(ns, holders, args):
    assert_same(ns, "-n", "-P", *args)


def test_port_selection(ns, holders):
    m = holders["main"]
    out = assert_same(ns, "-n", "-P", "-i", f":{m['port4']}", status=0)
    assert len(out.splitlines()) == 4  # header, listener, both ends of the connection
    assert_same(ns, "-n", "-P", "-i", f"TCP@127.0.0.1:{m['port4']},{m['port6']}")
    assert_same(ns, "-n", "-P", "-i", f":{m['port4']}", "-i", f":{m['port6']}")


def test_terse(ns, holders):
    out = assert_same(ns, "-t", "-i", status=0)
    assert sorted(out.split()) == sorted(pids(holders).split(","))
    assert_same(ns, "-t", "-a", "-p", pids(holders), "-U")


def test_process_listing_is_byte_identical(ns, holders):
    out = assert_same(ns, "-p", str(holders["main"]["pid"]), status=0)
    for label in (" cwd ", " rtd ", " txt ", " mem ", " pipe\n", " unix ", "read.txt\n"):
        assert label in out, label
    assert_same(ns, "-n", "-P", "-p", pids(holders))


@pytest.mark.parametrize("args", [
    ["-a", "-u", "nobody", "-i"], ["-a", "-u", "65534", "-U"], ["-a", "-u", "^root", "-i"],
    ["-c", "swlsof_nob"], ["-a", "-c", "swlsof_", "-i"], ["-a", "-c", "/^swlsof_m/", "-i"],
    ["-a", "-c", "^swlsof_main", "-i"], ["-l", "-a", "-c", "swlsof_", "-i"],
])
def test_user_and_command_selections(ns, holders, args):
    assert_same(ns, "-n", "-P", *args)


def test_and_or_and_exclusions(ns, holders):
    main, nobody = holders["main"]["pid"], holders["nobody"]["pid"]
    assert_same(ns, "-n", "-P", "-a", "-p", str(main), "-i", status=0)
    assert_same(ns, "-n", "-P", "-a", "-p", str(nobody), "-iUDP", status=0)
    assert_same(ns, "-n", "-P", "-p", f"^{main}", "-a", "-i", status=0)
    assert_same(ns, "-n", "-P", "-a", "-p", pids(holders), "-d", "0-3,cwd")
    # OR: all of nobody's files, and every internet file (here: only the holders')
    assert_same(ns, "-n", "-P", "-p", str(nobody), "-i", status=0)


def test_unix_sockets(ns, holders, files):
    out = assert_same(ns, "-U", "-a", "-p", pids(holders), status=0)
    assert f"{files}/sock type=STREAM (LISTEN)" in out and "@swlsof-abstract" in out
    assert "type=DGRAM (UNCONNECTED)" in out and "type=STREAM (CONNECTED)" in out
    assert_same(ns, "-T", "-U", "-a", "-c", "swlsof_main")


def test_file_arguments(ns, holders, files):
    out = assert_same(ns, os.path.join(files, "read.txt"), status=0)
    assert len(out.splitlines()) == 3   # header and both holders
    assert_same(ns, os.path.join(files, "write.txt"), os.path.join(files, "sock"))
    assert_same(ns, "+d", files)
    assert_same(ns, "+D", files)


def test_nothing_matched_exits_1(ns, holders):
    assert_same(ns, "-a", "-p", str(holders["main"]["pid"]), "-i", ":1", status=1)
    assert_same(ns, "-n", "-i", "@127.0.0.9", status=1)
    gone = _unused_pid()
    theirs, ours = both(ns, "-p", str(gone))
    assert ours.stdout == theirs.stdout == "" and ours.returncode == theirs.returncode == 1
    assert_same(ns, "-c", "swlsof_none", status=1)


def test_repeat_marks_each_listing(ns, holders):
    args = ["-n", "-P", "-a", "-p", str(holders["main"]["pid"]), "-iTCP"]
    once = run(ns, ["lsof", *args]).stdout
    assert once
    p = subprocess.Popen(["ip", "netns", "exec", ns, *OURS, "-r", "1", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        time.sleep(2.6)
    finally:
        p.terminate()
        out, err = p.communicate(timeout=10)
    assert "Traceback" not in err
    blocks = out.split("=======\n")
    assert len(blocks) >= 3 and blocks[-1] == "", out   # at least two complete listings
    assert all(block == once for block in blocks[:-1]), out
    ours = run(ns, OURS + ["-r1c2", "-t", "-a", "-p", str(holders["main"]["pid"]), "-i"])
    assert ours.stdout == f"{holders['main']['pid']}\n=======\n" * 2


def _unused_pid() -> int:
    pid = 4_000_000
    while os.path.exists(f"/proc/{pid}"):
        pid -= 1
    return pid


def test_processes_exiting_during_the_walk_are_skipped(ns):
    churn = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c",
         "import os, socket, time\n"
         "end = time.time() + 30\n"
         "while time.time() < end:\n"
         "    pid = os.fork()\n"
         "    if pid == 0:\n"
         "        s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); os._exit(0)\n"
         "    os.waitpid(pid, 0)\n"], cwd="/")
    try:
        time.sleep(0.3)
        for args in (["-n", "-P", "-i"], ["-n", "-P"], ["-t", "-i"], ["-U"]):
            for _ in range(3):
                res = run(ns, OURS + args, timeout=120)
                assert "Traceback" not in res.stderr, res.stderr
                assert res.returncode in (0, 1), (args, res.returncode, res.stderr)
    finally:
        churn.kill()
        churn.wait(timeout=10)


def test_a_process_that_dies_mid_listing(monkeypatch):
    """In process, deterministically: the process is killed (and reaped) while its files
    are read, and a process's descriptors vanish between the table read and its walk."""
    from scanwatch.lsof import files as F
    from scanwatch.lsof import select as S
    from scanwatch.lsof.options import parse
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        real_maps = F.proc.maps
        killed = []

        def dying_maps(base):
            if base == f"/proc/{victim.pid}":
                victim.kill()
                victim.wait()
                killed.append(base)
            return real_maps(base)

        monkeypatch.setattr(F.proc, "maps", dying_maps)
        listing = S.Selector(parse(["-p", str(victim.pid)])).run()
        assert killed, "the victim's maps were never read: it did not die mid-listing"
        assert not os.path.exists(f"/proc/{victim.pid}")
        for head, rows in listing.groups:
            assert head[1] == str(victim.pid)
            assert not [r for r in rows if r[0] == "mem"], rows  # its maps went with it
    finally:
        victim.kill()
        victim.wait()
    # Our own listener: listed, then not once its descriptors vanish; the rest still is.
    me = str(os.getpid())
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        port = lsock.getsockname()[1]
        mine = f"127.0.0.1:{port} (LISTEN)"

        def ours(listing):
            return [r for head, rows in listing.groups if head[1] == me
                    for r in rows if r[7] == mine]

        before = S.Selector(parse(["-n", "-P", "-i", "-U"])).run()
        assert ours(before), "our listener is not listed even before it vanishes"
        real_links = S.socket_links
        monkeypatch.setattr(S, "socket_links",
                            lambda pid: None if pid == int(me) else real_links(pid))
        after = S.Selector(parse(["-n", "-P", "-i", "-U"])).run()
        assert not ours(after) and not [h for h, _ in after.groups if h[1] == me]
        assert {h[1] for h, _ in before.groups} - {me} == {h[1] for h, _ in after.groups}


NO_DIAG = ("import sys\n"
           "from scanwatch.lsof import main, sockdiag\n"
           "def unavailable(*args, **kw):\n"
           "    raise sockdiag.DiagUnavailable(97, 'sock_diag disabled for this test')\n"
           "sockdiag.dump = unavailable\n"
           "sys.exit(main.main(sys.argv[1:]))\n")


def test_sock_diag_and_proc_net_agree(ns, holders):
    code = ("from scanwatch.lsof import nettables, sockdiag\n"
            "a, b = sockdiag.dump(), nettables.inet()\n"
            "print(len(a), a == b)\n")
    res = run(ns, [sys.executable, "-c", code])
    count, same = res.stdout.split()
    assert int(count) >= 20 and same == "True", res.stdout + res.stderr


def test_listing_from_proc_net_when_sock_diag_is_unavailable(ns, holders):
    for args in (["-n", "-P", "-i"], ["-i"], ["-n", "-P", "-iTCP", "-sTCP:LISTEN"]):
        theirs = run(ns, ["lsof", *args])
        ours = run(ns, [sys.executable, "-c", NO_DIAG, *args])
        assert theirs.stdout and ours.stdout == theirs.stdout, args
        assert ours.returncode == theirs.returncode, args


# --- -F: field output ---------------------------------------------------------------

FIELD_SETS = ["", "0", "pcfn", "n", "T", "0n", "pgRcuL", "faltGDdsoikn", "Dr", "G", "k",
              "P", "cuLfn0", "K", "l"]


@pytest.mark.parametrize("fields", FIELD_SETS)
def test_field_output_is_byte_identical(ns, holders, fields):
    p = pids(holders)
    for sel in (["-p", p], ["-i"], ["-U"], ["-a", "-p", p, "-d", "0-20"], ["-n", "-P", "-i"],
                ["-l", "-a", "-u", "65534", "-i"], ["-a", "-c", "swlsof_", "-iTCP",
                                                    "-sTCP:LISTEN"]):
        out = assert_same(ns, "-F" + fields, *sel, status=0)
        assert out.startswith("p")


def test_field_output_random_mixes(ns, holders):
    """Random field letters with random selections and option spellings (seed printed)."""
    import random
    seed = int(time.time())
    print(f"FIGURE field-output seed {seed}")
    rnd = random.Random(seed)
    m = holders["main"]
    # At most one -i form per draw: how lsof combines several (-iTCP -i, -i :P -iTCP)
    # with and without -a is not matched yet, in any output form.
    inet = [["-i"], ["-iTCP"], ["-iUDP"], ["-i6"], ["-i", f":{m['port4']}"], ["-T", "-i"],
            ["+c", "0", "-i"], ["-l", "-i"], ["-a", "-c", "swlsof_", "-i"]]
    others = [["-p", pids(holders)], ["-U"], ["-u", "nobody"], ["-d", "0-5,cwd,txt"],
              ["-a", "-p", pids(holders), "-d", "mem"], ["-Tqs", "-U"], ["-c", "swlsof_m"]]
    for _ in range(25):
        letters = "".join(rnd.sample("acdDfGiklKLMnopgPrRsStTu0", rnd.randint(0, 8)))
        sel = rnd.choice(inet) if rnd.random() < 0.8 else []
        sel = sel + [a for part in rnd.sample(others, rnd.randint(0 if sel else 1, 2))
                     for a in part]
        if rnd.random() < 0.5 or {"-d", "-u"} & set(sel):
            # -d and -u reach processes outside the namespace, which come and go
            sel = ["-a", "-p", pids(holders)] + sel
        flags = rnd.sample(["-n", "-P", "-l", "-w"], rnd.randint(0, 2))
        spelled = [f"-F{letters}"] if rnd.random() < 0.5 or not letters else ["-F", letters]
        args = flags + spelled + sel
        theirs, ours = both(ns, *args)
        diff = "".join(list(difflib.unified_diff(theirs.stdout.splitlines(True),
                                                  ours.stdout.splitlines(True)))[:40])
        assert ours.stdout == theirs.stdout and ours.returncode == theirs.returncode, (
            f"seed {seed}: {' '.join(args)}\n{diff}")
        assert "Traceback" not in ours.stderr


def test_field_help_and_mistakes(ns):
    theirs, ours = both(ns, "-F", "?")
    assert theirs.stderr and ours.stderr == theirs.stderr
    assert ours.stdout == theirs.stdout == "" and ours.returncode == theirs.returncode == 0
    for args, message in ((["-Fx"], "unknown field: x"),
                          (["-F", "pn", "-t"], "-F and -t are mutually exclusive")):
        theirs, ours = both(ns, *args)
        assert theirs.returncode == ours.returncode == 1
        assert message in theirs.stderr and ours.stderr.count("\n") == 1
        assert f"error: lsof: {message}" in ours.stderr


def test_field_output_repeat_marker(ns, holders):
    main_pid = str(holders["main"]["pid"])
    for marker in (["m<%Y>"], ["m%H:%M"]):
        r = "1c2" + "".join(marker)
        # %H:%M can roll over between the two runs; a real difference persists
        for _ in range(3):
            theirs, ours = both(ns, "-F", "n", "-r", r, "-a", "-p", main_pid, "-iUDP")
            if ours.stdout == theirs.stdout:
                break
        lines = theirs.stdout.splitlines()
        assert len([ln for ln in lines if ln.startswith("m")]) == 2 and "p" + main_pid in lines
        assert ours.stdout == theirs.stdout and ours.returncode == theirs.returncode
