"""The admin's side of a running sentry: the control socket (control), what `scanwatch
status` and /metrics show (status, metrics), unblock/flush with or without a daemon
(offline), and the views for people: `scanwatch top` (top, live over the control socket)
and `scanwatch report` (summary folds the records, charts draws them). rich and matplotlib
are imported only by top and charts, so the daemon never loads them.
"""
