"""unblock and flush: through the running daemon when there is one, else directly."""
import os

from . import control
from ...errors import NotRunning
from ..respond.firewall import Firewall
from ..respond.hostsdeny import HostsDeny
from ..ignore import canonical
from ..state import BlockStore


def _hosts_deny(cfg):
    return HostsDeny(cfg.HOSTS_DENY_FILE, os.path.join(cfg.STATE_DIR, "hostsdeny.json"))


def unblock(cfg, addr):
    addr = str(canonical(addr))
    try:
        return control.request(cfg.RUN_DIR, {"cmd": "unblock", "addr": addr})["was_blocked"]
    except NotRunning:
        pass
    store = BlockStore(cfg.STATE_DIR)
    entries = store.load()
    kept = [e for e in entries if e.addr != addr]
    fw = Firewall(cfg.NFT_TABLE)
    was = fw.exists() and fw.remove(addr)
    was = _hosts_deny(cfg).remove(addr) or was or len(kept) != len(entries)
    if len(kept) != len(entries):
        store.compact(kept)
    return was


def flush(cfg):
    try:
        n = len(control.request(cfg.RUN_DIR, {"cmd": "flush"})["flushed"])
        return f"the running daemon lifted {n} blocks"
    except NotRunning:
        pass
    fw = Firewall(cfg.NFT_TABLE)
    had_table = fw.exists()
    fw.delete_table()
    lines = _hosts_deny(cfg).remove_all()
    store = BlockStore(cfg.STATE_DIR)
    if os.path.exists(store.snapshot) or os.path.exists(store.journal):
        store.compact([])
    return (f"removed table inet {cfg.NFT_TABLE}" if had_table else f"no table inet {cfg.NFT_TABLE}") \
        + f" and {len(lines)} hosts.deny lines"
