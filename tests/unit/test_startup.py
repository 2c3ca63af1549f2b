"""Start-up stays lean: `scanwatch lsof`, `scanwatch scan` and `scanwatch status` import
only what they need. Each command runs through the real entry point (scanwatch.launch) in
a fresh interpreter, which then reports sys.modules; a heavy import that sneaks back into
the start path fails here. bench/startup.py measures the time these imports cost."""
import json
import subprocess
import sys

PROBE = r'''
import json, os, sys
sys.argv = ["scanwatch"] + json.loads(sys.argv[1])
out = os.dup(2)
try:
    from scanwatch.launch import main
    main()
except SystemExit:
    pass
os.write(out, ("\nMODULES " + json.dumps(sorted(sys.modules)) + "\n").encode())
'''

# What the C tools' doubles must never pay for: click and the sentry (config, defaults,
# control, daemon...), and the standard modules that once came with them.
SLOW_STDLIB = {"inspect", "pathlib", "xml.sax", "urllib.request", "http.client", "email",
               "asyncio", "subprocess", "uuid", "datetime", "tokenize", "ast", "typing",
               "importlib.metadata", "zipfile", "tempfile", "logging"}
THIRD_PARTY = {"click", "bcc", "pyroute2", "psutil", "nftables", "prometheus_client"}
SENTRY = {"config", "defaults", "control", "daemon", "cli", "state", "policy", "firewall",
          "loader", "kernel", "program", "status", "metrics", "records"}


def _modules(*args: str) -> set[str]:
    res = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(args))],
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    line = [ln for ln in res.stderr.splitlines() if ln.startswith("MODULES ")]
    assert line, res.stderr
    return set(json.loads(line[-1][len("MODULES "):]))


def _heavy(mods: set[str], allowed: set[str] = frozenset()) -> set[str]:
    bad = set()
    for m in mods:
        top = m.split(".")[0]
        if m in allowed or top in allowed:
            continue
        if top in THIRD_PARTY or m in SLOW_STDLIB or top in SLOW_STDLIB:
            bad.add(m)
        elif top == "scanwatch" and set(m.split(".")[1:]) & SENTRY:
            bad.add(m)
    return bad


def test_lsof_listing_imports_nothing_heavy():
    mods = _modules("lsof", "-n", "-P", "-i", "-U")
    assert "scanwatch.lsof.select" in mods          # it really listed
    assert _heavy(mods) == set()
    assert "dataclasses" not in mods and "socket" not in mods   # _socket is enough


def test_lsof_help_and_usage_errors_stay_lean():
    assert _heavy(_modules("lsof", "-h")) == set()
    assert _heavy(_modules("lsof", "-Q")) == set()


def test_scan_help_imports_no_scanner_module():
    mods = _modules("scan", "-h")
    assert "scanwatch.scan.options" in mods
    # options are dataclasses, and dataclasses needs inspect (with ast and tokenize)
    assert _heavy(mods, allowed={"inspect", "ast", "tokenize"}) == set()
    assert not {"scanwatch.scan.run", "scanwatch.scan.net", "scanwatch.scan.xmlout",
                "scanwatch.scan.report", "socket"} & mods


def test_scan_without_xml_output_skips_the_xml_writer():
    mods = _modules("scan", "-sL", "-n", "127.0.0.1", "-oN", "/dev/null")  # -sL: no packet
    assert "scanwatch.scan.report" in mods
    assert "scanwatch.scan.xmlout" not in mods and "xml.sax" not in mods


def test_status_loads_the_client_not_the_daemon():
    mods = _modules("status", "--run-dir", "/nonexistent/scanwatch-test")
    assert "scanwatch.sentry.admin.statusview" in mods and "scanwatch.sentry.config" in mods
    # the plain forms skip click (issue 18: status under 40 ms); config needs dataclasses
    client = {"scanwatch.sentry.config", "scanwatch.sentry.defaults",
              "scanwatch.sentry.admin.control"}
    assert _heavy(mods, allowed={"inspect", "ast", "tokenize"} | client) == set()
    assert "scanwatch.cli" not in _modules("status", "--json", "--run-dir", "/nonexistent/x")
    assert "scanwatch.cli" in _modules("status", "--bogus")   # click explains mistakes
    daemon_side = {m for m in mods if m.split(".")[0] in {"bcc", "pyroute2", "nftables"}
                   or m.split(".")[-1] in {"daemon", "loader", "firewall", "program", "kernel",
                                            "policy", "state", "metrics"}}
    assert daemon_side == set()


LAUNCH = [sys.executable, "-c", "from scanwatch.launch import main; main()"]
CLICK = [sys.executable, "-c", "from scanwatch.cli import main; main()"]


def test_direct_paths_answer_as_the_click_cli_does():
    for args in (["lsof", "-h"], ["lsof", "-Q"], ["scan", "-h"], ["scan", "--bogus"],
                 ["-h"], ["lsof", "-F", "?"], ["--debug", "lsof", "-h"],
                 ["status", "--run-dir", "/nonexistent/scanwatch-x"],
                 ["status", "--json", "--run-dir", "/nonexistent/scanwatch-x"],
                 ["status", "-c", "/nonexistent/scanwatch.conf"], ["status", "--bogus"],
                 ["status", "-h"], ["status", "--run-dir"]):
        direct = subprocess.run(LAUNCH + args, capture_output=True, text=True, timeout=60)
        click = subprocess.run(CLICK + args, capture_output=True, text=True, timeout=60)
        assert (direct.returncode, direct.stdout, direct.stderr) == \
            (click.returncode, click.stdout, click.stderr), args
        assert direct.stdout or direct.stderr
