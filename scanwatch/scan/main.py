"""`scanwatch scan ARGS...`: an nmap-style scanner (options, states and output as nmap's).

main() parses the command line and answers -h and -V itself; the scan (scanwatch.scan.run,
with the packet, port and report modules) is imported only for a scan, so that help
starts as fast as the interpreter allows.
"""

from __future__ import annotations

import sys

from .options import USAGE, UsageError, parse_args


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 1


def main(argv: list[str]) -> int:
    try:
        return _main(list(argv))
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:   # one line, as every scanwatch error; --debug shows the trace
        if "--debug" in argv:
            raise
        return _fail(f"{type(exc).__name__}: {exc}")


def _main(argv: list[str]) -> int:
    try:
        opts = parse_args(argv)
    except UsageError as exc:
        return _fail(f"{exc} (see `scanwatch scan -h`)")
    if opts.help:
        sys.stdout.write(USAGE)
        return 0
    if opts.show_version:
        from .output import NAME, VERSION
        print(f"{NAME} scan version {VERSION} (nmap-style scanner; nmap 7 options and output)")
        return 0
    from .run import scan
    return scan(opts, argv)
