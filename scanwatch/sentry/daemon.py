"""`scanwatch run`: wire the XDP sentry, the policy and the outputs together."""
import os
import signal
import threading
import time

from ..errors import ConfigError, KernelError, ScanwatchError
from . import config as configmod
from . import ignore, netinfo
from .admin import control, status
from .classic import ClassicListener
from .destinations import Destinations
from .kernel.program import Sentry, mono_now
from .model import ScanEvent
from .policy import ALREADY, BLOCK, IGNORE, BlockBudget, Policy, proven
from .respond import records
from .respond.firewall import Firewall, RulesetMonitor, nft_items
from .respond.hostsdeny import HostsDeny
from .respond.report import Reporter
from .spoofguard import SpoofGuard
from .state import BlockStore, gc_paused, probe_writable

MODES = {"classic": ("tcp", "udp"), "stealth": ("stcp", "sudp"), "advanced": ("atcp", "audp")}
REFRESH_S = 0.5  # own addresses, gateways and our nft table are checked this often
# A blocked source that sends this many more probes is real (EV_PERSIST): nmap sends far
# more; a spoofed flood sends one packet per address.
PERSIST_PROBES = 3


def mode_names(tcp_mode, udp_mode):
    names = {}
    if tcp_mode:
        names["TCP"] = MODES[tcp_mode][0]
    if udp_mode:
        names["UDP"] = MODES[udp_mode][1]
    return names


class Daemon:
    def __init__(self, cfg, *, tcp_mode="stealth", udp_mode="stealth", interfaces=(),
                 logger=None, dry_run=False, overrides=None):
        if not tcp_mode and not udp_mode:
            raise ScanwatchError("no mode to run: give a TCP mode, a UDP mode or both")
        self.cfg = cfg
        self.modes = mode_names(tcp_mode, udp_mode)
        self.kinds = {"TCP": tcp_mode, "UDP": udp_mode}
        self.classic = None
        self.want_ifaces = list(interfaces) or list(cfg.INTERFACES)
        self.interfaces_given = bool(interfaces)
        self.log = logger or records.make_logger()
        self.dry_run = dry_run
        self.lock = threading.RLock()
        self.stopping, self.started = False, None
        self.file_ignores, self.own = [], set()
        self.ignore_list = ignore.IgnoreList()
        self.protected = {}
        self._listening, self._listening_at = {"TCP": set(), "UDP": set()}, -1e9
        self.netwatch = None
        self.sentry = Sentry(cfg.MAX_SOURCES, cfg.MAX_BLOCKED)
        self.firewall = Firewall(cfg.NFT_TABLE)
        self.dest = Destinations(self.sentry, self.firewall, self.log, self.lock)  # issue 14
        self.hosts_deny = HostsDeny(cfg.HOSTS_DENY_FILE, os.path.join(cfg.STATE_DIR, "hostsdeny.json"))
        self.recorder = records.RecordWriter(
            cfg.HISTORY_FILE, {m: cfg.blocked_file(m) for m in self.modes.values()},
            os.path.join(cfg.STATE_DIR, "events.jsonl"), self.log)
        self.overrides = dict(overrides or {})  # command-line settings, kept across SIGHUP
        self.reload_wanted = False
        self.budget = BlockBudget(cfg.BLOCK_RATE)
        self.capped = self.capped_total = 0  # XDP-only blocks: since the last summary, ever
        self.policy = Policy(is_ignored=self.is_ignored, modes=self.modes, v6_prefix=cfg.V6_PREFIX)
        self._apply_policy_settings()
        self.store = BlockStore(cfg.STATE_DIR)
        self.reporter = Reporter(cfg, self.log, self.recorder, self.hosts_deny, dry_run,
                                 command_timeout=cfg.COMMAND_TIMEOUT,
                                 spared=lambda: self.ignore_list.networks())
        self.server = control.Server(cfg.RUN_DIR, lambda req: status.handle_request(self, req),
                                     cfg.CONTROL_GROUP)
        self.metrics, self.ruleset_monitor, self.blocks_total = None, None, 0
        self.guard = SpoofGuard(self)  # issue 13: evidence, challenge, spoof-aware response

    # --- lifecycle ----------------------------------------------------------------------
    def start(self):
        cfg = self.cfg
        # Everything that can fail on user input is checked before anything is changed.
        self.file_ignores = ignore.load(cfg.IGNORE_FILE)
        try:
            ifaces = netinfo.pick_interfaces(self.want_ifaces)
        except ScanwatchError as err:
            where = cfg.origin.get("INTERFACES") if not self.interfaces_given else None
            if where:
                raise ConfigError(f"INTERFACES: {err}", *where) from err
            raise
        for d, mode in ((cfg.STATE_DIR, 0o700), (cfg.RUN_DIR, 0o755),
                        (os.path.dirname(os.path.abspath(cfg.HISTORY_FILE)), 0o755),
                        (os.path.dirname(os.path.abspath(cfg.BLOCKED_FILE)), 0o755)):
            probe_writable(d, mode)
        self.server.start()
        try:
            self.netwatch = netinfo.Protected()
            self.sentry.load()
            self._configure_kernel()
            self.sentry.set_watched(0, self.trap_ports("TCP") if self.raw("TCP") else ())
            self.sentry.set_watched(1, self.trap_ports("UDP") if self.raw("UDP") else ())
            self._refresh()
            if self.nft_on:
                self.firewall.setup()
            self.recorder.start()
            self._restore()
            self.guard.start()
            self.sentry.open_events(self.on_event, self.guard.on_answer)
            for name in ifaces:
                self.sentry.attach(name, cfg.XDP_REPLACE, self.log.warning, cfg.STATE_DIR)
            if "classic" in self.kinds.values():
                self.classic = ClassicListener(
                    cfg.TCP_PORTS if self.kinds["TCP"] == "classic" else (),
                    cfg.UDP_PORTS if self.kinds["UDP"] == "classic" else (),
                    cfg.PORT_BANNER, self.on_classic_hit, self.log)
                self.classic.start()
        except BaseException:
            self.shutdown()
            raise
        if cfg.METRICS_LISTEN:
            from .admin.metrics import MetricsServer
            try:
                self.metrics = MetricsServer(cfg.METRICS_LISTEN,
                                             lambda: status.metrics(self))
                self.metrics.start()
            except BaseException:
                self.shutdown()
                raise
        self.started = time.time()
        if self.nft_on:
            self._watch_ruleset()
        self._write_pid()
        ifs = ", ".join(f"{n} ({m})" for n, m in self.sentry.attached.items())
        self.log.info("adminalert: scanwatch %s is now active on %s%s",
                      "/".join(self.modes.values()), ifs, " (dry run: nothing is blocked)"
                      if self.dry_run else "")

    @property
    def nft_on(self):
        return bool(self.cfg.NFT_BLOCK) and not self.dry_run

    def raw(self, proto):
        """Does the XDP program watch this protocol (stealth and advanced modes)?"""
        return self.kinds[proto] in ("stealth", "advanced")

    def trap_ports(self, proto):
        """The ports a mode treats as traps (those with a socket are skipped per packet)."""
        cfg, kind = self.cfg, self.kinds[proto]
        if kind == "advanced":
            top, excl = ((cfg.ADVANCED_PORTS_TCP, cfg.ADVANCED_EXCLUDE_TCP) if proto == "TCP"
                         else (cfg.ADVANCED_PORTS_UDP, cfg.ADVANCED_EXCLUDE_UDP))
            return tuple(p for p in range(1, top) if p not in set(excl))
        if kind == "classic" and self.classic is not None:
            return tuple(self.classic.bound[proto])
        if kind:
            return cfg.TCP_PORTS if proto == "TCP" else cfg.UDP_PORTS
        return ()

    def _configure_kernel(self):
        cfg = self.cfg
        kblock = bool(cfg.KERNEL_BLOCK) and not self.dry_run
        self.sentry.configure(
            scan_trigger=cfg.SCAN_TRIGGER, sweep_ports=cfg.SWEEP_PORTS,
            sweep_window=cfg.SWEEP_WINDOW, block_timeout=cfg.BLOCK_TIMEOUT,
            watch_tcp=self.raw("TCP"), watch_udp=self.raw("UDP"),
            kblock_tcp=kblock and cfg.BLOCK_TCP == 1, kblock_udp=kblock and cfg.BLOCK_UDP == 1,
            persist_probes=PERSIST_PROBES, slow_ports=cfg.SLOW_PORTS, slow_window=cfg.SLOW_WINDOW,
            hit_rate=cfg.LOG_RATE, v6_prefix=cfg.V6_PREFIX)

    def run(self):
        """Poll the ring buffer until SIGTERM/SIGINT; returns the exit status."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_hup)
        next_refresh = time.monotonic() + REFRESH_S
        while not self.stopping:
            self.sentry.poll(200)
            self.guard.tick()
            if self.reload_wanted:
                self.reload_wanted = False
                self.reload()
            if time.monotonic() >= next_refresh:
                with self.lock:
                    try:
                        self._refresh()
                        self._expire()
                        self._summarise_cap()
                        self.reporter.summarise()
                    except ScanwatchError as err:  # e.g. our table was deleted under us
                        self.log.error("error: %s", err)
                next_refresh = time.monotonic() + REFRESH_S
        self.log.info("adminalert: scanwatch is stopping; XDP programs detached")
        self.shutdown()
        return 0

    def _on_signal(self, signum, _frame):
        self.stopping = True

    def _on_hup(self, _signum, _frame):
        self.reload_wanted = True  # the loop reloads; a signal handler should not

    def reload(self):
        """SIGHUP: re-read the config and ignore file; blocks and programs stay. A broken
        file keeps the old settings (PortSentry itself ignores SIGHUP)."""
        try:
            cfg = configmod.load(self.cfg.path, self.overrides)
            nets = ignore.load(cfg.IGNORE_FILE)
        except ScanwatchError as err:
            self.log.error("adminalert: reload failed, keeping the old configuration: error: %s",
                           err)
            return False
        fixed = [k for k in configmod.RESTART_KEYS if cfg.values[k] != self.cfg.values[k]]
        for key in fixed:
            cfg.values[key] = self.cfg.values[key]
        with self.lock:
            self.cfg = self.reporter.cfg = cfg
            self.file_ignores = nets
            self._push_ignores()
            self._apply_policy_settings()
            self.guard.configure()
            self._configure_kernel()
            self.sentry.set_watched(0, self.trap_ports("TCP") if self.raw("TCP") else ())
            self.sentry.set_watched(1, self.trap_ports("UDP") if self.raw("UDP") else ())
        for w in cfg.warnings:
            self.log.warning("warning: %s", w)
        if fixed:
            self.log.info("adminalert: %s changed; that takes a restart", ", ".join(fixed))
        self.log.info("adminalert: configuration reloaded from %s (%d ignore entries)",
                      cfg.path or "embedded defaults", len(nets))
        return True

    def _apply_policy_settings(self):
        cfg, p = self.cfg, self.policy
        p.scan_trigger = cfg.SCAN_TRIGGER
        p.block_levels = {"TCP": cfg.BLOCK_TCP, "UDP": cfg.BLOCK_UDP}
        p.block_timeout, p.timeout_max = cfg.BLOCK_TIMEOUT, cfg.BLOCK_TIMEOUT_MAX
        p.repeat_window = cfg.REPEAT_WINDOW
        self.budget.per_minute = cfg.BLOCK_RATE

    def shutdown(self):
        if self.ruleset_monitor is not None:
            self.ruleset_monitor.stop()
        if self.metrics is not None:
            self.metrics.stop()
            self.metrics = None
        self.reporter.close()
        if self.netwatch is not None:
            self.netwatch.close()
        self.dest.close()
        if self.started:
            try:
                self.store.compact(self.policy.blocks.values())
            except ScanwatchError as err:
                self.log.error("error: %s", err)
        self.store.close()
        if self.classic is not None:
            self.classic.stop()
        self.server.stop()
        self.sentry.close()
        try:
            os.unlink(os.path.join(self.cfg.RUN_DIR, control.PID_NAME))
        except OSError:
            pass

    def _write_pid(self):
        path = os.path.join(self.cfg.RUN_DIR, control.PID_NAME)
        with open(path, "w") as fh:
            fh.write(f"{os.getpid()}\n")

    # --- keeping the kernel's view current ----------------------------------------------
    def is_ignored(self, addr):
        return addr in self.ignore_list

    def _push_ignores(self):
        # Built once per change (not per event): the policy asks it for every report.
        self.ignore_list = ignore.IgnoreList(self.file_ignores, self.own)
        self.sentry.set_ignored(self.ignore_list.networks())
        self.firewall.spare(self.ignore_list.networks())  # never dropped by a prefix block

    def _refresh(self):
        # Never lock the admin out: own addresses, default gateways, DNS resolvers and
        # the peers of established SSH sessions are ignored whatever the ignore file says.
        self.protected = self.netwatch.refresh(time.monotonic())
        mine = self.dest.refresh(time.monotonic())  # issue 14: only probes of this host count
        own = mine.union(*self.protected.values())
        if own != self.own:
            self.own = own
            self._push_ignores()
        self._check_table()

    def _check_table(self):
        if self.nft_on and self.started and not self.firewall.intact():
            self._restore_table()

    def _watch_ruleset(self):
        """Put our table back the moment anyone removes part of it (nftables' netlink
        notifications); the check every REFRESH_S stays as the fallback."""
        def lost(err):
            self.log.error("error: %s; checking every %.1fs instead", err, REFRESH_S)
        try:
            self.ruleset_monitor = RulesetMonitor()
        except ScanwatchError as err:
            return lost(err)
        self.ruleset_monitor.start(self._on_ruleset_removal, lost)

    def _on_ruleset_removal(self):
        with self.lock:
            try:
                self._check_table()
            except ScanwatchError as err:  # e.g. nft refused: the next check retries
                self.log.error("error: %s", err)

    def listening(self):
        """Ports with a socket, for status only: the XDP program asks the socket table
        itself on every probe (PortSentry's smart verify, exact and instant)."""
        now = time.monotonic()
        if now - self._listening_at > 1.0:
            self._listening, self._listening_at = netinfo.listening_ports(), now
        return self._listening

    # --- events ----------------------------------------------------------------------------
    def on_event(self, ev):
        with self.lock:
            try:
                self.guard.on_event(ev)
            except ScanwatchError as err:  # a failed output must not stop detection
                self.log.error("error: %s", err)

    def on_classic_hit(self, addr, port, proto, count):
        self.on_event(ScanEvent(
            addr=addr, mono=mono_now(), proto=proto, port=port,
            kind="Connect" if proto == "TCP" else "UDP", reason="hit", tripwire=count,
            evidence="connect" if proto == "TCP" else "datagram"))

    def _handle(self, ev):
        d = self.policy.on_event(ev)
        addr = str(ev.addr)
        if d.action == IGNORE:
            if ev.kernel_blocked:  # the ignore list changed under the kernel's feet
                self.sentry.unblock(addr)
            return
        if ev.reason == "persist" and d.action == ALREADY:
            return  # a reported block doing its job; the drop counters show it
        if d.action != ALREADY and d.block is not None and len(d.block.modes) < 2:
            if self._over_rate(d.block, ev):
                return
        extra = {}
        if d.action == BLOCK and not self.dry_run:
            self.blocks_total += 1
            # From the triggering packet to the element in the nft set.
            extra["nft_latency_ms"] = round(self._block(d.block, ev) * 1000, 3)
        elif d.action != ALREADY and ev.kernel_blocked and not (d.block and d.block.level == 1):
            self.sentry.unblock(addr)  # log-only, command-only or dry run: lift the XDP drop
        if d.action == BLOCK and self.dry_run:
            self.policy.unblock(addr)
        elif d.block is not None and d.action != ALREADY:
            try:
                self.store.add(d.block)
            except ScanwatchError as err:  # the block holds; say it will not survive a restart
                self.log.error("error: %s (the block of %s is not saved)", err, addr)
        self.reporter.submit(ev, d, extra)
        if d.action == BLOCK and not self.dry_run:
            # An SSH session opened since the last look: checked off the hot path (a walk
            # of the TCP table costs milliseconds) and lifted at once.
            self.reporter.worker.submit(lambda: self._spare_ssh_peer(ev.addr))

    def _spare_ssh_peer(self, addr):
        if self.netwatch.is_ssh_peer(addr):
            self.unblock(str(addr))
            self.log.info("adminalert: %s has an SSH session to this host: block lifted", addr)

    def _over_rate(self, entry, ev):
        """BLOCK_RATE: past it (a spoofed flood), a source is blocked in XDP only, with
        its expiry, and counted for a summary instead of filling nft, hosts.deny and logs.
        If it then proves real (EV_PERSIST), it is reported in full from a second budget."""
        if self.budget.take(proven(ev)):
            return False
        self.policy.withdraw(entry.addr)
        if entry.level == 1 and not self.dry_run:
            secs = entry.seconds()
            self.sentry.block(entry.addr, mono_now() + secs if secs else None, unreported=True)
        self.capped += 1
        self.capped_total += 1
        return True

    def _summarise_cap(self):
        if self.capped:
            self.log.info("adminalert: block rate cap (BLOCK_RATE=%d/min) reached: %d more "
                          "sources blocked in XDP only, not logged one by one (any that "
                          "keeps probing is reported in full)",
                          self.cfg.BLOCK_RATE, self.capped)
            self.reporter.note({"type": "summary", "capped_blocks": self.capped})
            self.capped = 0

    def _block(self, entry, ev):
        """The fast part of a block: nft set and XDP map. Returns seconds since the packet."""
        secs = entry.seconds()
        if self.nft_on:
            self.firewall.add(entry.addr, secs)
        latency = mono_now() - ev.mono
        # Always (re)write the kernel entry: a repeat offender's block is longer than the
        # kernel's own BLOCK_TIMEOUT.
        try:
            self.sentry.block(entry.addr, mono_now() + secs if secs else None)
        except KernelError as err:  # MAX_BLOCKED reached: say so, report the block anyway
            self.log.error("error: %s", err)
        return latency

    # --- blocks -------------------------------------------------------------------------
    def _expire(self):
        for entry in self.policy.expire():
            self._lift(entry.addr)
            self.store.remove(entry.addr)
            self.log.info("adminalert: block of %s expired", entry.addr)
            self.reporter.note({"type": "expire", "addr": entry.addr})
        if self.store.journal_full():
            self.store.compact(self.policy.blocks.values())

    def _lift(self, addr):
        """Undo a block everywhere; one failing place does not keep the others blocked."""
        self.sentry.unblock(addr)
        if self.classic is not None:
            self.classic.forget(addr)
        steps = [self.hosts_deny.remove] + ([self.firewall.remove] if self.nft_on else [])
        for step in steps:
            try:
                step(addr)
            except ScanwatchError as err:
                self.log.error("error: unblocking %s: %s", addr, err)

    def unblock(self, addr):
        with self.lock:
            addr = self.policy.key_of(addr)  # an address in a blocked prefix names the prefix
            entry = self.policy.unblock(addr)
            self._lift(addr)
            self.store.remove(addr)
        self.log.info("adminalert: %s unblocked by the administrator", addr)
        self.reporter.note({"type": "unblock", "addr": addr})
        return entry is not None

    def flush(self):
        with self.lock:
            addrs = list(self.policy.blocks)
            for addr in addrs:
                self.policy.unblock(addr)
                self._lift(addr)
            self.hosts_deny.remove_all()
            self.store.compact([])
        self.log.info("adminalert: all %d blocks flushed by the administrator", len(addrs))
        return addrs

    def _live_blocks(self):
        now = time.time()
        return [e for e in self.policy.blocks.values()
                if e.level == 1 and (e.expires is None or e.expires > now)]

    def _restore_table(self):
        """Another tool flushed the ruleset or deleted (part of) our table: put it back
        as it was."""
        live = self._live_blocks()
        self.firewall.setup()
        now = time.time()
        self.firewall.add_many(nft_items(live, now))
        self.log.info("adminalert: table inet %s was removed or changed by someone else; "
                      "restored it with %d blocks", self.cfg.NFT_TABLE, len(live))

    def _restore(self):
        """Blocks of earlier runs, re-applied with their remaining time in one nft
        transaction and one batched XDP map update."""
        t0 = time.monotonic()
        with gc_paused():
            live = self._restore_blocks()
        if self.store.skipped:
            self.log.error("error: %s: %d unreadable records skipped", self.store.journal,
                           self.store.skipped)
        if not live:
            return
        self.log.info("adminalert: restored %d blocks from %s in %.2fs", len(live),
                      self.store.snapshot, time.monotonic() - t0)
        if len(live) > self.cfg.MAX_BLOCKED:
            self.log.info("adminalert: %d blocks exceed MAX_BLOCKED=%d: the XDP map holds the "
                          "most recent; nftables enforces all of them", len(live),
                          self.cfg.MAX_BLOCKED)

    def _restore_blocks(self):
        self.policy.restore(self.store.load())
        # Only a journal left by a crash is folded into the snapshot here; expired entries
        # are simply not restored (the snapshot is rewritten at the next clean stop).
        if os.path.exists(self.store.journal) and os.path.getsize(self.store.journal):
            self.store.compact(self.policy.blocks.values())
        live = self._live_blocks()
        if live:
            now, mono = time.time(), mono_now()
            if self.nft_on:
                self.firewall.add_many(nft_items(live, now), fresh=True)
            self.sentry.block_many([(e.addr, mono + e.left(now) if e.expires else None)
                                    for e in live])
        return live
