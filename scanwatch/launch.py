"""The `scanwatch` executable: `lsof` and `scan` go straight to their own parsers (they
take the C tools' options, not click's), so their start costs neither click nor the
sentry's modules; the plain forms of `status` take a fast path that skips click too;
everything else is the click CLI (scanwatch.cli)."""
import sys

# Command -> module with main(argv) -> exit status. Kept import-free on purpose: a test
# (tests/unit/test_startup.py) fails when these paths pull a heavy module back in.
DIRECT = {"lsof": "scanwatch.lsof.main", "scan": "scanwatch.scan.main",
          "status": "scanwatch.sentry.admin.statusview"}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DIRECT and "_SCANWATCH_COMPLETE" not in sys.modules["os"].environ:
        __import__(DIRECT[argv[0]])
        code = sys.modules[DIRECT[argv[0]]].main(argv[1:])
        if code is not None:  # None: a form the fast path leaves to click
            sys.exit(code)
    from .cli import main as cli_main
    cli_main(argv)
