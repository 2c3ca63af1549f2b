"""scanwatch lsof's command line: lsof's grouping, optional values and address syntax."""
import re

import pytest

from scanwatch.lsof.options import TCP_STATE_NUMBERS, UsageError, parse, parse_inet

V4 = 2   # AF_INET
V6 = 10  # AF_INET6


def pad(addr: bytes) -> bytes:
    return addr.ljust(16, b"\0")


def test_defaults():
    o = parse([])
    assert not (o.and_ or o.terse or o.inet or o.unix or o.numeric_host or o.numeric_port)
    assert o.tcp_info == "s" and o.warn and o.repeat is None and o.cmd_width == 9
    assert not o.process_selection and not o.file_selection


def test_grouped_flags_and_trailing_i():
    o = parse(["-nPi"])
    assert o.numeric_host and o.numeric_port and o.inet and not o.inet_specs
    o = parse(["-tai"])
    assert o.terse and o.and_ and o.inet
    assert not o.warn  # -t implies -w


@pytest.mark.parametrize("argv, version, specs", [
    (["-i"], None, 0),
    (["-i4"], 4, 0),
    (["-i", "4"], 4, 0),
    (["-i6"], 6, 0),
    (["-i4", "-i6"], None, 0),   # both versions = all
    (["-iTCP"], None, 1),
    (["-i", "TCP"], None, 1),
    (["-i", ":80"], None, 1),
    (["-i", ":80", "-i", "@127.0.0.1"], None, 2),
])
def test_inet_option_forms(argv, version, specs):
    o = parse(argv)
    assert o.inet and o.inet_version == version and len(o.inet_specs) == specs


def test_i_does_not_take_an_option_as_its_value():
    o = parse(["-i", "-n", "-p", "1"])
    assert o.inet and not o.inet_specs and o.numeric_host and o.pids == {1}


def test_i_takes_a_following_file_name_as_its_value_like_lsof():
    with pytest.raises(UsageError, match=r"unknown protocol name \(/etc/passwd\)"):
        parse(["-i", "/etc/passwd"])


def test_inet_spec_parts():
    s = parse_inet("4TCP@127.0.0.1:22,80-90")
    assert s.version == 4 and s.proto == "TCP" and s.host == "127.0.0.1"
    assert s.addrs == {(V4, pad(bytes([127, 0, 0, 1])))}
    assert s.ports == ((22, 22), (80, 90))
    s = parse_inet("udp@[::1]:53")
    assert s.proto == "UDP" and s.addrs == {(V6, pad(b"\0" * 15 + b"\1"))}
    s = parse_inet("6")
    assert s.version == 6 and s.proto is None and not s.ports and s.host is None
    assert parse_inet("UDPLITE").proto == "UDPLITE"


def test_inet_spec_service_names():
    s = parse_inet("TCP:ssh")
    assert (22, 22) in s.ports
    s = parse_inet(":1-ssh")
    assert s.ports == ((1, 22),)


@pytest.mark.parametrize("text, message", [
    ("FOO", "unknown protocol name"),
    ("TCP:nosuchservice", "unknown service"),
    ("@[::1", "unterminated IPv6"),
    ("4@[::1]", "IPv6 address for IPv4"),
    (":90-80", "port range ending less than start"),
    ("@no-such-host.invalid", "unknown host name"),
])
def test_inet_spec_errors(text, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        parse_inet(text)


def test_pids_users_commands():
    o = parse(["-p", "1,^2,3", "-u", "0,^nobody", "-c", "py", "-c", "^bash", "-c", "/x.*y/i"])
    assert o.pids == {1, 3} and o.xpids == {2}
    assert o.uids == {0} and len(o.xuids) == 1
    assert o.cmds[0] == "py" and o.xcmds == ["bash"]
    assert o.cmds[1].pattern == "x.*y" and o.cmds[1].flags & re.I
    assert o.process_selection


@pytest.mark.parametrize("argv, message", [
    (["-p", "12x"], "illegal process ID: 12x"),
    (["-u", "no-such-user-here"], "can't get UID for no-such-user-here"),
    (["-c", "sixteen-chars-xx"], "length (16) > what system provides (15)"),
    (["-d", "1,^2"], "mixed exclude and include"),
    (["-d", "5-3"], "FD range ending less than start"),
    (["-s", "UDP:Idle"], "no UDP state names available"),
    (["-s", "TCP:NOPE"], "unknown TCP state name"),
    (["-T", "z"], "unsupported TCP/TPI info selection"),
    (["-p"], "not followed by a value"),
    (["-R"], "unsupported option: -R"),
    (["-Fq"], "unknown field: q"),
    (["-K"], "unsupported option: -K"),
])
def test_usage_errors(argv, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        parse(argv)


def test_fd_lists():
    o = parse(["-d", "cwd,3,10-12"])
    assert o.fds == [("name", "cwd"), ("range", 3, 3), ("range", 10, 12)]
    o = parse(["-d", "^0-2"])
    assert o.xfds == [("range", 0, 2)] and o.file_selection


def test_tcp_info_and_states():
    assert parse(["-T"]).tcp_info == ""
    assert parse(["-Tqs"]).tcp_info == "qs"
    assert parse(["-T", "s"]).tcp_info == "s"
    o = parse(["-iTCP", "-sTCP:LISTEN,^ESTABLISHED"])
    assert o.tcp_states == {TCP_STATE_NUMBERS["LISTEN"]}
    assert o.xtcp_states == {TCP_STATE_NUMBERS["ESTABLISHED"]}
    assert parse(["-s", "TCP:listen"]).tcp_states == {10}
    with pytest.raises(UsageError, match="SIZE column"):   # -s alone: not a state list
        parse(["-s", "/etc/passwd"])


def test_repeat_forms():
    o = parse(["-r"])
    assert o.repeat == 15 and not o.repeat_until_empty
    assert parse(["-r", "1"]).repeat == 1
    o = parse(["+r2c3m%H"])
    assert (o.repeat, o.repeat_count, o.repeat_marker, o.repeat_until_empty) == (2, 3, "%H", True)
    o = parse(["-r", "/etc/passwd"])  # a non-number is the next argument, not the time
    assert o.repeat == 15 and o.files == ["/etc/passwd"]


def test_files_dirs_and_double_dash():
    o = parse(["+d", "/tmp", "+D", "/var", "--", "-n"])
    assert o.dirs == [("/tmp", False), ("/var", True)]
    assert o.files == ["-n"] and not o.numeric_host
    o = parse(["-n", "/etc/passwd", "-P"])   # as lsof: names end the options
    assert o.files == ["/etc/passwd", "-P"] and o.numeric_host and not o.numeric_port
    assert parse(["+c", "0"]).cmd_width == 0
    assert parse(["+c", "3"]).cmd_width == 7   # never narrower than "COMMAND"


def test_help_and_errors_through_main(capsys):
    from scanwatch.lsof.main import main
    assert main(["-h"]) == 0
    assert "-i i   select by IPv[46] address" in capsys.readouterr().out
    assert main(["-p", "x"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "illegal process ID: x" in err


def test_pid_included_and_excluded():
    with pytest.raises(UsageError, match="PID 7 has been included and excluded"):
        parse(["-p", "7", "-p", "^7"])


def test_field_option():
    from scanwatch.lsof.fields import DEFAULT, help_text
    o = parse(["-F"])
    assert o.fields == (DEFAULT | {"p"}, False, False) and o.tcp_info == "qs"
    assert parse(["-Fso"]).fields == (frozenset("pso"), False, True)   # offsets, no sizes
    assert parse(["-Fpcn"]).fields == (frozenset("pcn"), False, False)
    assert parse(["-F", "0n"]).fields == (frozenset("pn"), True, False)
    assert parse(["-F0"]).fields[:2] == (DEFAULT | {"p"}, True)
    assert parse(["-F", "-p", "1"]).pids == {1}          # -F does not take an option
    assert parse(["-F", "T", "-T"]).tcp_info == ""        # a later -T rules
    assert parse(["-Tq", "-F", "T"]).tcp_info == "qs"     # an earlier one does not
    assert parse(["-F", "?"]).field_help
    assert help_text().startswith("lsof:\tID    field description\n\t a    access")
    with pytest.raises(UsageError, match="unknown field: x"):
        parse(["-Fpx"])
    with pytest.raises(UsageError, match="-F and -t are mutually exclusive"):
        parse(["-F", "-t"])


def test_bare_inet_after_a_version_lists_both():
    assert parse(["-i6", "-i"]).inet_version is None
    assert parse(["-i", "-i6"]).inet_version == 6
    assert parse(["-i6", "-iTCP", "-i"]).inet_version == 6
