"""lsof's command line: options grouped after one `-` or `+`, values glued or in the next
argument, optional values that are taken only when they look like one (`-i 4`, `-T qs`,
`-r 1`, `-s TCP:LISTEN`), `--` before file names."""
from __future__ import annotations


TCP_STATES = ("ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
              "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING")
TCP_STATE_NUMBERS = {name: n for n, name in enumerate(TCP_STATES, 1)}
COMM_MAX = 15  # what Linux keeps of a command name


class UsageError(Exception):
    """A mistake on the command line: one line, exit status 1."""


class InetSpec:
    """One -i address: [46][TCP|UDP|UDPLITE][@host][:ports]."""

    def __init__(self, text: str):
        self.text = text
        self.version: int | None = None
        self.proto: str | None = None       # "TCP", "UDP" or "UDPLITE"
        self.host: str | None = None
        self.addrs: frozenset = frozenset()   # {(family, 16 bytes)}; IPv4 zero-padded
        self.ports: tuple = ()                # ((lo, hi), ...)

    def __repr__(self) -> str:
        return (f"InetSpec({self.text!r}, version={self.version}, proto={self.proto}, "
                f"host={self.host}, ports={self.ports})")


class Options:
    """Everything the command line asked for (lsof's defaults when not)."""

    def __init__(self):
        self.and_ = self.terse = self.help = self.version = self.verbose = False
        self.numeric_host = self.numeric_port = self.numeric_uid = False
        self.warn = True
        self.pids: set = set()
        self.xpids: set = set()
        self.uids: set = set()
        self.xuids: set = set()
        self.cmds: list = []          # str prefix or compiled regex
        self.xcmds: list = []
        self.inet = False
        self.inet_versions: set = set()   # from bare -i4 / -i6
        self.inet_specs: list = []
        self.unix = False
        self.fds: list = []           # ("name", str) or ("range", lo, hi)
        self.xfds: list = []
        self.files: list = []
        self.dirs: list = []          # (path, recursive)
        self.tcp_info = "s"           # -T letters; "" = bare -T
        self.tcp_states: set = set()
        self.xtcp_states: set = set()
        self.repeat: float | None = None
        self.repeat_count: int | None = None
        self.repeat_until_empty = False
        self.repeat_marker: str | None = None   # strftime format of the marker line
        self.cmd_width = 9
        self.fields: tuple | None = None   # -F: (letters, NUL-terminated, offsets asked)
        self.field_tcp_info = ""           # -T letters for the T field (set by main)
        self.field_help = False            # -F ?

    @property
    def inet_version(self) -> int | None:
        """-i4 or -i6 alone restricts every -i; both (or neither) mean all."""
        return next(iter(self.inet_versions)) if len(self.inet_versions) == 1 else None

    @property
    def process_selection(self) -> bool:
        return bool(self.pids or self.uids or self.cmds)

    @property
    def file_selection(self) -> bool:
        return bool(self.inet or self.unix or self.fds or self.xfds or self.files
                    or self.dirs)


MANDATORY = {"-": "cpud", "+": "cdD"}
OPTIONAL = {"-": "iTsrSF", "+": "r"}
FLAGS = {"-": "abhlnPtUvVwbCO?", "+": "w"}   # b, C, O: accepted, no effect here
# Anything else (-R, -K, -o, -g, -N, -X, -x, ...) is refused rather than
# silently ignored, since it would change what lsof prints.


def parse(argv: list[str]) -> Options:
    o = Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            o.files.extend(argv[i:])
            break
        if len(arg) < 2 or arg[0] not in "-+":
            o.files.extend(argv[i - 1:])   # as lsof: names end the options
            break
        prefix, j = arg[0], 1
        while j < len(arg):
            ch, rest = arg[j], arg[j + 1:]
            j += 1
            if ch in MANDATORY[prefix]:
                if rest:
                    value = rest
                elif i < len(argv):
                    value, i = argv[i], i + 1
                else:
                    raise UsageError(f"{prefix}{ch} not followed by a value")
                _with_value(o, prefix, ch, value)
                break
            if ch in OPTIONAL[prefix]:
                value = rest or None
                if value is None and i < len(argv) and _takes(ch, argv[i]):
                    value, i = argv[i], i + 1
                _optional(o, prefix, ch, value)
                break
            if ch in FLAGS[prefix]:
                _flag(o, prefix, ch)
                continue
            raise UsageError(f"unsupported option: {prefix}{ch}")
    if o.fields is not None and o.terse:
        raise UsageError("-F and -t are mutually exclusive")
    both = o.pids & o.xpids
    if both:
        raise UsageError(f"PID {min(both)} has been included and excluded.")
    return o


def _takes(ch: str, nxt: str) -> bool:
    """Whether an option with an optional value takes the next argument as its value."""
    if not nxt or nxt[0] in "-+":
        return False
    if ch == "r" or ch == "S":
        return nxt[0].isdigit()
    if ch == "s":
        return ":" in nxt
    return True


def _flag(o: Options, prefix: str, ch: str) -> None:
    if prefix == "+":
        o.warn = True
        return
    if ch == "a":
        o.and_ = True
    elif ch in "h?":
        o.help = True
    elif ch == "l":
        o.numeric_uid = True
    elif ch == "n":
        o.numeric_host = True
    elif ch == "P":
        o.numeric_port = True
    elif ch == "t":
        o.terse = True
        o.warn = False
    elif ch == "U":
        o.unix = True
    elif ch == "v":
        o.version = True
    elif ch == "w":
        o.warn = False
    elif ch == "V":
        o.verbose = True


def _with_value(o: Options, prefix: str, ch: str, value: str) -> None:
    if prefix == "+":
        if ch == "c":
            if not value.isdigit():
                raise UsageError(f"+c not followed by a number: {value}")
            width = int(value)
            o.cmd_width = 0 if width == 0 else max(width, 7)
        else:
            o.dirs.append((value, ch == "D"))
        return
    if ch == "p":
        for item in value.split(","):
            neg = item.startswith("^")
            num = item[1:] if neg else item
            if not num.isdigit():
                raise UsageError(f"illegal process ID: {item}")
            (o.xpids if neg else o.pids).add(int(num))
    elif ch == "u":
        from . import names
        for item in value.split(","):
            neg = item.startswith("^")
            who = item[1:] if neg else item
            if who.isdigit():
                uid = int(who)
            else:
                uid = names.user_id(who)
                if uid is None:
                    raise UsageError(f"can't get UID for {who}")
            (o.xuids if neg else o.uids).add(uid)
    elif ch == "c":
        neg = value.startswith("^")
        text = value[1:] if neg else value
        matcher = _command_matcher(text, value)
        (o.xcmds if neg else o.cmds).append(matcher)
    elif ch == "d":
        _fd_list(o, value)


def _command_matcher(text: str, original: str):
    import re  # lazily, for the forms that need it: re costs every lsof start 4.5 ms
    m = re.fullmatch(r"/(.*)/([bix]*)", text, re.S)
    if m and len(text) >= 2:
        flags = re.I if "i" in m.group(2) else 0
        try:
            return re.compile(m.group(1), flags)
        except re.error as exc:
            raise UsageError(f"-c regular expression error: {exc}: {original}") from None
    if len(text) > COMM_MAX:
        raise UsageError(f'"-c {original}" length ({len(text)}) > what system provides '
                         f"({COMM_MAX})")
    return text


def _fd_list(o: Options, value: str) -> None:
    import re
    items = value.split(",")
    negs = {item.startswith("^") for item in items}
    if len(negs) > 1:
        raise UsageError(f"mixed exclude and include FDs: {value}")
    for item in items:
        neg = item.startswith("^")
        text = item[1:] if neg else item
        m = re.fullmatch(r"(\d+)-(\d+)", text)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi <= lo:
                raise UsageError(f"FD range ending less than start: {item}")
            entry = ("range", lo, hi)
        elif text.isdigit():
            entry = ("range", int(text), int(text))
        elif text and " " not in text:
            entry = ("name", text)
        else:
            raise UsageError(f"illegal FD: {item}")
        (o.xfds if neg else o.fds).append(entry)


def _optional(o: Options, prefix: str, ch: str, value: str | None) -> None:
    if ch == "i":
        o.inet = True
        if value is None:
            if not o.inet_specs:
                o.inet_versions.clear()   # as lsof: -i6 -i lists both versions again
        else:
            spec = parse_inet(value)
            if spec.proto is None and spec.host is None and not spec.ports:
                if spec.version is not None:
                    o.inet_versions.add(spec.version)
            else:
                o.inet_specs.append(spec)
    elif ch == "T":
        letters = value or ""
        bad = set(letters) - set("fqsw")
        if bad:
            raise UsageError(f"unsupported TCP/TPI info selection: {''.join(sorted(bad))}")
        o.tcp_info = letters
    elif ch == "s":
        if value is None:
            raise UsageError("-s without p:s (the SIZE column) is not supported")
        _states(o, value)
    elif ch == "r":
        o.repeat_until_empty = prefix == "+"
        o.repeat = 15.0
        if value is not None:
            import re  # lazily: see _command_matcher
            m = re.fullmatch(r"(\d+)(?:c(\d+))?(?:m(.*))?", value, re.S)
            if not m:
                raise UsageError(f"illegal repeat time: {value}")
            o.repeat = float(m.group(1))
            if m.group(2):
                o.repeat_count = int(m.group(2))
            if m.group(3) is not None:
                o.repeat_marker = m.group(3)
    elif ch == "F":
        if value == "?":
            o.field_help = True
            return
        from .fields import parse as parse_fields
        try:
            o.fields = parse_fields(value or "")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if "T" in o.fields[0]:
            o.tcp_info = "qs"   # as lsof: field T turns on all TCP info; a later -T rules
    # -S (stat timeout): accepted, no effect here


def _states(o: Options, value: str) -> None:
    proto, sep, names = value.partition(":")
    if not sep or not names:
        raise UsageError(f"missing protocol state name list: {value}")
    if proto.upper() == "UDP":
        raise UsageError(f"no UDP state names available: {value}")
    if proto.upper() != "TCP":
        raise UsageError(f"unknown protocol name: {proto}")
    for name in names.split(","):
        neg = name.startswith("^")
        key = (name[1:] if neg else name).upper()
        if key not in TCP_STATE_NUMBERS:
            raise UsageError(f"unknown TCP state name: {name}")
        (o.xtcp_states if neg else o.tcp_states).add(TCP_STATE_NUMBERS[key])


def parse_inet(text: str) -> InetSpec:
    """Parse one -i address; UsageError when it is malformed or names nothing known."""
    import re
    spec = InetSpec(text)
    s = text
    if s[:1] in ("4", "6"):
        spec.version = int(s[0])
        s = s[1:]
    m = re.match(r"[A-Za-z]*", s)
    proto = m.group(0)
    s = s[len(proto):]
    if proto:
        if proto.upper() not in ("TCP", "UDP", "UDPLITE"):
            raise UsageError(f"unknown protocol name ({proto}) in: -i {text}")
        spec.proto = proto.upper()
    if s.startswith("@"):
        s = s[1:]
        if s.startswith("["):
            end = s.find("]")
            if end < 0:
                raise UsageError(f"unterminated IPv6 address in: -i {text}")
            spec.host, s = s[1:end], s[end + 1:]
            if spec.version == 4:
                raise UsageError(f"IPv6 address for IPv4 selection in: -i {text}")
        else:
            end = s.find(":")
            spec.host, s = (s, "") if end < 0 else (s[:end], s[end:])
        if not spec.host:
            raise UsageError(f"missing host name in: -i {text}")
        spec.addrs = frozenset(_resolve(spec.host, spec.version, text))
    if s.startswith(":"):
        spec.ports = _ports(s[1:], spec.proto, text)
    elif s:
        raise UsageError(f"unknown protocol name ({s}) in: -i {text}")
    return spec


def _resolve(host: str, version: int | None, text: str) -> set:
    import socket
    out = set()
    for family, ver in ((socket.AF_INET, 4), (socket.AF_INET6, 6)):
        if version not in (None, ver):
            continue
        try:
            packed = socket.inet_pton(family, host)
            out.add((family, packed.ljust(16, b"\0")))
            continue
        except OSError:
            pass
        try:
            infos = socket.getaddrinfo(host, None, family, socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            continue
        for info in infos:
            out.add((family, socket.inet_pton(family, info[4][0]).ljust(16, b"\0")))
    if not out:
        raise UsageError(f"unknown host name ({host}) in: -i {text}")
    return out


def _ports(text: str, proto: str | None, spec: str) -> tuple:
    import re
    from . import names
    out = []
    for item in text.split(","):
        m = re.fullmatch(r"(\d+)-(\w[\w.+-]*)", item)
        if item.isdigit():
            out.append((int(item), int(item)))
        elif m:
            lo = int(m.group(1))
            hi_text = m.group(2)
            hi = int(hi_text) if hi_text.isdigit() else _one_port(hi_text, proto, spec)
            if hi < lo:
                raise UsageError(f"port range ending less than start in: -i {spec}")
            out.append((lo, hi))
        elif item:
            ports = names.service_ports(item, proto.lower() if proto else None)
            if not ports:
                raise UsageError(f"unknown service {item} in: -i {spec}")
            out.extend((p, p) for p in sorted(ports))
        else:
            raise UsageError(f"missing port in: -i {spec}")
    return tuple(out)


def _one_port(name: str, proto: str | None, spec: str) -> int:
    from . import names
    ports = names.service_ports(name, proto.lower() if proto else None)
    if not ports:
        raise UsageError(f"unknown service {name} in: -i {spec}")
    return min(ports)
