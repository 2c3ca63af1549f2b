"""The sentry: PortSentry's detector rebuilt on an XDP program and nftables.

Entry points: daemon.Daemon (`scanwatch run`), admin.status / admin.control (`scanwatch
status`), admin.offline (`unblock`, `flush`), config and defaults (`scanwatch config`).

Data flows top to bottom:
    kernel/    the kernel boundary: contract (mirror of bpf/scanwatch.h), loader (the only bcc
               import, in a child), bpfsys (bpf(2), ring buffer, XDP attach), program (typed
               records out of the maps and rings)
    policy     pure decisions over those records (injected clock); state keeps the block table
    respond/   what a decision does: firewall (the only nftables module), hostsdeny, actions
               (KILL_*), report (log lines and records), records (PortSentry's files), resolver
    admin/     what the admin sees and asks: control socket, status, /metrics, offline edits,
               `top` (live view) and `report` (summary, charts)
Around them: config/defaults (settings), model (the typed records), ignore and netinfo (who is
never blocked), classic (PortSentry's -tcp/-udp listeners), daemon (the wiring).
"""
