"""The block table on disk: journal, snapshot, torn lines, symlinks, permissions."""
import json
import os
import stat

import pytest

from scanwatch.errors import StateError  # noqa: F401 (garbled-snapshot test)
from scanwatch.model import BlockEntry
from scanwatch.state import BlockStore


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
    assert json.loads((tmp_path / "blocks.json").read_text())[0]["addr"] == "192.0.2.1"
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
