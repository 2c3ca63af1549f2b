"""Responders: what a block or a report does once policy has decided.

firewall is the only module that talks to nftables; hostsdeny edits only scanwatch's own
lines; actions runs PortSentry's KILL_* in its order; report writes the log lines and
records (records: syslog, history, blocked files, events.jsonl); resolver does reverse DNS
that can never stall detection.
"""
