"""`scanwatch lsof`: lsof's answers in lsof's exact format, from /proc and sock_diag.

Entry point: main.main(argv), called by cli.py with the raw arguments (lsof's grammar).

Modules: main (the command), options (lsof's argument syntax), select (which processes
and files a run lists), files (one open file's cells), targets (file-name arguments,
+d/+D), proc (reading /proc), sockdiag (lean NETLINK_SOCK_DIAG decoder), nettables
(/proc/net parsers: the inet fallback, unix, raw, packet), parallel (half the walk in a
forked child), output (lsof's columns and escaping), names (hosts, services, users).
"""
