"""scanwatch: the seed's three tools, one wing each, over a few shared modules.

    sentry/   `scanwatch run|status|unblock|flush|config`: the port-scan detector (XDP + nftables)
    scan/     `scanwatch scan`: an nmap-style scanner
    lsof/     `scanwatch lsof`: lsof's answers from sock_diag and /proc

Shared: cli.py (the one click entry point, `scanwatch.cli:main`) and errors.py (the one
exception hierarchy the CLI turns into `error: ...` and an exit status). ARCHITECTURE.md at
the top of the repository is the map.
"""
