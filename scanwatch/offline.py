"""unblock and flush: through the running daemon when there is one, else directly."""
import os

from . import control
from .daemon import load_blocks, save_blocks
from .errors import NotRunning
from .firewall import Firewall
from .hostsdeny import HostsDeny


def _hosts_deny(cfg):
    return HostsDeny(cfg.HOSTS_DENY_FILE, os.path.join(cfg.STATE_DIR, "hostsdeny.json"))


def _blocks_path(cfg):
    return os.path.join(cfg.STATE_DIR, "blocks.json")


def unblock(cfg, addr):
    try:
        return control.request(cfg.RUN_DIR, {"cmd": "unblock", "addr": addr})["was_blocked"]
    except NotRunning:
        pass
    path = _blocks_path(cfg)
    entries = load_blocks(path)
    kept = [e for e in entries if e.addr != addr]
    fw = Firewall(cfg.NFT_TABLE)
    was = fw.exists() and fw.remove(addr)
    was = _hosts_deny(cfg).remove(addr) or was or len(kept) != len(entries)
    if len(kept) != len(entries):
        save_blocks(path, kept)
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
    if os.path.exists(_blocks_path(cfg)):
        save_blocks(_blocks_path(cfg), [])
    return (f"removed table inet {cfg.NFT_TABLE}" if had_table else f"no table inet {cfg.NFT_TABLE}") \
        + f" and {len(lines)} hosts.deny lines"
