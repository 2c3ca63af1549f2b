"""The admin's side of a running sentry: the control socket (control), what `scanwatch
status` and /metrics show (status, metrics), and unblock/flush with or without a daemon
(offline).
"""
