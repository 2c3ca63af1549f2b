"""`scanwatch lsof`: lsof's answers in lsof's exact format, from /proc and sock_diag.

Modules: options (lsof's argument syntax), sockdiag (lean NETLINK_SOCK_DIAG decoder),
nettables (/proc/net parsers: the inet fallback, unix, raw, packet), proc (the /proc walk),
select (which files a run lists), output (lsof's columns and escaping), names (hosts,
services, users), main (the command).
"""
