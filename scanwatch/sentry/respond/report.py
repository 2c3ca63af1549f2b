"""Everything after the block itself: names, log lines, PortSentry's actions, records.

The daemon blocks synchronously (nft set, XDP map); this runs on one worker thread, in
order, so a slow resolver or a hung KILL_RUN_CMD delays a log line, never a block.
"""
import collections
import time

from .actions import ActionWorker, action_order, run_steps
from ..ignore import is_prefix, prefix_net
from ..policy import ALERT, ALREADY, BLOCK, QUIET, RUN
from .firewall import PREFIX6, SET4, SET6
from .resolver import Resolver
from . import records

LEVEL = {BLOCK: 1, ALERT: 0, RUN: 2}


def evidence_note(ev):
    """Issue 13: the strength of the report's evidence, for its block line."""
    if not ev.strength:
        return ""
    if ev.cohort:
        return (f" (evidence: {ev.strength}; the real scanner of a decoy cohort of "
                f"{len(ev.cohort)}: {', '.join(ev.cohort[1:])})")
    return f" (evidence: {ev.strength})"


EXCEPT_MAX = 16  # ignored networks named in one prefix line at most


def wrappers_prefix(net, spared):
    """hosts_access(5)'s client list for a prefix block: `[2001:db8::]/64`, followed by
    `EXCEPT [2001:db8::77]` for the ignored addresses inside it (an admin sharing the
    scanner's /64; as they are when the block is made)."""
    text = f"[{net.network_address}]/{net.prefixlen}"
    inside = sorted({n for n in spared if n.version == 6 and n.subnet_of(net)})[:EXCEPT_MAX]
    if inside:
        text += " EXCEPT " + " ".join(
            f"[{n.network_address}]" if n.prefixlen == 128 else
            f"[{n.network_address}]/{n.prefixlen}" for n in inside)
    return text


class Reporter:
    def __init__(self, cfg, log, recorder, hosts_deny, dry_run=False, command_timeout=30.0,
                 spared=lambda: ()):
        self.cfg, self.log, self.recorder, self.hosts_deny = cfg, log, recorder, hosts_deny
        self.spared = spared  # issue 14: the ignore list's networks, excepted from a prefix
        self.dry_run = dry_run
        self.timeout = command_timeout
        self.resolver = Resolver(bool(cfg.RESOLVE_HOST))
        self.worker = ActionWorker(log, timeout=command_timeout)
        self.window, self.in_window, self.suppressed = 0.0, 0, 0
        self.suppressed_total = 0
        self.recent = collections.deque(maxlen=100)  # latest reports, for `scanwatch top`

    def submit(self, ev, decision, extra=None):
        # LOG_RATE: a flood of reports is summarised; blocks (capped by BLOCK_RATE) never are.
        now = time.monotonic()
        if now - self.window > 1.0:
            self.window, self.in_window = now, 0
        self.in_window += 1
        if decision.action != BLOCK and self.in_window > self.cfg.LOG_RATE:
            self.suppressed += 1
            self.suppressed_total += 1
            return
        name = self.resolver.lookup(ev.addr)
        self.worker.submit(lambda: self._report(ev, decision, name, extra or {}))

    def summarise(self):
        """Called once a second: one line for the reports LOG_RATE held back."""
        if self.suppressed:
            n, self.suppressed = self.suppressed, 0
            self.log.info("attackalert: %d more scan reports suppressed (LOG_RATE=%d/s)", n,
                          self.cfg.LOG_RATE)
            self.note({"type": "summary", "suppressed_reports": n})

    def note(self, record):
        """A JSON event that needs no name (expiry, unblock), kept in order with the rest."""
        self.worker.submit(lambda: self.recorder.event(record))

    def close(self):
        self.worker.close()
        self.resolver.close()

    def _report(self, ev, d, name, extra):
        host = name.result()  # the resolver completes it by its own timeout
        addr = str(ev.addr)
        ok = None
        if d.action == QUIET:
            pass
        elif d.action == ALREADY:
            # PortSentry logs every probe by type, then that its host is already blocked.
            fields = records.journal_fields(addr, ev.kind, ev.port, ALREADY)
            self._scan_lines(ev, host, addr, fields)
            self.log.info(records.already_blocked_line(host, addr), extra=fields)
        else:
            ok = self._alert_and_act(ev, d, host, addr)
        if self.cfg.LOG_FORMAT == "portsentry2" and d.action != QUIET:
            self.log.info(records.portsentry2_scan_line(
                addr, host, ev.proto, ev.port, ev.kind, ev.tcp_flags, ev.ip_options,
                ignored=False, triggered=True, noblock=d.action == ALERT,
                blocked=d.action in (BLOCK, ALREADY) and not self.dry_run))
        rec = dict(self.event_json(ev, d), host=host, actions_ok=ok, **extra)
        self.recorder.event(rec)
        if d.action != QUIET:
            self.recent.append({"time": time.time(), "addr": addr, "scan_type": ev.kind,
                                "port": ev.port, "proto": ev.proto, "action": d.action,
                                "reason": ev.reason})

    def _scan_lines(self, ev, host, addr, fields):
        if ev.ip_options:
            self.log.info(records.ip_options_line(host, addr, ev.port, ev.proto), extra=fields)
        if ev.fragmented:
            self.log.info(records.fragment_line(host, addr, ev.port, ev.proto,
                                                tiny=ev.kind == "Tiny Fragment"), extra=fields)
        self.log.info(records.scan_alert_line(ev.kind, host, addr, ev.proto, ev.port,
                                              ev.tcp_flags), extra=fields)

    def _alert_and_act(self, ev, d, host, addr):
        cfg = self.cfg
        fields = records.journal_fields(addr, ev.kind, ev.port,
                                        "dry-run" if self.dry_run else d.action)
        self._scan_lines(ev, host, addr, fields)
        if ev.reason == "sweep":
            ports = ",".join(str(p) for _, p in ev.ports)
            self.log.info("attackalert: Host %s probed %d closed ports within %ss (%s)%s",
                          addr, ev.sweep, cfg.SLOW_WINDOW if ev.slow else cfg.SWEEP_WINDOW,
                          ports, " (slow scan)" if ev.slow else "")
        if self.dry_run:
            self.log.info("attackalert: dry run: Host %s would be blocked", addr)
            return None
        level = LEVEL[d.action]
        if level == 0:
            self.log.info("attackalert: Ignoring %s response per configuration file setting.",
                          ev.proto)
        elif cfg.NFT_BLOCK and level == 1:
            who, nft_set = self._nft_target(ev, d, addr)
            self.log.info("attackalert: Host %s has been blocked via nftables set inet %s %s%s%s",
                          who, cfg.NFT_TABLE, nft_set,
                          f" for {cfg.BLOCK_TIMEOUT}s" if cfg.BLOCK_TIMEOUT else "",
                          evidence_note(ev), extra=fields)
        ok = run_steps(action_order(level, cfg.KILL_RUN_CMD_FIRST), self.log, ev.addr, ev.port,
                       d.mode, hosts_deny=lambda: self._hosts_deny(ev, d),
                       route=cfg.KILL_ROUTE, command=cfg.KILL_RUN_CMD, timeout=self.timeout)
        if ok:
            # PortSentry records the host even when BLOCK_* is 0 or 2 (fail2ban reads it).
            self.recorder.block(d.block.since if d.block else None, host, addr, ev.port,
                                ev.proto, d.mode)
        else:
            self.log.info("attackalert: ERROR: Could not block host %s/%s !!", host, addr)
        return ok

    @staticmethod
    def _nft_target(ev, d, addr):
        """(what, set) the log line names: an IPv6 prefix block (issue 14) is its prefix's."""
        if d.block is not None and is_prefix(d.block.addr):
            return addr, f"{PREFIX6} (its prefix {d.block.addr})"
        return addr, SET4 if ev.addr.version == 4 else SET6

    def _hosts_deny(self, ev, d):
        mode, key = d.mode, str(ev.addr)
        line = self.cfg.KILL_HOSTS_DENY
        if not line:
            return True
        if "$TARGET$" not in line:
            self.log.info("adminalert: No target variable specified in KILL_HOSTS_DENY option. "
                          "Skipping.")
            return True
        if d.block is not None and is_prefix(d.block.addr):
            # a prefix block (issue 14), in hosts_access(5)'s form [2001:db8::]/64
            net = prefix_net(d.block.addr)
            key = str(net)
            line = line.replace("$TARGET$", wrappers_prefix(net, self.spared()))
        elif ev.addr.version == 6:  # hosts_access(5) wants IPv6 addresses in brackets
            line = line.replace("$TARGET$", "[$TARGET$]")
        text = records.expand_macros(line, ev.addr, ev.port, mode)
        if len(self.hosts_deny.owned()) >= self.cfg.HOSTS_DENY_MAX:
            self.log.info("adminalert: hosts.deny holds HOSTS_DENY_MAX=%d scanwatch lines; "
                          "%s is blocked in nftables only", self.cfg.HOSTS_DENY_MAX, key)
            return True
        self.hosts_deny.add(key, text)
        self.log.info(records.blocked_wrappers_line(str(ev.addr), text))
        return True

    def event_json(self, ev, d):
        return {"type": "scan", "action": d.action, "addr": str(ev.addr), "proto": ev.proto,
                "port": ev.port, "scan_type": ev.kind, "reason": ev.reason,
                "tcp_flags": ev.tcp_flags, "tripwire_hits": ev.tripwire, "sweep": ev.sweep,
                "ports": [f"{p}/{proto.lower()}" for proto, p in ev.ports],
                "kernel_blocked": ev.kernel_blocked, "ip_options": ev.ip_options,
                "fragmented": ev.fragmented, "slow_sweep": ev.slow,
                "evidence": ev.evidence, "mode": d.mode, "dry_run": self.dry_run,
                "strength": ev.strength, "cohort": list(ev.cohort), "ttl": ev.ttl}
