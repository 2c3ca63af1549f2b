"""portsentry.conf syntax: `KEY="value"` lines, `#` comments, checked against defaults.py."""
import os
import re
import stat

from .defaults import BY_NAME, SETTINGS
from ..errors import ConfigError

_LINE = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$')
MAX_CONFIG_BYTES = 1 << 20
MINIMUM = {"MAX_SOURCES": 1, "MAX_BLOCKED": 1, "SWEEP_WINDOW": 1, "SLOW_WINDOW": 1, "LOG_RATE": 1,
           "V6_PREFIX": 16}
# Upper bounds where the kernel or nftables sets one (values land in u32 fields or map sizes).
MAXIMUM = {"ADVANCED_PORTS_TCP": 65535, "CHALLENGE_RATE": 100000, "SPOOF_TIMEOUT": 86400, "ADVANCED_PORTS_UDP": 65535, "SWEEP_PORTS": 65535,
           "SLOW_PORTS": 65535, "SWEEP_WINDOW": 86400, "SLOW_WINDOW": 86400, "COMMAND_TIMEOUT": 3600,
           "BLOCK_TIMEOUT_MAX": 10 * 365 * 86400, "REPEAT_WINDOW": 10 * 365 * 86400, "BLOCK_TIMEOUT": 10 * 365 * 86400,
           "MAX_SOURCES": 1 << 22, "MAX_BLOCKED": 1 << 22, "V6_PREFIX": 128}  # a real portsentry.conf is ~10 KB; anything huge is a mistake
# Settings a running daemon cannot take over on SIGHUP.
RESTART_KEYS = ("INTERFACES", "STATE_DIR", "RUN_DIR", "NFT_TABLE", "MAX_SOURCES", "MAX_BLOCKED",
                "HISTORY_FILE", "BLOCKED_FILE", "HOSTS_DENY_FILE", "TCP_PORTS", "UDP_PORTS",
                "PORT_BANNER", "RESOLVE_HOST", "V6_PREFIX")


def parse_ports(text, path=None, lineno=None, key="ports"):
    """`1,2,3` and PortSentry 2.0's `a-b` ranges -> sorted tuple of ints."""
    ports = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        lo, sep, hi = item.partition("-")
        try:
            if not re.fullmatch(r"\s*[0-9]+\s*", lo) or (sep and not re.fullmatch(r"\s*[0-9]+\s*", hi)):
                raise ValueError(item)
            first = int(lo)
            last = int(hi) if sep else first
        except ValueError:
            raise ConfigError(f"{key}: {item!r} is not a port or a-b range", path, lineno) from None
        if not (1 <= first <= last <= 65535):
            raise ConfigError(f"{key}: {item!r} is outside 1-65535", path, lineno)
        ports.update(range(first, last + 1))
    return tuple(sorted(ports))


def _convert(setting, raw, path, lineno):
    kind, name = setting.kind, setting.name
    if kind == "ports":
        return parse_ports(raw, path, lineno, name)
    if kind in ("int", "block", "flag"):
        if not re.fullmatch(r"[0-9]{1,10}", raw):
            raise ConfigError(f"{name}: {raw!r} is not a whole number", path, lineno)
        value = int(raw)
        allowed = {"block": (0, 1, 2), "flag": (0, 1)}.get(kind)
        if allowed and value not in allowed:
            raise ConfigError(f"{name}: {raw!r} must be one of {', '.join(map(str, allowed))}",
                              path, lineno)
        if value < MINIMUM.get(name, 0):
            raise ConfigError(f"{name}: {raw!r} is below the minimum {MINIMUM[name]}",
                              path, lineno)
        top = MAXIMUM.get(name, 2**32 - 1)
        if value > top:
            raise ConfigError(f"{name}: {raw!r} is above the maximum {top}", path, lineno)
        return value
    if kind == "list":
        items = tuple(x.strip() for x in raw.split(",") if x.strip())
        if name == "FLEET_SHARE":
            from .fleet.message import EVIDENCE
            bad = [x for x in items if x not in EVIDENCE]
            if bad:
                raise ConfigError(f"{name}: {bad[0]!r} is not one of {', '.join(EVIDENCE)}",
                                  path, lineno)
        return items
    if kind == "path":
        if "\0" in raw:
            raise ConfigError(f"{name}: contains a NUL byte", path, lineno)
        return raw
    if name == "NFT_TABLE" and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,31}", raw):
        raise ConfigError(f"{name}: {raw!r} is not a valid nftables table name", path, lineno)
    if name == "METRICS_LISTEN" and raw and not re.fullmatch(
            r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):(6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|"
            r"[1-5]\d{4}|[1-9]\d{0,3})", raw):
        raise ConfigError(f"{name}: {raw!r} is not HOST:PORT (e.g. 127.0.0.1:9877)", path, lineno)
    if name == "CONTROL_GROUP" and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}", raw):
        raise ConfigError(f"{name}: {raw!r} is not a group name", path, lineno)
    if name.startswith("FLEET_") and raw:
        from .fleet.message import check_url
        try:
            check_url(name, raw)
        except ValueError as err:
            raise ConfigError(f"{name}: {err}", path, lineno) from None
    if name == "LOG_FORMAT" and raw not in ("portsentry", "portsentry2"):
        raise ConfigError(f"{name}: {raw!r} must be portsentry or portsentry2", path, lineno)
    if name == "EVIDENCE_RESPONSE":
        from .evidence import parse_response
        try:
            parse_response(raw)
        except ValueError as err:
            raise ConfigError(f"{name}: {err}", path, lineno) from None
    return raw


class Config:
    """Typed settings (attribute per key of defaults.SETTINGS) plus where they came from."""

    def __init__(self, values, path=None, warnings=None, origin=None):
        self.values = values
        self.path = path
        self.warnings = [] if warnings is None else warnings
        self.origin = {} if origin is None else origin  # key -> (path, lineno) set by a file

    def __getattr__(self, name):
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def blocked_file(self, mode):
        return f"{self.BLOCKED_FILE}.{mode}"


def defaults():
    return Config({s.name: _convert(s, s.default, None, None) for s in SETTINGS})


def parse(text, path="<config>"):
    """Parse config text; raise ConfigError naming path:line on the first malformed line."""
    cfg = defaults()
    cfg.path = path
    for lineno, line in enumerate(split_lines(text), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            raise ConfigError(f"expected KEY=\"value\", got {_clip(stripped)}", path, lineno)
        key, raw = m.group(1), m.group(2)
        if raw.startswith('"'):
            end = raw.find('"', 1)
            if end < 0:
                raise ConfigError(f"{key}: unterminated quote", path, lineno)
            rest = raw[end + 1:].strip()
            if rest and not rest.startswith("#"):
                raise ConfigError(f"{key}: unexpected text after the value: {_clip(rest)}",
                                  path, lineno)
            raw = raw[1:end]
        else:
            raw = raw.split("#", 1)[0].strip()
        setting = BY_NAME.get(key)
        if setting is None:
            cfg.warnings.append(f"{path}:{lineno}: unknown key {key} ignored")
            continue
        cfg.values[key] = _convert(setting, raw, path, lineno)
        cfg.origin[key] = (path, lineno)
    return cfg


def load(path=None, overrides=None):
    """Read a config file (None = embedded defaults), then apply {KEY: raw} overrides."""
    if path is None:
        cfg = defaults()
    else:
        cfg = parse(read_text(path), path)
    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        cfg.values[key] = _convert(BY_NAME[key], str(raw), "command line", None)
    return cfg


def read_text(path, limit=MAX_CONFIG_BYTES):
    """Read a small text file, turning every OS or encoding problem into ConfigError."""
    if os.path.isdir(path):
        raise ConfigError("is a directory, not a file", path)
    if os.path.exists(path) and not stat.S_ISREG(os.stat(path).st_mode):
        raise ConfigError("is not a regular file", path)  # a FIFO would block the read
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as err:
        raise ConfigError(err.strerror or str(err), path) from err
    if len(data) > limit:
        raise ConfigError(f"larger than {limit} bytes; is this the right file?", path)
    if b"\0" in data:
        raise ConfigError("contains NUL bytes; not a text file", path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        lineno = data[:err.start].count(b"\n") + 1
        raise ConfigError("not valid UTF-8 text", path, lineno) from err


def split_lines(text):
    """Lines end at "\n" only (str.splitlines() would also split at \f, \v, U+2028 ...,
    which could turn part of a comment into a setting and shift line numbers)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [l[:-1] if l.endswith("\r") else l for l in lines]


def _clip(text, width=60):
    return repr(text if len(text) <= width else text[:width] + "...")
