"""hostsdeny.py: only scanwatch's lines change; every other byte survives; edits are atomic."""
import json
import multiprocessing
import os
import re
import stat
import threading

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from scanwatch.sentry.respond import hostsdeny
from scanwatch.errors import StateError
from scanwatch.sentry.respond.hostsdeny import HostsDeny

FOREIGN = [
    b"# /etc/hosts.deny: list of hosts that are _not_ allowed to access the system.\n"
    b"#\nALL: PARANOID\n\nsshd: 203.0.113.0/24 : spawn /bin/echo %a\n",
    b"# CRLF file\r\nALL: 198.51.100.1\r\n",
    b"ALL: 198.51.100.2\nin.telnetd: ALL",  # no final newline
    b"",
    b"\n",
    b"\n\n   \t\n",
    b"# latin-1 \xe9\xff bytes\nALL: 198.51.100.3 \\\n  : DENY\n",
    b"lone\rcarriage return",
]


def _hd(tmp_path, content=None):
    path = tmp_path / "etc" / "hosts.deny"
    path.parent.mkdir(exist_ok=True)
    if content is not None:
        path.write_bytes(content)
    return HostsDeny(str(path), str(tmp_path / "state" / "hostsdeny.json")), path


def _no_temp_files(path):
    return not [n for n in os.listdir(path.parent) if n.startswith(".hosts.deny.")]


@pytest.mark.parametrize("original", FOREIGN)
def test_foreign_bytes_identical_after_add_and_remove(tmp_path, original):
    hd, path = _hd(tmp_path, original)
    assert hd.add("192.0.2.1", "ALL: 192.0.2.1")
    assert hd.add("2001:db8::1", "ALL: [2001:db8::1]")
    data = path.read_bytes()
    assert data.startswith(original)
    assert b"ALL: 192.0.2.1" in data.splitlines() and b"ALL: [2001:db8::1]" in data.splitlines()
    assert hd.remove("192.0.2.1")
    assert hd.remove("2001:db8::1")
    assert path.read_bytes() == original
    assert hd.owned() == {}
    assert _no_temp_files(path)


@pytest.mark.parametrize("order", [["a", "b", "c"], ["c", "b", "a"], ["b", "a", "c"], ["all"]])
def test_removal_order_never_matters(tmp_path, order):
    original = b"# end without newline\nALL: 198.51.100.9"
    hd, path = _hd(tmp_path, original)
    addrs = {"a": "192.0.2.1", "b": "192.0.2.2", "c": "192.0.2.3"}
    for a in addrs.values():
        assert hd.add(a, f"ALL: {a}")
    if order == ["all"]:
        assert sorted(hd.remove_all()) == sorted(addrs.values())
    else:
        for k in order:
            assert hd.remove(addrs[k])
    assert path.read_bytes() == original


def test_lines_added_later_by_the_admin_are_kept(tmp_path):
    hd, path = _hd(tmp_path, b"ALL: 198.51.100.1")
    hd.add("192.0.2.1", "ALL: 192.0.2.1")
    path.write_bytes(path.read_bytes() + b"\nsshd: 198.51.100.7\n")  # an editor appends
    assert hd.remove("192.0.2.1")
    assert path.read_bytes() == b"ALL: 198.51.100.1\nsshd: 198.51.100.7\n"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(original=st.binary(max_size=300), n=st.integers(1, 4))
def test_any_file_survives_add_and_remove_all(tmp_path_factory, original, n):
    tmp = tmp_path_factory.mktemp("hd")
    hd, path = _hd(tmp, original)
    added = [a for a in (f"192.0.2.{i}" for i in range(n)) if hd.add(a, f"ALL: {a}")]
    assert sorted(hd.remove_all()) == sorted(added)
    assert path.read_bytes() == original


def test_no_duplicate_add(tmp_path):
    hd, path = _hd(tmp_path, b"# x\n")
    assert hd.add("192.0.2.1", "ALL: 192.0.2.1")
    assert not hd.add("192.0.2.1", "ALL: 192.0.2.1")
    assert not hd.add("192.0.2.1", "sshd: 192.0.2.1")  # the address already has a line
    assert not hd.add("192.0.2.99", "ALL: 192.0.2.1")  # the exact line is already there
    assert not hd.add("::ffff:192.0.2.1", "ALL: 192.0.2.1")  # same host, mapped form
    assert path.read_bytes() == b"# x\nALL: 192.0.2.1\n"
    assert hd.owned() == {"192.0.2.1": "ALL: 192.0.2.1"}


def test_pre_existing_identical_line_is_never_ours(tmp_path):
    original = b"ALL: 192.0.2.1\r\nALL: 192.0.2.2\n"
    hd, path = _hd(tmp_path, original)
    assert not hd.add("192.0.2.1", "ALL: 192.0.2.1")  # CRLF copy counts as present
    assert not hd.add("192.0.2.2", "ALL: 192.0.2.2")
    assert hd.owned() == {}
    assert not hd.remove("192.0.2.1") and not hd.remove("192.0.2.2")
    assert hd.remove_all() == []
    assert path.read_bytes() == original


def test_line_removed_by_hand_is_forgotten(tmp_path):
    hd, path = _hd(tmp_path, b"")
    hd.add("192.0.2.1", "ALL: 192.0.2.1")
    path.write_bytes(b"# admin cleaned up\n")
    assert not hd.remove("192.0.2.1")
    assert hd.owned() == {}
    assert path.read_bytes() == b"# admin cleaned up\n"
    hd.add("192.0.2.1", "ALL: 192.0.2.1")
    path.write_bytes(b"")
    assert hd.add("192.0.2.1", "ALL: 192.0.2.1")  # stale entry: the block is re-applied
    assert path.read_bytes() == b"ALL: 192.0.2.1\n"


def test_missing_file_is_created_and_state_is_private(tmp_path):
    hd, path = _hd(tmp_path)
    assert not path.exists()
    assert hd.add("2001:db8::5", "ALL: [2001:db8::5]")
    assert path.read_bytes() == b"ALL: [2001:db8::5]\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    state = tmp_path / "state" / "hostsdeny.json"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert json.loads(state.read_text())["lines"] == {"2001:db8::5": "ALL: [2001:db8::5]"}
    assert os.path.exists(str(state) + ".lock")


def test_mode_owner_and_symlink_are_kept(tmp_path):
    real = tmp_path / "real.deny"
    real.write_bytes(b"# mine\n")
    os.chmod(real, 0o640)
    if os.geteuid() == 0:
        os.chown(real, 4321, 8765)
    link = tmp_path / "etc" / "hosts.deny"
    link.parent.mkdir()
    link.symlink_to(real)
    hd = HostsDeny(str(link), str(tmp_path / "state.json"))
    hd.add("192.0.2.1", "ALL: 192.0.2.1")
    assert link.is_symlink() and real.read_bytes() == b"# mine\nALL: 192.0.2.1\n"
    st_ = real.stat()
    assert stat.S_IMODE(st_.st_mode) == 0o640
    if os.geteuid() == 0:
        assert (st_.st_uid, st_.st_gid) == (4321, 8765)
    hd.remove("192.0.2.1")
    assert real.read_bytes() == b"# mine\n" and stat.S_IMODE(real.stat().st_mode) == 0o640


def test_bad_arguments(tmp_path):
    hd, _ = _hd(tmp_path, b"")
    for line in ("ALL: 1.2.3.4\nALL: ALL", "a\rb", "x\0", "", "   "):
        with pytest.raises(ValueError):
            hd.add("192.0.2.1", line)
    for addr in ("host.example", "192.0.2.300"):
        with pytest.raises(ValueError):
            hd.add(addr, "ALL: x")
        with pytest.raises(ValueError):
            hd.remove(addr)


def test_errors_name_the_file(tmp_path):
    hd = HostsDeny(str(tmp_path / "no" / "such" / "hosts.deny"), str(tmp_path / "s.json"))
    with pytest.raises(StateError, match="hosts.deny") as exc:
        hd.add("192.0.2.1", "ALL: 192.0.2.1")
    assert isinstance(exc.value.__cause__, OSError)
    assert hd.owned() == {}  # the failed add left no ownership behind
    hd, path = _hd(tmp_path, b"")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "hostsdeny.json").write_text("{not json")
    with pytest.raises(StateError, match="hostsdeny.json"):
        hd.add("192.0.2.1", "ALL: 192.0.2.1")
    with pytest.raises(StateError, match="hostsdeny.json"):
        hd.owned()
    assert path.read_bytes() == b""


def test_failed_rewrite_leaves_file_and_state_unchanged(tmp_path, monkeypatch):
    hd, path = _hd(tmp_path, b"# keep\n")
    hd.add("192.0.2.1", "ALL: 192.0.2.1")
    real = hostsdeny._atomic_write

    def failing(p, data, like=None, default_mode=0o644):
        if p.endswith("hosts.deny"):
            raise OSError(28, "No space left on device")
        return real(p, data, like, default_mode)
    monkeypatch.setattr(hostsdeny, "_atomic_write", failing)
    with pytest.raises(StateError, match="No space left"):
        hd.add("192.0.2.2", "ALL: 192.0.2.2")
    assert hd.owned() == {"192.0.2.1": "ALL: 192.0.2.1"}
    assert path.read_bytes() == b"# keep\nALL: 192.0.2.1\n"


def test_temp_file_removed_when_rename_fails(tmp_path):
    target = tmp_path / "dir_in_the_way"
    target.mkdir()
    (target / "x").write_text("")
    with pytest.raises(OSError):
        hostsdeny._atomic_write(str(target), b"data")
    assert [n for n in os.listdir(tmp_path) if n.startswith(".")] == []


def _adder(path, state, k):
    hd = HostsDeny(path, state)
    for i in range(5):
        assert hd.add(f"10.{k}.0.{i}", f"ALL: 10.{k}.0.{i}")


def test_concurrent_adders_lose_no_line(tmp_path):
    original = b"# foreign\nALL: PARANOID"
    hd, path = _hd(tmp_path, original)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_adder, args=(str(path), hd.state_path, k)) for k in range(20)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    want = {f"10.{k}.0.{i}" for k in range(20) for i in range(5)}
    lines = path.read_bytes().split(b"\n")
    assert {ln.decode()[5:] for ln in lines if ln.startswith(b"ALL: 10.")} == want
    assert len(lines) == 2 + 100
    assert set(hd.owned()) == want
    assert sorted(hd.remove_all()) == sorted(want)
    assert path.read_bytes() == original


def test_readers_never_see_a_half_written_file(tmp_path):
    original = b"# foreign header\n" + b"".join(b"sshd: 198.51.100.%d\n" % i for i in range(200))
    hd, path = _hd(tmp_path, original)
    ours = re.compile(rb"(ALL: 10\.0\.\d+\.\d+\n)*")
    stop, bad, seen = threading.Event(), [], [0]

    def reader():
        while not stop.is_set():
            data = path.read_bytes()
            seen[0] += 1
            if not data.startswith(original) or not ours.fullmatch(data[len(original):]):
                bad.append(data)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(60):
            hd.add(f"10.0.{i}.1", f"ALL: 10.0.{i}.1")
            if i % 3 == 0:
                hd.remove(f"10.0.{i}.1")
    finally:
        stop.set()
        t.join()
    assert seen[0] > 0 and bad == []
    hd.remove_all()
    assert path.read_bytes() == original


def test_a_prefix_block_line_is_owned_under_its_prefix(tmp_path):
    """issue 14: the line of an IPv6 prefix block is keyed by the prefix, whichever
    spelling names it, and removed by it."""
    hd, path = _hd(tmp_path, b"ALL: PARANOID\n")
    assert hd.add("2001:DB8:1:2::/64", "ALL: [2001:db8:1:2::]/64")
    assert hd.owned() == {"2001:db8:1:2::/64": "ALL: [2001:db8:1:2::]/64"}
    assert not hd.add("2001:db8:1:2::99/64", "ALL: [2001:db8:1:2::]/64")  # same prefix
    assert hd.remove("2001:db8:1:2::/64")
    assert path.read_bytes() == b"ALL: PARANOID\n"
    with pytest.raises(ValueError):
        hd.add("192.0.2.0/24", "ALL: 192.0.2.0/24")
