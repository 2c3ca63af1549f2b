"""Every setting scanwatch knows: name, type, embedded default, meaning.

The PortSentry keys carry PortSentry 1.2's own defaults (its shipped portsentry.conf),
so a missing key behaves as it would under PortSentry. The scanwatch keys follow.
This table is the one place defaults live; config.py parses against it and
`scanwatch config show` prints it.
"""


class Setting:
    """One setting. A plain class, not a dataclass: `scanwatch status` loads this table, and
    dataclasses costs it 6 ms of imports (inspect) at every start."""

    __slots__ = ("name", "kind", "default", "doc")

    def __init__(self, name: str, kind: str, default: str, doc: str):
        self.name = name
        self.kind = kind  # one of: ports, int, block, flag, path, text, list
        self.default = default  # written as it would appear in portsentry.conf
        self.doc = doc

    def __repr__(self):
        return f"Setting({self.name!r}, {self.kind!r}, {self.default!r})"


PORTSENTRY_TCP_PORTS = (
    "1,11,15,79,111,119,143,540,635,1080,1524,2000,5742,6667,12345,12346,20034,"
    "27665,31337,32771,32772,32773,32774,40421,49724,54320"
)
PORTSENTRY_UDP_PORTS = (
    "1,7,9,69,161,162,513,635,640,641,700,37444,34555,31335,32770,32771,32772,"
    "32773,32774,31337,54321"
)

SETTINGS = (
    # --- PortSentry 1.2 keys ---
    Setting("TCP_PORTS", "ports", PORTSENTRY_TCP_PORTS,
            "TCP tripwire ports watched in classic and stealth modes."),
    Setting("UDP_PORTS", "ports", PORTSENTRY_UDP_PORTS,
            "UDP tripwire ports watched in classic and stealth modes."),
    Setting("ADVANCED_PORTS_TCP", "int", "1024",
            "Advanced TCP mode watches every port below this one."),
    Setting("ADVANCED_PORTS_UDP", "int", "1024",
            "Advanced UDP mode watches every port below this one."),
    Setting("ADVANCED_EXCLUDE_TCP", "ports", "113,139",
            "TCP ports advanced mode never treats as traps."),
    Setting("ADVANCED_EXCLUDE_UDP", "ports", "520,138,137,67",
            "UDP ports advanced mode never treats as traps."),
    Setting("IGNORE_FILE", "path", "/etc/scanwatch/scanwatch.ignore",
            "Addresses and CIDRs never counted or blocked (PortSentry syntax). "
            "A missing file is the same as an empty one."),
    Setting("HISTORY_FILE", "path", "/var/lib/scanwatch/scanwatch.history",
            "Every block ever made, appended in PortSentry's history format."),
    Setting("BLOCKED_FILE", "path", "/var/lib/scanwatch/scanwatch.blocked",
            "Blocks of this run; `.<mode>` (stcp, sudp, ...) is appended, truncated at start."),
    Setting("RESOLVE_HOST", "flag", "0",
            "1 = look up host names for log lines (never delays a block)."),
    Setting("BLOCK_TCP", "block", "1",
            "0 = log only, 1 = block and run actions, 2 = run KILL_RUN_CMD only (TCP scans)."),
    Setting("BLOCK_UDP", "block", "1",
            "0 = log only, 1 = block and run actions, 2 = run KILL_RUN_CMD only (UDP scans)."),
    Setting("KILL_ROUTE", "text", "",
            "Command run to drop the route to a scanner ($TARGET$, $PORT$, $MODE$)."),
    Setting("KILL_HOSTS_DENY", "text", "ALL: $TARGET$",
            "Line appended to HOSTS_DENY_FILE for a blocked scanner; empty = none."),
    Setting("KILL_RUN_CMD", "text", "", "Command run for each blocked scanner."),
    Setting("KILL_RUN_CMD_FIRST", "flag", "0", "1 = run KILL_RUN_CMD before blocking."),
    Setting("SCAN_TRIGGER", "int", "0",
            "Tripwire hits a source may make before it is reacted to; 0 = on the first."),
    Setting("PORT_BANNER", "text", "", "Text sent to connections in classic TCP mode."),
    # --- scanwatch keys ---
    Setting("INTERFACES", "list", "",
            "Interfaces to watch, comma separated; empty = every interface that is up, "
            "has an address and is not loopback."),
    Setting("STATE_DIR", "path", "/var/lib/scanwatch",
            "Where blocks and the JSON event log are kept across restarts."),
    Setting("RUN_DIR", "path", "/run/scanwatch",
            "Where the daemon's control socket and pid file live."),
    Setting("HOSTS_DENY_FILE", "path", "/etc/hosts.deny",
            "The TCP wrappers file that KILL_HOSTS_DENY lines go to."),
    Setting("BLOCK_TIMEOUT", "int", "3600",
            "Seconds a block lasts in nftables, XDP and hosts.deny; 0 = until unblocked."),
    Setting("BLOCK_TIMEOUT_MAX", "int", "604800",
            "Longest block for a repeat offender: each new block within REPEAT_WINDOW of "
            "the last one doubles BLOCK_TIMEOUT, up to this."),
    Setting("REPEAT_WINDOW", "int", "86400",
            "Seconds after a block ends during which a new block counts as a repeat."),
    Setting("BLOCK_RATE", "int", "120",
            "Blocks written to nftables, hosts.deny and commands per minute at most; beyond "
            "it (a spoofed flood) sources are blocked in XDP only and summarised. Sources "
            "that prove real (they keep probing, or completed a handshake) have a second "
            "budget of the same size, so a flood cannot hide them."),
    Setting("HOSTS_DENY_MAX", "int", "1000",
            "Most hosts.deny lines scanwatch keeps at once; beyond it, it adds none."),
    Setting("LOG_RATE", "int", "50",
            "Scan reports per second logged in full; the rest are summarised each second."),
    Setting("METRICS_LISTEN", "text", "",
            "HOST:PORT for a Prometheus /metrics endpoint (e.g. 127.0.0.1:9877); empty = off."),
    Setting("CONTROL_GROUP", "text", "scanwatch",
            "Group allowed to ask the daemon for status (control socket 0660); if the group "
            "does not exist, the socket is root-only (0600)."),
    Setting("NFT_TABLE", "text", "scanwatch",
            "Name of the `inet` nftables table scanwatch owns."),
    Setting("COMMAND_TIMEOUT", "int", "30",
            "Seconds KILL_ROUTE or KILL_RUN_CMD may run before its process group is killed."),
    Setting("SWEEP_PORTS", "int", "20",
            "A source probing this many distinct ports that have no listener within "
            "SWEEP_WINDOW seconds is a scanner, whichever ports they are; 0 = off."),
    Setting("SWEEP_WINDOW", "int", "5", "Seconds over which SWEEP_PORTS is counted."),
    Setting("SLOW_PORTS", "int", "25",
            "The sweep's slow tier: this many distinct ports without a listener within "
            "SLOW_WINDOW seconds (nmap -T2, --scan-delay); 0 = off. Needs SWEEP_PORTS."),
    Setting("SLOW_WINDOW", "int", "600", "Seconds over which SLOW_PORTS is counted."),
    Setting("NFT_BLOCK", "flag", "1",
            "1 = block in scanwatch's own nftables sets; KILL_ROUTE comes in addition."),
    Setting("KERNEL_BLOCK", "flag", "1",
            "1 = the XDP program drops a source itself the moment it crosses a trigger, "
            "before userspace hears of it."),
    Setting("MAX_SOURCES", "int", "65536",
            "Capacity of the kernel's per-source LRU table (oldest sources evicted)."),
    Setting("MAX_BLOCKED", "int", "65536", "Capacity of the kernel's blocked-sources map."),
    Setting("LOG_FORMAT", "text", "portsentry",
            "`portsentry` (1.2 lines) or `portsentry2` (also PortSentry 2.0's `Scan from:` line)."),
    # issue 14: living beside other XDP users
    Setting("V6_PREFIX", "int", "64",
            "IPv6 sources are counted and blocked (XDP, nftables set prefix6, hosts.deny "
            "[net]/len) per prefix of this many bits: a scanner rotating addresses inside "
            "its /64 adds up; ignored addresses inside stay open; 128 = per address."),
    Setting("XDP_REPLACE", "flag", "0",
            "0 = refuse to start on an interface whose XDP program another tool attached "
            "(the error names it); 1 = replace it and put it back at exit."),
    # issue 13: spoof-aware response
    Setting("EVIDENCE_RESPONSE", "text", "proven:full,unverified:full,decoy:kernel,suspect:log",
            "Response per evidence strength: full (nft, hosts.deny, KILL_*), kernel (XDP drop "
            "for SPOOF_TIMEOUT only), log (not blocked); `portsentry` = everything full."),
    Setting("SPOOF_TIMEOUT", "int", "60",
            "Seconds a `kernel` response (a possibly spoofed decoy) is dropped in XDP."),
    Setting("CHALLENGE_RATE", "int", "50",
            "Return-routability challenges (one SYN-ACK each) sent a second at most; 0 = none."),
    # --- fleet (issue 15): sentries sharing blocks and sightings through Redis ---
    Setting("FLEET_URL", "text", "",
            "redis://HOST:PORT/DB or rediss:// (TLS), optionally USER@ before the host; "
            "empty = no fleet (a single host needs no Redis). Never put a password here."),
    Setting("FLEET_PASSWORD_FILE", "path", "",
            "File holding the fleet user's Redis password; must be mode 0600 (or stricter)."),
    Setting("FLEET_CA_FILE", "path", "",
            "CA certificate(s) that rediss:// servers are verified against; empty = system CAs."),
    Setting("FLEET_NAME", "text", "scanwatch",
            "Prefix of every fleet key, so several fleets can share one Redis."),
    Setting("FLEET_HOST", "text", "",
            "This member's name in the fleet and in log lines; empty = the host name."),
    Setting("FLEET_SHARE", "list", "proven,unverified",
            "Evidence strengths whose blocks are published; decoy and suspect (possibly "
            "spoofed) never are."),
    Setting("FLEET_SWEEP", "int", "12",
            "A source seen on this many distinct host:port pairs (closed ports, tripwires) "
            "across the fleet within FLEET_WINDOW is blocked everywhere; 0 = off."),
    Setting("FLEET_WINDOW", "int", "600", "Seconds over which FLEET_SWEEP is counted."),
    Setting("FLEET_STREAM_MAX", "int", "10000",
            "Approximate length the shared block stream is trimmed to."),
    Setting("FLEET_QUEUE_MAX", "int", "10000",
            "Publications kept on disk while Redis is unreachable (oldest dropped beyond)."),
)

BY_NAME = {s.name: s for s in SETTINGS}
