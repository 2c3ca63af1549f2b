"""The fleet inside a running daemon: its own threads, a bounded queue between them and
the daemon, nothing on the detection path but a put_nowait.

    publisher   local blocks (and `unblock --fleet`) -> spool on disk -> XADD; sightings
                (a walk of the kernel's source table each SIGHT_S) -> PFADD/PFCOUNT;
                a heartbeat in the members hash
    reader      XREAD BLOCK on the stream from the saved position -> validate -> apply
Redis down or slow stalls only these threads; they reconnect with backoff.
"""
import ipaddress
import json
import os
import queue
import socket
import sys
import threading
import time
import uuid

from ...errors import FleetError, ScanwatchError
from ..kernel.program import mono_now
from ..model import BlockEntry
from ..policy import BlockBudget
from . import member, message
from .spool import Spool
from .sweep import Sweeps

SIGHT_S = 0.25        # sightings are gathered and sent this often, never per packet
HEARTBEAT_S = 5.0
BACKOFF = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


def _version():
    """The installed scanwatch's version, for `status --fleet` (mixed versions in a fleet
    during an upgrade are worth seeing)."""
    from importlib import metadata
    try:
        return metadata.version("scanwatch")
    except metadata.PackageNotFoundError:
        return "unknown"


def evidence_of(entry):
    """The fleet's evidence strength of a local block: the strength the spoof guard gave
    its report (issue 13); a block made without one (EVIDENCE_RESPONSE="portsentry", an
    older state file) is proven if it came from a handshake or a source that kept
    probing, unverified otherwise."""
    strength = getattr(entry, "strength", "")
    if strength in message.EVIDENCE:
        return strength
    return "proven" if getattr(entry, "evidence", "") in ("connect", "persist") else "unverified"


class Fleet:
    def __init__(self, daemon):
        self.d = daemon
        cfg = daemon.cfg
        self.cfg = cfg
        self.keys = message.Keys(cfg.FLEET_NAME)
        self.me = cfg.FLEET_HOST or socket.gethostname().split(".")[0]
        message.check_host(self.me)
        self.share = member.parse_share(cfg.FLEET_SHARE)
        self.spool = Spool(os.path.join(cfg.STATE_DIR, "fleet.queue"), cfg.FLEET_QUEUE_MAX)
        self.pos_path = os.path.join(cfg.STATE_DIR, "fleet.pos")
        self.q = queue.Queue(maxsize=4096)
        self.seen = member.Seen()
        self.limiter = member.LineLimiter(5)
        self.sightings = member.Sightings(self.me)
        self.stop_ev = threading.Event()
        self.threads = []
        self.stats = {"connected": False, "sent": 0, "received": 0, "applied": 0,
                      "refused": 0, "queue_dropped": 0, "lag_ms": None, "error": "connecting",
                      "blocks_made": 0, "sweeps": 0, "capped": 0,
                      "unshareable": 0, "gap": 0}
        # BLOCK_RATE holds for what the fleet asks too, on a budget of its own: a flood of
        # entries (a member gone wrong, stolen keys) cannot fill nft and the logs, nor
        # spend the budget this host's own scanners need
        self.budget = BlockBudget(cfg.BLOCK_RATE)
        self._cap_noted = -1e9
        self.version = _version()
        self.sweeps = Sweeps(self)  # sightings and fleet sweeps, weighed by spoof evidence
        from .link import Link  # the one Redis importer, loaded only with a fleet
        args = dict(password_file=cfg.FLEET_PASSWORD_FILE, ca_file=cfg.FLEET_CA_FILE)
        self.pub_link = Link(cfg.FLEET_URL, **args)
        self.read_link = Link(cfg.FLEET_URL, **args)
        self.admin_link = Link(cfg.FLEET_URL, **args)

    # --- called by the daemon (any thread, never blocks) ----------------------------------
    def offer_block(self, entry):
        """On the detection path: a few attribute reads and a put_nowait; the entry is
        built and checked in the publisher thread."""
        ev = evidence_of(entry)
        if not member.should_share(ev, self.share):
            return
        now = time.time()
        left = entry.left(now)
        if left is None:  # a permanent local block travels as the longest allowed
            left = self.cfg.BLOCK_TIMEOUT_MAX
        self._put(("block", dict(addr=entry.addr, left=max(1, int(left)), evidence=ev,
                                 scan=entry.scan_type, ports=tuple(entry.ports), ts=now)))

    def offer_unblock(self, addr):
        self._put(("unblock", dict(addr=addr, left=0, ts=time.time())))

    def _encode(self, item):
        """A queued offer as a stream entry; None for what the fleet cannot carry (an
        address no member would accept: reserved, multicast...; a forged flood makes them)."""
        kind, kw = item
        try:
            return message.encode(kind, host=self.me, uid=f"{self.me}:{uuid.uuid4().hex[:16]}",
                                  **kw)
        except ValueError:  # message.Refused included
            self.stats["unshareable"] += 1
            return None

    def _put(self, item):
        try:
            self.q.put_nowait(item)
        except queue.Full:
            self.stats["queue_dropped"] += 1

    # --- lifecycle ---------------------------------------------------------------------
    def start(self):
        for fn, name in ((self._publisher, "fleet-pub"), (self._reader, "fleet-read")):
            t = threading.Thread(target=self._guarded, args=(fn, name), name=name, daemon=True)
            t.start()
            self.threads.append(t)

    def _guarded(self, fn, name):
        """A bug in a fleet thread must not end the fleet silently (nor print a traceback
        into the log): one line, a pause, and the thread's loop starts over."""
        while not self.stop_ev.is_set():
            try:
                return fn()
            except Exception as err:  # noqa: BLE001 - the last guard of a thread
                self.d.log.error("error: fleet: %s stopped on %s: %s; restarting", name,
                                 type(err).__name__, err, exc_info="--debug" in sys.argv)
                self.stop_ev.wait(5.0)

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=3)
        self._to_spool(0)  # offered after the publisher's last look: kept for the next run
        for link in (self.pub_link, self.read_link, self.admin_link):
            link.close()

    def _trouble(self, err, attempt, wait=True):
        """One line per outage (not per retry); then wait the backoff step (or return it
        for a caller that has other work while it waits)."""
        line = str(err)
        if self.stats["connected"] or self.stats["error"] != line:
            self.d.log.error("error: fleet: %s; retrying with backoff", line)
        self.stats["connected"], self.stats["error"] = False, line
        step = BACKOFF[min(attempt, len(BACKOFF) - 1)]
        if wait:
            self.stop_ev.wait(step)
        return attempt + 1, step

    def _up(self):
        if not self.stats["connected"]:
            self.d.log.info("adminalert: fleet: connected to %s:%d as %s (%d queued)",
                            self.pub_link.host, self.pub_link.port, self.me, len(self.spool))
        self.stats["connected"], self.stats["error"] = True, ""

    # --- publisher thread --------------------------------------------------------------
    def _to_spool(self, timeout):
        """Move what the daemon offered into the spool (fsync'ed, bounded); waits at most
        `timeout` for the first item."""
        try:
            item = self.q.get(timeout=timeout) if timeout else self.q.get_nowait()
        except queue.Empty:
            return
        try:
            while item is not None:
                fields = self._encode(item)
                if fields is not None:
                    self.spool.push(fields)
                item = self.q.get_nowait() if not self.q.empty() else None
        except ScanwatchError as err:
            self.d.log.error("error: fleet: %s", err)

    def _publisher(self):
        attempt, next_beat, next_sight, retry_at = 0, 0.0, 0.0, 0.0
        while not self.stop_ev.is_set():
            # during a backoff pause offers still reach the disk at once: a daemon stopped
            # in an outage keeps them
            self._to_spool(SIGHT_S)
            now = time.monotonic()
            if now >= next_sight:  # gathered while Redis is away too (kept, merged, bounded)
                self.sweeps.gather()
                # at most ~10 % of a core for the walk, however full the table is
                next_sight = now + max(SIGHT_S, 9 * (time.monotonic() - now))
            if now < retry_at:
                continue
            tried = time.monotonic()
            try:
                self._send_spool()
                self.sweeps.flush()
                if now >= next_beat:
                    self._heartbeat()
                    next_beat = now + HEARTBEAT_S
                # connected only once a command went through (with nothing to send, no
                # command proves anything: Redis may have gone since the last one)
                if self.pub_link.ok_at >= tried:
                    self._up()
                    attempt = 0
            except FleetError as err:
                attempt, step = self._trouble(err, attempt, wait=False)
                retry_at = time.monotonic() + step
                next_beat = 0.0  # the retry sends a heartbeat: a command that proves Redis back

    def _send_spool(self):
        while len(self.spool):
            batch = self.spool.head(100)
            done = 0
            try:
                for fields in batch:
                    self.pub_link.publish(self.keys.stream, fields, self.cfg.FLEET_STREAM_MAX)
                    done += 1
                    self.stats["sent"] += 1
            finally:
                self.spool.drop(done)

    def _heartbeat(self):
        rec = json.dumps({"last_seen": round(time.time(), 3), "version": self.version,
                          "blocks": self.stats["blocks_made"], "sent": self.stats["sent"],
                          "received": self.stats["received"]})
        self.pub_link.heartbeat(self.keys.members, self.me, rec)

    # --- reader thread -----------------------------------------------------------------
    def _load_pos(self):
        try:
            with open(self.pos_path) as fh:
                pos = fh.read().strip()
            if message.re.fullmatch(r"[0-9]{1,20}-[0-9]{1,20}", pos):
                return pos
        except OSError:
            pass
        return None

    def _save_pos(self, pos):
        tmp = self.pos_path + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(pos + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.pos_path)

    def _reader(self):
        pos, attempt, verify = self._load_pos(), 0, True
        while not self.stop_ev.is_set():
            try:
                if pos is None:
                    pos = self.read_link.last_id(self.keys.stream)
                    self._save_pos(pos)
                elif verify and pos != "0-0":  # back from a stop or an outage
                    if not self.read_link.holds(self.keys.stream, pos):
                        self.stats["gap"] += 1
                        self.d.log.warning(
                            "warning: fleet: the stream no longer holds our position %s (away "
                            "longer than FLEET_STREAM_MAX entries last): blocks published "
                            "meanwhile may be missing here", pos)
                verify = False
                batch = self.read_link.read(self.keys.stream, pos, block_ms=1000, count=500)
                for eid, fields in batch:
                    self.on_entry(eid, fields)
                    pos = eid
                if batch:  # one fsync per batch: a replay after a crash applies nothing
                    self._save_pos(pos)  # twice (already blocked, or already lifted)
                attempt = 0
            except FleetError as err:
                attempt, _step = self._trouble(err, attempt)
                verify = True
            except OSError as err:
                self.d.log.error("error: fleet: %s: %s", self.pos_path, err.strerror)
                self.stop_ev.wait(1.0)

    def _refuse(self, eid, why):
        self.stats["refused"] += 1
        if self.limiter.allow(time.time()):
            more = self.limiter.take_suppressed()
            self.d.log.warning("warning: fleet: entry %s refused: %s%s", eid[:40], why,
                               f" (and {more} more refused without a line)" if more else "")

    def _protected(self, addr):
        try:
            return self.d.is_ignored(ipaddress.ip_address(addr))
        except ValueError:
            return True

    def on_entry(self, eid, fields):
        now = time.time()
        try:
            entry = message.decode(fields, now=now,
                                   max_left=self.cfg.BLOCK_TIMEOUT_MAX or 10 * 365 * 86400)
        except message.Refused as err:
            return self._refuse(eid, err)
        if entry.host != self.me:
            self.stats["received"] += 1
            self.stats["lag_ms"] = round(max(0.0, now - entry.ts) * 1000, 1)
        verdict, why, secs = member.judge(
            entry, me=self.me, now=now, is_protected=self._protected,
            is_blocked=lambda a: a in self.d.policy.blocks, seen=self.seen)
        if verdict == member.REFUSE:
            return self._refuse(eid, why)
        if verdict == member.APPLY:
            if entry.kind == "unblock":
                self.d.unblock(entry.addr)
                self.d.log.info("adminalert: %s unblocked via fleet (by %s)", entry.addr,
                                entry.host)
                return
            # this host's EVIDENCE_RESPONSE for that evidence, as for its own reports
            how = member.response(entry.evidence, self.d.guard.responses)
            if how == "full":
                self.apply(entry, secs)
            else:
                self.sweeps.spare(entry.addr, entry.evidence, how, f"reported by {entry.host}")

    def apply(self, entry, secs, local=False):
        """The daemon's block path for a fleet block: policy table, nft set, XDP map,
        state file, one log line, one record."""
        d, now = self.d, time.time()
        secs = max(1, int(round(secs)))
        if not self.budget.take(entry.evidence == "proven"):  # fleet sweeps found here too
            return self._capped(entry, secs)
        be = BlockEntry(addr=entry.addr, since=now, expires=now + secs,
                        scan_type=entry.scan, proto="TCP",
                        port=entry.ports[0] if entry.ports else 0, mode="fleet",
                        reason="sweep" if entry.kind == "sweep" else "fleet",
                        ports=[f"{p}/tcp" for p in entry.ports], host=entry.host,
                        evidence="fleet", strength=entry.evidence, modes=["fleet"])
        with d.lock:
            if entry.addr in d.policy.blocks:
                return
            d.policy.blocks[entry.addr] = be
            try:
                if d.nft_on:
                    d.firewall.add(entry.addr, secs)
                if not d.dry_run:
                    d.sentry.block(entry.addr, mono_now() + secs)
                d.store.add(be)
            except ScanwatchError as err:
                d.log.error("error: fleet block of %s: %s", entry.addr, err)
        self.stats["applied"] += 1
        if local:
            d.log.info("attackalert: Host %s has been blocked via fleet (horizontal scan)",
                       entry.addr)
        else:
            d.log.info("attackalert: Host %s has been blocked via fleet (reported by %s)",
                       entry.addr, entry.host)
        d.reporter.note({"type": "fleet", "addr": entry.addr, "by": entry.host,
                         "kind": entry.kind, "seconds": secs, "evidence": entry.evidence})

    def _capped(self, entry, secs):
        """Over BLOCK_RATE: the source is dropped in XDP only, with its expiry, and
        counted; one line a minute says so."""
        if not self.d.dry_run:
            try:
                self.d.sentry.block(entry.addr, mono_now() + secs, unreported=True)
            except ScanwatchError as err:
                self.d.log.error("error: fleet block of %s: %s", entry.addr, err)
        self.stats["capped"] += 1
        if time.monotonic() - self._cap_noted >= 60:
            self._cap_noted = time.monotonic()
            self.d.log.info("adminalert: fleet: block rate cap (BLOCK_RATE=%d/min) reached: "
                            "further fleet blocks this minute are made in XDP only",
                            self.cfg.BLOCK_RATE)

    # --- for status ---------------------------------------------------------------------
    def status(self):
        return dict(self.stats, queued=len(self.spool) + self.q.qsize(), host=self.me,
                    name=self.keys.name, sightings_queued=self.sightings.queued(),
                    sightings_dropped=self.sightings.dropped, sightings_stale=self.sightings.stale)

    def members(self):
        out = {}
        for host, raw in self.admin_link.members(self.keys.members).items():
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out[host[:64]] = {k: rec.get(k) for k in ("last_seen", "version", "blocks",
                                                          "sent", "received")}
        return out


def attach(daemon):
    """Give a daemon its fleet when FLEET_URL is set, without touching daemon.py's body:
    local full blocks are offered to the fleet as the reporter receives them, and the fleet
    threads start after the daemon and stop before it."""
    if not daemon.cfg.FLEET_URL:
        daemon.fleet = None
        return None
    fleet = Fleet(daemon)
    daemon.fleet = fleet
    submit, start, shutdown = daemon.reporter.submit, daemon.start, daemon.shutdown

    def submit_and_share(ev, d, extra=None):
        submit(ev, d, extra)
        if d.action == "block" and not daemon.dry_run and d.block is not None \
                and d.block.level == 1 and "/" not in d.block.addr:  # full blocks only (not
            # log-only, not KILL_RUN_CMD-only); an IPv6 prefix block is not shared (issue 14)
            fleet.stats["blocks_made"] += 1
            try:
                fleet.offer_block(d.block)
            except Exception as err:  # noqa: BLE001 - the fleet never breaks detection
                daemon.log.error("error: fleet: %s not offered: %s: %s", d.block.addr,
                                 type(err).__name__, err)

    def start_with_fleet():
        start()
        fleet.start()

    def shutdown_with_fleet():
        fleet.stop()
        shutdown()

    daemon.reporter.submit = submit_and_share
    daemon.start, daemon.shutdown = start_with_fleet, shutdown_with_fleet
    return fleet
