"""Plain typed records passed between the kernel side, the policy and the outputs."""
import ipaddress
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ScanEvent:
    """One report from the XDP program (see struct sw_event)."""

    addr: ipaddress._BaseAddress
    mono: float                 # CLOCK_MONOTONIC seconds of the packet
    proto: str                  # "TCP" | "UDP"
    port: int
    kind: str                   # PortSentry's name: "SYN/Normal", "FIN", ..., "UDP"
    reason: str                 # "hit" | "trigger" | "sweep"
    tcp_flags: int = 0
    tripwire: int = 0           # tripwire hits so far (this protocol)
    sweep: int = 0              # distinct closed ports in the sweep window
    kernel_blocked: bool = False
    ip_options: bool = False
    fragmented: bool = False    # came as a first fragment (nmap -f, --mtu)
    slow: bool = False          # a sweep of the slow tier: `sweep` counts SLOW_WINDOW
    ports: tuple = ()           # recent distinct closed ports: ((proto, port), ...)
    evidence: str = "stealth"   # "stealth" raw probe, "connect" handshake done, "datagram"
    # issue 13: spoof awareness
    ttl: int = 0                # the probe's TTL / hop limit
    peer_hops: int = 0          # hops learned from a connection with this address + 1; 0 none
    hop_mismatch: bool = False  # the kernel saw peer_hops differ (and did not block)
    strength: str = ""          # evidence.py: proven | decoy | suspect | unverified
    cohort: tuple = ()          # decoy cohort members (addresses as text), the real one first


@dataclass(frozen=True)
class SourceStats:
    """A row of the kernel's per-source table."""

    addr: ipaddress._BaseAddress
    first_mono: float
    last_mono: float
    hits: dict                  # kind name -> tripwire hits
    distinct: int               # distinct closed ports probed
    sweep: int
    last_port: int
    last_kind: str
    flagged: tuple              # protocols whose trigger fired
    ports: tuple = ()


@dataclass(slots=True)  # slots: 100,000 restored blocks take a third less memory
class BlockEntry:
    """A blocked scanner, as status and the state file show it."""

    addr: str
    since: float                # wall clock
    expires: float | None       # wall clock; None = until unblocked
    scan_type: str
    proto: str
    port: int
    mode: str                   # "stcp" | "sudp"
    reason: str                 # "tripwire" | "sweep"
    ports: list = field(default_factory=list)
    host: str = ""
    evidence: str = "stealth"
    level: int = 1              # BLOCK_TCP/UDP: 1 blocked, 0 logged only, 2 KILL_RUN_CMD only
    offences: int = 1           # blocks of this source within REPEAT_WINDOW, this one included
    # Modes reported under this entry: PortSentry's TCP and UDP sentries are separate
    # processes, so a host caught by one is reported and recorded again by the other.
    modes: list = field(default_factory=list)
    strength: str = ""          # issue 13: evidence strength of the report that blocked it

    def row(self):
        """Field values in FIELDS order (the snapshot's compact form)."""
        return [getattr(self, name) for name in BLOCK_FIELDS]

    def record(self):
        return dict(zip(BLOCK_FIELDS, self.row()))

    def seconds(self):
        """The block's length as nft and XDP need it (0 = no timeout)."""
        return 0 if self.expires is None else max(1, round(self.expires - self.since))

    def left(self, now):
        return None if self.expires is None else max(0.0, self.expires - now)


BLOCK_FIELDS = tuple(BlockEntry.__dataclass_fields__)
