"""The block table on disk: journal, snapshot, torn lines, symlinks, permissions."""
import json
import os
import stat

import pytest

from scanwatch.errors import StateError  # noqa: F401 (garbled-snapshot test)
from scanwatch.sentry.model import BlockEntry
from scanwatch.sentry.state import BlockStore


def entry(addr, since=1000.0, expires=4600.0, **kw):
    return BlockEntry(addr=addr, since=since, expires=expires, scan_type="SYN/Normal",
                      proto="TCP", port=1, mode="stcp", reason="tripwire", **kw)


def test_journal_replays_adds_and_removes_over_the_snapshot(tmp_path):
    store = BlockStore(tmp_path)
    store.compact([entry("192.0.2.1"), entry("192.0.2.2")])
    store.add(entry("192.0.2.3", offences=3))
    store.remove("192.0.2.1")
    store.close()
    got = {e.addr: e for e in BlockStore(tmp_path).load()}
    assert sorted(got) == ["192.0.2.2", "192.0.2.3"]
    assert got["192.0.2.3"].offences == 3


def test_each_record_is_on_disk_without_close(tmp_path):
    store = BlockStore(tmp_path)
    store.add(entry("2001:db8::7"))
    # A second reader (as after kill -9) sees it: written and fsynced per record.
    assert [e.addr for e in BlockStore(tmp_path).load()] == ["2001:db8::7"]


def test_a_torn_last_line_is_skipped(tmp_path):
    store = BlockStore(tmp_path)
    store.add(entry("192.0.2.1"))
    store.close()
    with open(tmp_path / "blocks.journal", "a") as fh:
        fh.write('{"op": "add", "entry": {"addr": "192.0.2.9", "si')
    assert [e.addr for e in BlockStore(tmp_path).load()] == ["192.0.2.1"]


def test_compact_empties_the_journal_and_files_are_private(tmp_path):
    store = BlockStore(tmp_path)
    store.add(entry("192.0.2.1"))
    store.compact([entry("192.0.2.1")])
    assert (tmp_path / "blocks.journal").read_bytes() == b""
    snap = json.loads((tmp_path / "blocks.json").read_text())
    assert snap["version"] == 2 and snap["rows"][0][snap["fields"].index("addr")] == "192.0.2.1"
    for name in ("blocks.json", "blocks.journal"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600


def test_a_planted_symlink_is_never_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.symlink(victim, tmp_path / "blocks.journal")
    store = BlockStore(tmp_path)
    store.add(entry("192.0.2.1"))  # the planted link is removed, its target untouched
    assert victim.read_text() == "precious\n"
    assert not os.path.islink(tmp_path / "blocks.journal")
    os.symlink(victim, tmp_path / "blocks.json.tmp")
    store.compact([entry("192.0.2.1")])  # planted links are removed, never written through
    assert victim.read_text() == "precious\n"
    assert not any(os.path.islink(tmp_path / n) for n in ("blocks.json", "blocks.journal"))
    store.add(entry("192.0.2.2"))
    assert sorted(e.addr for e in BlockStore(tmp_path).load()) == ["192.0.2.1", "192.0.2.2"]
    # A journal swapped for a link while open: the next record goes to a new file.
    os.unlink(tmp_path / "blocks.journal")
    os.symlink(victim, tmp_path / "blocks.journal")
    store.add(entry("192.0.2.3"))
    assert victim.read_text() == "precious\n"
    assert "192.0.2.3" in (tmp_path / "blocks.journal").read_text()


def test_a_garbled_snapshot_is_one_clear_error(tmp_path):
    (tmp_path / "blocks.json").write_text("not json")
    with pytest.raises(StateError, match="blocks.json: not a scanwatch block table"):
        BlockStore(tmp_path).load()


def test_missing_files_are_an_empty_table(tmp_path):
    assert BlockStore(tmp_path).load() == []


def test_snapshot_round_trip_keeps_every_field(tmp_path):
    e = entry("2001:db8::9", expires=None, ports=["1/tcp", "7/udp"], host="h.example",
              evidence="connect", level=2, offences=4)
    BlockStore(tmp_path).compact([e, entry("192.0.2.1")])
    got = {x.addr: x for x in BlockStore(tmp_path).load()}
    assert got["2001:db8::9"] == e and got["192.0.2.1"] == entry("192.0.2.1")


def test_a_version_1_snapshot_is_still_read(tmp_path):
    """Version 1 was a list of dicts; fields it lacked take their defaults."""
    row = {"addr": "192.0.2.5", "since": 1.0, "expires": 5.0, "scan_type": "FIN",
           "proto": "TCP", "port": 9, "mode": "stcp", "reason": "sweep", "ports": ["9/tcp"]}
    (tmp_path / "blocks.json").write_text(json.dumps([row]))
    [e] = BlockStore(tmp_path).load()
    assert (e.addr, e.scan_type, e.ports, e.level, e.offences) == ("192.0.2.5", "FIN",
                                                                   ["9/tcp"], 1, 1)


def test_fields_are_matched_by_name(tmp_path):
    """A snapshot with its fields in another order and one unknown field (a later
    version's) loads; one lacking a required field is an error naming the block."""
    fields = ["since", "addr", "expires", "scan_type", "proto", "port", "mode", "reason",
              "future"]
    rows = [[1.0, "192.0.2.6", None, "SYN/Normal", "TCP", 1, "stcp", "tripwire", "x"]]
    (tmp_path / "blocks.json").write_text(json.dumps(
        {"format": "scanwatch-blocks", "version": 2, "fields": fields, "rows": rows}))
    [e] = BlockStore(tmp_path).load()
    assert (e.addr, e.since, e.expires, e.ports) == ("192.0.2.6", 1.0, None, [])
    (tmp_path / "blocks.json").write_text(json.dumps(
        {"format": "scanwatch-blocks", "version": 2, "fields": fields[1:], "rows": rows}))
    with pytest.raises(StateError, match=r"blocks.json: block 1: not a block record"):
        BlockStore(tmp_path).load()


@pytest.mark.parametrize("bad, message", [
    ({"addr": "192.0.2.300"}, "bad address"),
    ({"addr": 7}, "bad address"),
    ({"addr": "192.0.2.0/24"}, "bad address"),       # only IPv6 prefixes are blocks
    ({"addr": "2001:db8::1/64"}, "bad address"),     # a prefix as the policy writes it only
    ({"addr": "2001:db8::/64 "}, "bad address"),
    ({"since": "yesterday"}, "bad since/expires"),
    ({"expires": [1]}, "bad since/expires"),
    ({"port": "22"}, "bad port, level or offences"),
    ({"level": 5}, "bad port, level or offences"),
])
def test_a_bad_snapshot_block_is_one_clear_error(tmp_path, bad, message):
    good = entry("192.0.2.1").record()
    (tmp_path / "blocks.json").write_text(json.dumps([good, {**good, **bad}]))
    with pytest.raises(StateError, match=rf"blocks.json: block 2: {message}"):
        BlockStore(tmp_path).load()


def test_other_json_is_not_a_block_table(tmp_path):
    (tmp_path / "blocks.json").write_text('{"rows": []}')
    with pytest.raises(StateError, match="not a scanwatch block table"):
        BlockStore(tmp_path).load()
    (tmp_path / "blocks.json").write_text(
        '{"format": "scanwatch-blocks", "version": 9, "fields": [], "rows": []}')
    with pytest.raises(StateError, match="version 9, this scanwatch reads 2"):
        BlockStore(tmp_path).load()


def test_a_bad_journal_record_is_skipped_and_counted(tmp_path):
    store = BlockStore(tmp_path)
    store.add(entry("192.0.2.1"))
    store.close()
    with open(tmp_path / "blocks.journal", "a") as fh:
        fh.write(json.dumps({"op": "add", "entry": {"addr": "nonsense"}}) + "\n")
        fh.write(json.dumps({"op": "add", "entry": entry("192.0.2.2").record()}) + "\n")
    store = BlockStore(tmp_path)
    assert sorted(e.addr for e in store.load()) == ["192.0.2.1", "192.0.2.2"]
    assert store.skipped == 1


def test_the_journal_is_full_after_journal_max_records_until_compacted(tmp_path, monkeypatch):
    from scanwatch.sentry import state
    monkeypatch.setattr(state, "JOURNAL_MAX", 3)
    store = BlockStore(tmp_path)
    store.add(entry("192.0.2.1"))
    store.add(entry("192.0.2.2"))
    assert not store.journal_full()
    store.remove("192.0.2.1")
    assert store.journal_full()
    kept = BlockStore(tmp_path).load()
    store.compact(kept)
    assert not store.journal_full() and (tmp_path / "blocks.journal").read_bytes() == b""
    assert [e.addr for e in BlockStore(tmp_path).load()] == ["192.0.2.2"]


def test_an_ipv6_prefix_block_is_saved_and_loaded(tmp_path):
    """issue 14: V6_PREFIX blocks are keyed by their prefix."""
    (tmp_path / "blocks.json").write_text(json.dumps([entry("2001:db8:1:2::/64").record()]))
    [e] = BlockStore(tmp_path).load()
    assert e.addr == "2001:db8:1:2::/64"
