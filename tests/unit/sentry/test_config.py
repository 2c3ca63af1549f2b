"""config.py and defaults.py: PortSentry 1.2 defaults, portsentry.conf syntax, errors."""
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from scanwatch.sentry import config as cfgmod
from scanwatch.sentry.config import Config, load, parse, parse_ports, read_text
from scanwatch.sentry.defaults import BY_NAME, SETTINGS
from scanwatch.errors import ConfigError, ScanwatchError

DEBIAN_CONF = Path("/etc/portsentry/portsentry.conf")
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")

# PortSentry 1.2's shipped portsentry.conf, the "just want to be aware" lists.
PS12_TCP = (1, 11, 15, 79, 111, 119, 143, 540, 635, 1080, 1524, 2000, 5742, 6667, 12345,
            12346, 20034, 27665, 31337, 32771, 32772, 32773, 32774, 40421, 49724, 54320)
PS12_UDP = (1, 7, 9, 69, 161, 162, 513, 635, 640, 641, 700, 37444, 34555, 31335, 32770,
            32771, 32772, 32773, 32774, 31337, 54321)


def write(tmp_path, text, name="portsentry.conf"):
    p = tmp_path / name
    p.write_text(text) if isinstance(text, str) else p.write_bytes(text)
    return str(p)


# --- defaults ---------------------------------------------------------------------------

def test_defaults_are_portsentry_12s():
    d = cfgmod.defaults()
    assert d.TCP_PORTS == tuple(sorted(PS12_TCP))
    assert d.UDP_PORTS == tuple(sorted(PS12_UDP))
    assert len(d.TCP_PORTS) == 26 and len(d.UDP_PORTS) == 21
    assert d.SCAN_TRIGGER == 0
    assert d.BLOCK_TCP == 1
    assert d.BLOCK_UDP == 1
    assert d.KILL_HOSTS_DENY == "ALL: $TARGET$"
    assert d.ADVANCED_PORTS_TCP == 1024 and d.ADVANCED_PORTS_UDP == 1024
    assert d.ADVANCED_EXCLUDE_TCP == (113, 139)
    assert d.ADVANCED_EXCLUDE_UDP == (67, 137, 138, 520)
    assert d.RESOLVE_HOST == 0
    assert d.KILL_RUN_CMD == "" and d.KILL_RUN_CMD_FIRST == 0
    assert d.PORT_BANNER == ""


def test_defaults_cover_every_setting_and_come_from_no_file():
    d = cfgmod.defaults()
    assert set(d.values) == {s.name for s in SETTINGS}
    assert len(BY_NAME) == len(SETTINGS)  # no setting listed twice
    assert d.path is None and d.warnings == [] and d.origin == {}
    assert load(None).values == d.values


def test_scanwatch_defaults_are_sane():
    d = cfgmod.defaults()
    assert d.BLOCK_TIMEOUT == 3600
    assert d.NFT_TABLE == "scanwatch"
    assert d.LOG_FORMAT == "portsentry"
    assert d.INTERFACES == ()
    assert d.KERNEL_BLOCK == 1
    assert d.SWEEP_PORTS == 20 and d.SWEEP_WINDOW == 5
    assert d.SLOW_PORTS == 25 and d.SLOW_WINDOW == 600
    # The slow tier stays above the fast one plus its filter's worst measured miss (2,
    # bench/sweep_filter.py): a fast scan is always named by the fast tier, never "slow".
    assert d.SLOW_PORTS > d.SWEEP_PORTS + 2
    assert d.blocked_file("stcp") == "/var/lib/scanwatch/scanwatch.blocked.stcp"


def test_defaults_are_independent_copies():
    a = cfgmod.defaults()
    a.values["SCAN_TRIGGER"] = 9
    assert cfgmod.defaults().SCAN_TRIGGER == 0


def test_unknown_attribute_is_attribute_error():
    with pytest.raises(AttributeError):
        cfgmod.defaults().NO_SUCH_KEY


# --- syntax -----------------------------------------------------------------------------

@pytest.mark.parametrize("line", [
    'SCAN_TRIGGER="2"',
    'SCAN_TRIGGER = "2"',
    '  SCAN_TRIGGER  =  "2"  ',
    '\tSCAN_TRIGGER="2"\t',
    'SCAN_TRIGGER=2',
    'SCAN_TRIGGER = 2',
    'SCAN_TRIGGER="2" # two hits allowed',
    'SCAN_TRIGGER="2"#no space',
    'SCAN_TRIGGER=2 # unquoted with a comment',
])
def test_assignment_forms(line):
    cfg = parse(line + "\n", "f.conf")
    assert cfg.SCAN_TRIGGER == 2
    assert cfg.origin["SCAN_TRIGGER"] == ("f.conf", 1)
    assert cfg.warnings == []


def test_debian_spaced_form():
    cfg = parse('# Debian\nRESOLVE_HOST = "1"\n', "d")
    assert cfg.RESOLVE_HOST == 1
    assert cfg.origin["RESOLVE_HOST"] == ("d", 2)


def test_comments_and_blank_lines_are_skipped():
    text = ("# PortSentry configuration\n"
            "\n"
            "   \n"
            "   # indented comment\n"
            "#SCAN_TRIGGER=\"7\"\n"
            "BLOCK_TCP=\"0\"\n"
            "\t\n")
    cfg = parse(text, "c")
    assert cfg.SCAN_TRIGGER == 0
    assert cfg.BLOCK_TCP == 0
    assert cfg.origin == {"BLOCK_TCP": ("c", 6)}


def test_empty_text_is_defaults():
    cfg = parse("", "empty")
    assert cfg.values == cfgmod.defaults().values
    assert cfg.path == "empty"


def test_quoted_value_keeps_hash_and_spaces():
    cfg = parse('KILL_RUN_CMD="/usr/local/bin/alert $TARGET$ #$PORT$"  # note\n'
                'KILL_HOSTS_DENY="ALL: $TARGET$ : DENY"\n')
    assert cfg.KILL_RUN_CMD == "/usr/local/bin/alert $TARGET$ #$PORT$"
    assert cfg.KILL_HOSTS_DENY == "ALL: $TARGET$ : DENY"


def test_empty_quoted_values():
    cfg = parse('KILL_HOSTS_DENY=""\nTCP_PORTS=""\nINTERFACES=""\n')
    assert cfg.KILL_HOSTS_DENY == ""
    assert cfg.TCP_PORTS == ()
    assert cfg.INTERFACES == ()


def test_unquoted_text_value():
    cfg = parse("KILL_ROUTE=/sbin/route add -host $TARGET$ reject\n")
    assert cfg.KILL_ROUTE == "/sbin/route add -host $TARGET$ reject"


def test_later_line_wins():
    cfg = parse('SCAN_TRIGGER="1"\nSCAN_TRIGGER="3"\n', "x")
    assert cfg.SCAN_TRIGGER == 3
    assert cfg.origin["SCAN_TRIGGER"] == ("x", 2)


def test_crlf_line_endings():
    cfg = parse('SCAN_TRIGGER="4"\r\nBLOCK_UDP="2"\r\n')
    assert cfg.SCAN_TRIGGER == 4 and cfg.BLOCK_UDP == 2


def test_list_setting():
    cfg = parse('INTERFACES="eth0, eth1,,wlan0 "\n')
    assert cfg.INTERFACES == ("eth0", "eth1", "wlan0")


@pytest.mark.parametrize("text,expected", [
    ("1,2,3", (1, 2, 3)),
    ("3,1,2,1", (1, 2, 3)),
    ("1-3", (1, 2, 3)),
    ("5-5", (5,)),
    ("10,1-3,2", (1, 2, 3, 10)),
    (" 7 , 8-9 ,", (7, 8, 9)),
    ("65530-65535", (65530, 65531, 65532, 65533, 65534, 65535)),
    ("", ()),
])
def test_parse_ports(text, expected):
    assert parse_ports(text) == expected


def test_whole_port_range():
    assert parse_ports("1-65535") == tuple(range(1, 65536))


def test_port_range_in_file():
    cfg = parse('TCP_PORTS="1-4,31337"\nUDP_PORTS="53"\n')
    assert cfg.TCP_PORTS == (1, 2, 3, 4, 31337)
    assert cfg.UDP_PORTS == (53,)


def test_unknown_key_is_a_warning(tmp_path):
    p = write(tmp_path, '# x\nSCAN_TRIGGER="1"\nPORTSENTRY_FUTURE_KEY="yes"\n')
    cfg = load(p)
    assert cfg.SCAN_TRIGGER == 1
    assert len(cfg.warnings) == 1
    w = cfg.warnings[0]
    assert w.startswith(f"{p}:3: ")
    assert "PORTSENTRY_FUTURE_KEY" in w
    assert "PORTSENTRY_FUTURE_KEY" not in cfg.values


# --- malformed lines --------------------------------------------------------------------

BAD_LINES = [
    ('TCP_PORTS="1,x,3"', "TCP_PORTS"),
    ('TCP_PORTS="0"', "TCP_PORTS"),
    ('UDP_PORTS="65536"', "UDP_PORTS"),
    ('TCP_PORTS="100-10"', "TCP_PORTS"),
    ('TCP_PORTS="0-10"', "TCP_PORTS"),
    ('TCP_PORTS="10-65536"', "TCP_PORTS"),
    ('TCP_PORTS="1-2-3"', "TCP_PORTS"),
    ('TCP_PORTS="-5"', "TCP_PORTS"),
    ('ADVANCED_EXCLUDE_UDP="abc"', "ADVANCED_EXCLUDE_UDP"),
    ('SCAN_TRIGGER="two"', "SCAN_TRIGGER"),
    ('SCAN_TRIGGER="-1"', "SCAN_TRIGGER"),
    ('SCAN_TRIGGER="1.5"', "SCAN_TRIGGER"),
    ('SCAN_TRIGGER=""', "SCAN_TRIGGER"),
    ('BLOCK_TIMEOUT="1h"', "BLOCK_TIMEOUT"),
    ('BLOCK_TCP="3"', "BLOCK_TCP"),
    ('BLOCK_UDP="-1"', "BLOCK_UDP"),
    ('RESOLVE_HOST="2"', "RESOLVE_HOST"),
    ('KERNEL_BLOCK="yes"', "KERNEL_BLOCK"),
    ('ADVANCED_PORTS_TCP="70000"', "ADVANCED_PORTS_TCP"),
    ('KILL_RUN_CMD="/bin/true', "unterminated"),
    ('TCP_PORTS="1,2', "unterminated"),
    ('SCAN_TRIGGER="1" 2', "SCAN_TRIGGER"),
    ('this is not a setting', "expected"),
    ('="1"', "expected"),
    ('1KEY="1"', "expected"),
    ('SCAN_TRIGGER', "expected"),
    ('NFT_TABLE="bad-name"', "NFT_TABLE"),
    ('NFT_TABLE="1table"', "NFT_TABLE"),
    ('NFT_TABLE=""', "NFT_TABLE"),
    ('NFT_TABLE="' + "t" * 33 + '"', "NFT_TABLE"),
    ('NFT_TABLE="a b"', "NFT_TABLE"),
    ('LOG_FORMAT="syslog"', "LOG_FORMAT"),
    ('LOG_FORMAT="PortSentry"', "LOG_FORMAT"),
]


@pytest.mark.parametrize("bad,mention", BAD_LINES)
@pytest.mark.parametrize("before", [0, 4])
def test_malformed_line_names_file_and_line(bad, mention, before):
    good = ['# comment', '', 'SCAN_TRIGGER="1"', 'RESOLVE_HOST = "0"'][:before]
    text = "\n".join(good + [bad, 'BLOCK_TCP="1"']) + "\n"
    with pytest.raises(ConfigError) as exc:
        parse(text, "/etc/x.conf")
    err = exc.value
    lineno = before + 1
    assert err.path == "/etc/x.conf"
    assert err.lineno == lineno
    assert str(err).startswith(f"/etc/x.conf:{lineno}: ")
    assert mention in str(err)
    assert err.exit_code == 2
    assert isinstance(err, ScanwatchError)


def test_malformed_file_error_names_path_and_line(tmp_path):
    p = write(tmp_path, '# portsentry\n\nTCP_PORTS="1,2"\nBLOCK_TCP="3"\n')
    with pytest.raises(ConfigError) as exc:
        load(p)
    assert str(exc.value).startswith(f"{p}:4: ")


def test_valid_edge_values():
    cfg = parse('NFT_TABLE="' + "T" * 32 + '"\nLOG_FORMAT="portsentry2"\n'
                'ADVANCED_PORTS_UDP="65535"\nBLOCK_TIMEOUT="0"\nBLOCK_UDP="2"\n')
    assert cfg.NFT_TABLE == "T" * 32
    assert cfg.LOG_FORMAT == "portsentry2"
    assert cfg.ADVANCED_PORTS_UDP == 65535
    assert cfg.BLOCK_TIMEOUT == 0
    assert cfg.BLOCK_UDP == 2


# Lines end at \n only: \f, \v, \x85, U+2028 ... inside a comment must not start a setting.


@pytest.mark.parametrize("sep", ["\x0c", "\x0b", "\x85", "\u2028"])
def test_line_numbers_count_only_newlines(sep):
    text = f"# section one{sep}\n\nBLOCK_TCP=\"3\"\n"
    with pytest.raises(ConfigError) as exc:
        parse(text, "f")
    assert exc.value.lineno == 3


@pytest.mark.parametrize("sep", ["\x0c", "\x0b", "\x1e", "\x85", "\u2029"])
def test_commented_out_setting_stays_commented(sep):
    cfg = parse(f'#{sep}SCAN_TRIGGER="5"\n', "f")
    assert cfg.SCAN_TRIGGER == 0
    assert cfg.origin == {}


@pytest.mark.parametrize("key", ["SCAN_TRIGGER", "SWEEP_PORTS"])
def test_u32_kernel_fields_reject_values_above_u32(key):
    with pytest.raises(ConfigError):
        parse(f'{key}="4294967296"\n', "f")


# --- read_text --------------------------------------------------------------------------

def test_read_text_directory(tmp_path):
    with pytest.raises(ConfigError) as exc:
        read_text(str(tmp_path))
    assert exc.value.lineno is None
    assert str(exc.value).startswith(f"{tmp_path}: ")
    assert "directory" in str(exc.value)


def test_read_text_missing(tmp_path):
    p = str(tmp_path / "nope.conf")
    with pytest.raises(ConfigError) as exc:
        read_text(p)
    assert str(exc.value) == f"{p}: No such file or directory"
    assert isinstance(exc.value.__cause__, FileNotFoundError)


def test_read_text_not_a_directory_component(tmp_path):
    f = write(tmp_path, "x")
    with pytest.raises(ConfigError) as exc:
        read_text(f + "/child")
    assert str(exc.value).startswith(f"{f}/child: ")


def _read_unreadable_as_nobody(path):
    """Root reads anything: fork, drop to nobody, try read_text, report back."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                read_text(path)
                msg = "READ OK"
            except ConfigError as err:
                msg = "ConfigError|" + str(err)
            except BaseException as err:  # report any other exception class
                msg = f"OTHER|{type(err).__name__}: {err}"
            os.write(w, msg.encode())
        except BaseException as err:
            os.write(w, f"SETUP|{err}".encode())
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        msg = fh.read().decode()
    os.waitpid(pid, 0)
    return msg


def test_read_text_unreadable(tmp_path):
    p = write(tmp_path, 'SCAN_TRIGGER="1"\n')
    os.chmod(p, 0)
    try:
        if os.geteuid() != 0:
            with pytest.raises(ConfigError) as exc:
                read_text(p)
            assert str(exc.value) == f"{p}: Permission denied"
            assert isinstance(exc.value.__cause__, PermissionError)
            return
        # As root chmod 000 means nothing; check the same path as an unprivileged child.
        os.chmod(tmp_path, 0o755)
        msg = _read_unreadable_as_nobody(p)
        if msg.startswith("SETUP|"):
            pytest.skip(f"cannot drop privileges to nobody: {msg}")
        assert msg == f"ConfigError|{p}: Permission denied"
    finally:
        os.chmod(p, 0o600)


def test_read_text_nul_bytes(tmp_path):
    p = write(tmp_path, b'SCAN_TRIGGER="1"\n\0\0\0\n')
    with pytest.raises(ConfigError) as exc:
        read_text(p)
    assert str(exc.value).startswith(f"{p}: ")
    assert "NUL" in str(exc.value)


@pytest.mark.parametrize("bad_line", [1, 3, 5])
def test_read_text_invalid_utf8_names_line(tmp_path, bad_line):
    lines = [b'# fine', b'SCAN_TRIGGER="1"', b'# also fine', b'BLOCK_TCP="1"', b'# end']
    lines[bad_line - 1] = b'# caf\xe9 latin-1 comment'
    p = write(tmp_path, b"\n".join(lines) + b"\n")
    with pytest.raises(ConfigError) as exc:
        read_text(p)
    assert exc.value.lineno == bad_line
    assert str(exc.value).startswith(f"{p}:{bad_line}: ")
    assert "UTF-8" in str(exc.value)


def test_read_text_utf8_is_fine(tmp_path):
    p = write(tmp_path, '# Café ☕\nPORT_BANNER="** Unauthorisé **"\n')
    assert load(p).PORT_BANNER == "** Unauthorisé **"


def test_read_text_size_limit(tmp_path):
    limit = cfgmod.MAX_CONFIG_BYTES
    assert limit == 1 << 20
    ok = write(tmp_path, b"#" * (limit - 1) + b"\n", "ok.conf")
    assert len(read_text(ok)) == limit
    big = write(tmp_path, b"#" * limit + b"\n", "big.conf")
    with pytest.raises(ConfigError) as exc:
        read_text(big)
    assert str(exc.value).startswith(f"{big}: ")
    assert str(limit) in str(exc.value)


def test_read_text_explicit_limit(tmp_path):
    p = write(tmp_path, "0123456789")
    assert read_text(p, limit=10) == "0123456789"
    with pytest.raises(ConfigError):
        read_text(p, limit=9)


# --- the real Debian file ---------------------------------------------------------------

def test_debian_portsentry_conf():
    if not DEBIAN_CONF.exists():
        assert not IN_CI, f"{DEBIAN_CONF} must exist under CI=true (portsentry is installed)"
        pytest.skip(f"{DEBIAN_CONF} not installed")
    cfg = load(str(DEBIAN_CONF))
    assert cfg.warnings == []
    assert cfg.path == str(DEBIAN_CONF)
    lines = DEBIAN_CONF.read_text().splitlines()
    set_keys = {}
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if s and not s.startswith("#"):
            set_keys[s.split("=", 1)[0].strip()] = n
    assert set_keys, "the Debian file sets nothing?"
    for key, n in set_keys.items():
        assert cfg.origin[key] == (str(DEBIAN_CONF), n)
    assert "TCP_PORTS" in set_keys and "UDP_PORTS" in set_keys
    assert cfg.TCP_PORTS and all(1 <= p <= 65535 for p in cfg.TCP_PORTS)
    assert cfg.UDP_PORTS and all(1 <= p <= 65535 for p in cfg.UDP_PORTS)
    assert cfg.BLOCK_TCP in (0, 1, 2) and cfg.BLOCK_UDP in (0, 1, 2)
    assert cfg.KILL_HOSTS_DENY.startswith("ALL: $TARGET$")
    if any(line.startswith("RESOLVE_HOST = ") for line in lines):
        assert cfg.RESOLVE_HOST == 0


# --- overrides --------------------------------------------------------------------------

def test_overrides_apply_after_file(tmp_path):
    p = write(tmp_path, 'SCAN_TRIGGER="1"\nNFT_TABLE="fromfile"\n')
    cfg = load(p, {"SCAN_TRIGGER": "5", "NFT_TABLE": None, "TCP_PORTS": "1-3",
                   "RUN_DIR": "/tmp/run", "BLOCK_TIMEOUT": 60})
    assert cfg.SCAN_TRIGGER == 5
    assert cfg.NFT_TABLE == "fromfile"  # None = not given
    assert cfg.TCP_PORTS == (1, 2, 3)
    assert cfg.RUN_DIR == "/tmp/run"
    assert cfg.BLOCK_TIMEOUT == 60


def test_overrides_on_defaults():
    cfg = load(None, {"STATE_DIR": "/srv/sw", "INTERFACES": "eth0,eth1"})
    assert cfg.STATE_DIR == "/srv/sw"
    assert cfg.INTERFACES == ("eth0", "eth1")
    assert cfg.SCAN_TRIGGER == 0


@pytest.mark.parametrize("key,raw", [("NFT_TABLE", "no-dashes"), ("BLOCK_TCP", "7"),
                                     ("TCP_PORTS", "0")])
def test_bad_override_is_config_error(key, raw):
    with pytest.raises(ConfigError) as exc:
        load(None, {key: raw})
    assert str(exc.value).startswith("command line: ")
    assert key in str(exc.value)


# --- fuzz -------------------------------------------------------------------------------

KEYS = [s.name for s in SETTINGS] + ["UNKNOWN_KEY", "x"]
VALUES = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"[0-9,\- ]{0,20}", fullmatch=True),
    st.integers(min_value=-10, max_value=10**12).map(str),
)


@st.composite
def config_lines(draw):
    key = draw(st.sampled_from(KEYS))
    value = draw(VALUES)
    quote = draw(st.sampled_from(['"', "", '"', "'"]))
    sp = draw(st.sampled_from(["", " ", "\t"]))
    tail = draw(st.sampled_from(["", " # c", '"', " junk"]))
    return f"{sp}{key}{sp}={sp}{quote}{value}{quote}{tail}"


def _parse_or_config_error(text):
    try:
        cfg = parse(text, "fuzz")
    except ConfigError as err:
        assert str(err).startswith("fuzz:")
        assert err.lineno is None or 1 <= err.lineno <= max(1, len(text.splitlines()))
        return None
    assert isinstance(cfg, Config)
    return cfg


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_fuzz_parse_arbitrary_text(text):
    _parse_or_config_error(text)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(config_lines(), st.text(max_size=40)), max_size=12))
def test_fuzz_parse_config_like_text(lines):
    cfg = _parse_or_config_error("\n".join(lines))
    if cfg is not None:
        for key, value in cfg.values.items():
            if BY_NAME[key].kind == "ports":
                assert all(1 <= p <= 65535 for p in value)
                assert list(value) == sorted(set(value))
            if BY_NAME[key].kind in ("block", "flag"):
                assert value in (0, 1, 2)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_load_arbitrary_bytes(data):
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "f.conf")
        with open(p, "wb") as fh:
            fh.write(data)
        try:
            cfg = load(p)
        except ConfigError as err:
            assert str(err).startswith(f"{p}:")
        else:
            assert isinstance(cfg, Config)
