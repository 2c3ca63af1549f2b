"""`scanwatch lsof ARGS...`: lsof's options, lsof's listing, lsof's exit status."""
from __future__ import annotations

import sys

USAGE = """\
usage: scanwatch lsof [-?abhlnPtUvVw] [+|-c c] [+|-d s] [+D D] [-F [f]] [-i [i]]
                      [-p s] [+|-r [t]] [-s [p:s]] [-T [t]] [-u s] [--] [names]
lsof's listing from /proc and netlink sock_diag; defaults in parentheses.
  -?|-h list help          -a AND selections (OR)     -t terse listing (PIDs only)
  -c c  cmd c ^c /c/[bix]  +c w  COMMAND width (9)    +d s  dir s files
  -d s  select by FD set   +D D  dir D tree           -l list UID numbers
  -n no host names         -P no port names           -U select Unix sockets
  -T disable TCP/TPI info  -T qs TCP/TPI Q,St (s) info
  -v list version info     -V verbose search          +|-w  Warnings (+)
  -F [f] select fields; -F ? for help
  -- end option scan
  -i i   select by IPv[46] address: [46][proto][@host|addr][:svc_list|port_list]
  -p s   exclude(^)|select PIDs
  -u s   exclude(^)|select login|UID set s
  -s p:s  exclude(^)|select protocol (p = TCP) states by name(s)
  +|-r [t] repeat every t seconds (15); + until no files, - forever
  names  select named files or files on named file systems
Exit status 1 when a searched item (PID, command, -i address, name) found nothing.
"""

MARKER = "=======\n"


def _version() -> str:
    try:
        from importlib.metadata import version
        ours = version("scanwatch")
    except Exception:
        ours = "unknown"
    return (f"scanwatch lsof (scanwatch {ours})\n"
            "    lists open files in the format of lsof 4.95\n"
            "    sources: /proc/PID/{comm,cwd,root,exe,maps,fd,fdinfo}, /proc/locks,\n"
            "             netlink NETLINK_SOCK_DIAG (inet_diag; /proc/net/{tcp,udp,udplite}[6]"
            " when unavailable),\n"
            "             /proc/net/{unix,raw,raw6,packet}\n")


class _Warner:
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.seen: set = set()

    def __call__(self, msg: str) -> None:
        if self.enabled and msg not in self.seen:
            self.seen.add(msg)
            sys.stderr.write(f"lsof: {msg}\n")


def _error(msg: str) -> int:
    sys.stderr.write(f"error: lsof: {msg} (see `scanwatch lsof -h`)\n")
    return 1


def _listing(opts, warn):
    import gc
    from .select import Selector
    enabled = gc.isenabled()
    gc.disable()  # a listing makes many small tuples and no cycles: no collections needed
    try:
        return Selector(opts, warn).run()
    finally:
        if enabled:
            gc.enable()


def _text(opts, listing) -> str:
    if opts.fields is not None:
        from .fields import Writer
        return Writer(opts, listing.tables).render(listing.groups)
    if opts.terse:
        return "".join(f"{pid}\n" for pid in listing.pids)
    from .output import render
    tasks = any(head[2] for head, _ in listing.groups)
    return render(listing.groups, tasks=tasks, cmd_limit=opts.cmd_width)


def main(argv: list[str]) -> int:
    from .options import UsageError, parse
    try:
        opts = parse(argv)
    except UsageError as exc:
        return _error(str(exc))
    if opts.help:
        sys.stdout.write(USAGE)
        return 0
    if opts.field_help:
        from .fields import help_text
        sys.stderr.write(help_text())
        return 0
    if opts.fields is not None:
        # names without the (STATE) suffix: the T field carries what -T asks for
        opts.field_tcp_info, opts.tcp_info = opts.tcp_info, ""
    if opts.version:
        sys.stderr.write(_version())
        return 0
    warn = _Warner(opts.warn)
    out = sys.stdout
    try:
        if opts.repeat is None:
            listing = _listing(opts, warn)
            out.write(_text(opts, listing))
            out.flush()
            if opts.verbose:
                for item in listing.missing:
                    sys.stderr.write(f"lsof: {item}\n")
            return listing.status
        return _repeat(opts, warn, out)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return 1


def _repeat(opts, warn, out) -> int:
    """-r: list, mark the end, sleep, again; until interrupted (-r), until a listing is
    empty (+r), or for the c<N> count. Exit status as lsof: 0 when anything was ever
    listed, 1 otherwise."""
    import time
    ever = False
    count = 0
    while True:
        listing = _listing(opts, warn)
        listed = bool(listing.groups or listing.pids)
        ever = ever or listed
        if opts.repeat_until_empty and not listed:
            return 0 if ever else 1
        marker = MARKER
        if opts.repeat_marker is not None:
            marker = time.strftime(opts.repeat_marker) + "\n"
        if opts.fields is not None:
            from .fields import Writer
            marker = Writer(opts, None).marker(marker[:-1] if opts.repeat_marker else "")
        out.write(_text(opts, listing) + marker)
        out.flush()
        count += 1
        if opts.repeat_count is not None and count >= opts.repeat_count:
            return 0 if ever else 1
        time.sleep(opts.repeat)


def _quiet_stdout() -> None:
    import os
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
