"""nmap-style command line: nmap's option spellings, meanings and refusals.

Hand-written rather than argparse because nmap's grammar is not argparse's:
`-sSV` combines scan letters, `-p22` and `-p 22` are the same, `-T4`/`-Tinsane`,
`-PS22,80`, long options accept one dash (`-max-retries 2`) or `=`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

TCP_TYPES = {"S": "syn", "T": "connect", "F": "fin", "X": "xmas", "N": "null", "A": "ack"}
TIMING_NAMES = {"paranoid": 0, "sneaky": 1, "polite": 2, "normal": 3, "aggressive": 4,
                "insane": 5}
RAW_TYPES = {"syn", "fin", "xmas", "null", "ack", "udp"}


class UsageError(ValueError):
    """A command line nmap would refuse; str() is the one-line message."""


@dataclass
class Options:
    argv: list[str] = field(default_factory=list)
    tcp_scan: str | None = None          # syn / connect / fin / xmas / null / ack
    udp: bool = False
    ping_only: bool = False              # -sn / -sP
    list_only: bool = False              # -sL
    no_ping: bool = False                # -Pn
    ping_types: set[str] = field(default_factory=set)  # E P M S A U R
    ping_ports: dict[str, str] = field(default_factory=dict)
    no_resolve: bool = False             # -n (we never reverse-resolve; kept for nmap parity)
    ports: str | None = None
    fast: bool = False
    top_ports: int | None = None
    no_randomize: bool = False
    os_detect: bool = False
    osscan_guess: bool = False
    version: bool = False                # -sV / -sR / -A
    rpc_alias: bool = False              # -sR was used
    timing: int = 3
    max_retries: int | None = None
    min_rtt: float | None = None
    max_rtt: float | None = None
    initial_rtt: float | None = None
    scan_delay: float | None = None
    host_timeout: float | None = None
    max_rate: float | None = None
    verbose: int = 0
    debug: int = 0
    reason: bool = False
    open_only: bool = False
    out_normal: str | None = None
    out_grep: str | None = None
    out_xml: str | None = None
    json: bool = False
    ipv6: bool = False
    interface: str | None = None
    privileged: bool | None = None       # --privileged / --unprivileged
    arp_ping: bool = True                # --disable-arp-ping / --send-ip turn it off
    help: bool = False
    show_version: bool = False
    targets: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def port_scan(self) -> bool:
        return not (self.ping_only or self.list_only)

    def needs_root(self) -> list[str]:
        """What in this command line needs raw sockets."""
        why = []
        if self.tcp_scan in RAW_TYPES or self.udp:
            why.append("scan type")
        if self.os_detect:
            why.append("OS detection")
        return why


def parse_time(text: str, option: str) -> float:
    """nmap time specs: 500ms, 2s, 1m, 1h; a bare number is seconds."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.strip())
    if not m:
        raise UsageError(f"Bogus --{option} argument specified")
    value = float(m.group(1))
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def _int(text: str, option: str, minimum: int = 0) -> int:
    if not re.fullmatch(r"-?\d+", text.strip()) or int(text) < minimum:
        raise UsageError(f"{option} must be positive" if option == "max-retries"
                         else f"Bogus --{option} argument specified")
    return int(text)


# long option name -> (takes an argument, handler)
def _long(opts: Options, name: str, value: str | None) -> None:
    if name == "max-retries":
        opts.max_retries = _int(value, "max-retries")
    elif name == "top-ports":
        opts.top_ports = _int(value, "top-ports", 1)
    elif name in ("min-rtt-timeout", "max-rtt-timeout", "initial-rtt-timeout", "scan-delay",
                  "host-timeout"):
        attr = {"min-rtt-timeout": "min_rtt", "max-rtt-timeout": "max_rtt",
                "initial-rtt-timeout": "initial_rtt", "scan-delay": "scan_delay",
                "host-timeout": "host_timeout"}[name]
        setattr(opts, attr, parse_time(value, name))
    elif name == "max-rate":
        try:
            opts.max_rate = float(value)
        except ValueError:
            raise UsageError("Argument to --max-rate must be a positive number") from None
    elif name == "open":
        opts.open_only = True
    elif name == "reason":
        opts.reason = True
    elif name in ("osscan-guess", "fuzzy"):
        opts.osscan_guess = True
    elif name == "osscan-limit":
        pass
    elif name == "json":
        opts.json = True
    elif name == "privileged":
        opts.privileged = True
    elif name == "unprivileged":
        opts.privileged = False
    elif name in ("disable-arp-ping", "send-ip"):
        opts.arp_ping = False
    elif name == "send-eth":
        pass
    elif name == "help":
        opts.help = True
    elif name == "version":
        opts.show_version = True
    elif name == "version-light" or name == "version-all" or name == "version-intensity":
        opts.version = True
    elif name in ("stats-every", "debug"):
        pass
    else:  # pragma: no cover - table and handler are kept in step
        raise UsageError(f"unrecognized option '--{name}'")


LONG_WITH_ARG = {"max-retries", "top-ports", "min-rtt-timeout", "max-rtt-timeout",
                 "initial-rtt-timeout", "scan-delay", "host-timeout", "max-rate",
                 "version-intensity", "stats-every"}
LONG_FLAGS = {"open", "reason", "osscan-guess", "fuzzy", "osscan-limit", "json", "privileged",
              "unprivileged", "disable-arp-ping", "send-ip", "send-eth", "help", "version",
              "version-light", "version-all", "debug"}
OUTPUTS = {"oN": "out_normal", "oG": "out_grep", "oX": "out_xml"}


def parse_args(argv: list[str]) -> Options:
    opts = Options(argv=list(argv))
    tcp_types: list[str] = []
    args = list(argv)
    i = 0

    def need(what: str) -> str:
        nonlocal i
        i += 1
        if i >= len(args):
            raise UsageError(f"option requires an argument -- '{what}'")
        return args[i]

    while i < len(args):
        arg = args[i]
        if arg == "--":
            opts.targets.extend(args[i + 1:])
            break
        if not arg.startswith("-") or arg == "-":
            opts.targets.append(arg)
            i += 1
            continue
        body = arg.lstrip("-")
        name, eq, inline = body.partition("=")
        if name in LONG_WITH_ARG or name in LONG_FLAGS:
            if name in LONG_WITH_ARG:
                _long(opts, name, inline if eq else need(name))
            elif eq:
                raise UsageError(f"option '--{name}' doesn't allow an argument")
            else:
                _long(opts, name, None)
            i += 1
            continue
        if arg.startswith("--"):
            raise UsageError(f"unrecognized option '{arg}'")
        _short(opts, arg[1:], tcp_types, need)
        i += 1

    if len(set(tcp_types)) > 1:
        raise UsageError("You specified more than one type of TCP scan.  Please choose only "
                         "one of -sA, -sT, -sF, -sN, -sS, and -sX")
    opts.tcp_scan = tcp_types[0] if tcp_types else None
    if (opts.ping_only or opts.list_only) and (opts.tcp_scan or opts.udp):
        raise UsageError("-sL and -sn (skip port scan) are not valid with any other scan types")
    if not opts.port_scan and (opts.ports is not None or opts.fast):
        raise UsageError("You cannot use -F (fast scan) or -p (explicit port selection) when "
                         "not doing a port scan")
    if opts.fast and opts.ports is not None:
        raise UsageError("You cannot use -F (fast scan) with -p (explicit port selection) but "
                         "see --top-ports and --port-ratio to fast scan a range of ports")
    return opts


def _short(opts: Options, body: str, tcp_types: list[str], need) -> None:
    letter, rest = body[:1], body[1:]
    if body in OUTPUTS or body[:2] in OUTPUTS:
        key = body[:2]
        value = body[2:] or need("o" + key[1])
        setattr(opts, OUTPUTS[key], value)
    elif body[:2] == "oA":
        base = body[2:] or need("oA")
        opts.out_normal, opts.out_grep, opts.out_xml = (f"{base}.nmap", f"{base}.gnmap",
                                                        f"{base}.xml")
    elif letter == "s":
        if not rest:
            raise UsageError("option requires an argument -- 's'")
        for c in rest:
            if c in TCP_TYPES:
                tcp_types.append(TCP_TYPES[c])
            elif c == "U":
                opts.udp = True
            elif c in "nP":
                opts.ping_only = True
            elif c == "L":
                opts.list_only = True
            elif c == "V":
                opts.version = True
            elif c == "R":
                opts.version = opts.rpc_alias = True
            else:
                raise UsageError(f"Scantype {c} not supported")
    elif letter == "P":
        kind, ports = rest[:1], rest[1:]
        if kind in ("n", "N", "0") or body == "P0":
            opts.no_ping = True
        elif kind in ("E", "I"):
            opts.ping_types.add("E")
        elif kind in ("P", "M", "R"):
            opts.ping_types.add(kind)
        elif kind in ("S", "A", "U"):
            opts.ping_types.add(kind)
            if ports:
                opts.ping_ports[kind] = ports
        else:
            raise UsageError("Illegal Argument to -P, use -Pn, -PE, -PS, -PA, -PP, -PM, "
                             "-PR, or -PU")
    elif letter == "p":
        opts.ports = rest or need("p")
    elif letter == "T":
        value = (rest or need("T")).lower()
        if value.isdigit() and 0 <= int(value) <= 5:
            opts.timing = int(value)
        elif value in TIMING_NAMES:
            opts.timing = TIMING_NAMES[value]
        else:
            raise UsageError('Unknown timing mode (-T argument).  Use either "Paranoid", '
                             '"Sneaky", "Polite", "Normal", "Aggressive", "Insane" or a '
                             'number from 0 (Paranoid) to 5 (Insane)')
    elif letter == "v":
        if rest.isdigit():
            opts.verbose = int(rest)
        elif set(rest) <= {"v"}:
            opts.verbose += 1 + len(rest)
        else:
            raise UsageError(f"unrecognized option '-{body}'")
    elif letter == "d":
        opts.debug = int(rest) if rest.isdigit() else opts.debug + 1 + len(rest)
    elif letter == "e":
        opts.interface = rest or need("e")
    elif len(body) == 1 and letter in "FnRrO6AhV":
        if letter == "F":
            opts.fast = True
        elif letter in "nR":
            opts.no_resolve = letter == "n"
        elif letter == "r":
            opts.no_randomize = True
        elif letter == "O":
            opts.os_detect = True
        elif letter == "6":
            opts.ipv6 = True
        elif letter == "A":
            opts.os_detect = opts.version = True
        elif letter == "h":
            opts.help = True
        else:
            opts.show_version = True
    else:
        raise UsageError(f"unrecognized option '-{body}'")


USAGE = """\
scanwatch scan: an nmap-style port scanner (nmap's options, meanings and output)
Usage: scanwatch scan [Scan Type(s)] [Options] {target specification}
TARGET SPECIFICATION:
  Addresses, names, CIDR (198.18.0.0/24) and octet ranges (198.18.0-3.1-9)
  -6: Scan IPv6 targets (addresses like fd53:7761::1)
HOST DISCOVERY:
  -sn (-sP): Ping scan - disable port scan
  -Pn: Treat all hosts as online -- skip host discovery
  -PE (-PI)/-PP: ICMP echo / timestamp discovery probes
  -PS/PA[portlist]: TCP SYN/ACK discovery to given ports
  -n: Never do DNS resolution (names given as targets are still resolved)
SCAN TECHNIQUES:
  -sS/sT/sA: TCP SYN/Connect()/ACK scans
  -sU: UDP Scan (nmap-style retransmission; accurate against ICMP rate limits)
  -sN/sF/sX: TCP Null, FIN, and Xmas scans
PORT SPECIFICATION AND SCAN ORDER:
  -p <port ranges>: Only scan specified ports
    Ex: -p22; -p1-65535; -p-; -p U:53,111,137,T:21-25,80,139,8080; -p http*
  -F: Fast mode - Scan the 100 most common ports (default: the 1000 most common)
  --top-ports <number>: Scan <number> most common ports
SERVICE/VERSION DETECTION:
  -sV: Probe open ports to determine service/version info (-sR is an alias)
OS DETECTION:
  -O: Enable OS detection (matched against nmap-os-db when installed)
  --osscan-guess: Guess OS more aggressively
TIMING AND PERFORMANCE:
  -T<0-5>: Set timing template (higher is faster)
  --max-retries <tries>: Caps number of port scan probe retransmissions.
  --min-rtt-timeout/max-rtt-timeout/initial-rtt-timeout <time>: probe round trip time
  --scan-delay <time>: Adjust delay between probes; --max-rate <number>: packets a second
  --host-timeout <time>: Give up on target after this long
OUTPUT:
  -oN/-oX/-oG <file>: Output scan in normal, XML, and Grepable format (- for stdout)
  -oA <basename>: Output in the three major formats at once
  --json: Print the results as one JSON document instead of the normal output
  -v: Increase verbosity level (use -vv or more for greater effect)
  --reason: Display the reason a port is in a particular state
  --open: Only show open (or possibly open) ports
MISC:
  -A: Enable OS detection and version detection
  --privileged / --unprivileged: Assume raw sockets are / are not allowed
  -V: Print version number
  -h: Print this help summary page.
EXAMPLES:
  scanwatch scan -v -A 198.18.0.1
  scanwatch scan -sU -p 53,161 -T4 198.18.0.0/24
"""
