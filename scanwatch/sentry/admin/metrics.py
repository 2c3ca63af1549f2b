"""Optional Prometheus endpoint (METRICS_LISTEN="127.0.0.1:9877"), served by
prometheus_client: a custom collector turns each scrape into one daemon snapshot.
prometheus_client is imported only when the endpoint is configured or rendered."""
from ...errors import ConfigError
from ..kernel.contract import KIND_NAMES as KINDS


def parse_listen(text):
    """"HOST:PORT" (IPv6 as [::1]:PORT) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"METRICS_LISTEN: {text!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


class SnapshotCollector:
    """prometheus_client collector: every scrape reads one fresh daemon snapshot (a dict
    the daemon builds; see status.metrics), so no metric object is kept in step."""

    def __init__(self, snapshot):
        self.snapshot = snapshot

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        snap = self.snapshot()
        c = snap["counters"]

        def family(cls, name, help_text, samples, labels=()):
            fam = cls(f"scanwatch_{name}", help_text, labels=list(labels))
            for values, value in samples:
                fam.add_metric(list(values), value)
            return fam

        counter = lambda *a, **k: family(CounterMetricFamily, *a, **k)  # noqa: E731
        gauge = lambda *a, **k: family(GaugeMetricFamily, *a, **k)  # noqa: E731
        yield counter("probes_total", "Scan probes seen by the XDP program, by PortSentry type.",
                      [((k,), c.get(k, 0)) for k in KINDS], labels=("type",))
        yield counter("tripwire_hits_total", "Probes to a watched port without a listener.",
                      [((), c["tripwire"])])
        yield counter("dropped_packets_total", "Packets dropped in XDP from blocked sources.",
                      [((), c["dropped"])])
        yield counter("kernel_blocks_total", "Sources the XDP program blocked itself.",
                      [((), c["kernel_blocks"])])
        yield counter("malformed_packets_total", "Packets with truncated headers.",
                      [((), c["malformed"])])
        # issue 13: the host's stack drops these unanswered; they never count toward a block
        yield counter("badsum_probes_total", "Probes to a port without a socket with a bad "
                      "TCP/UDP checksum (nmap --badsum): counted, never blocked.",
                      [((), c.get("badsum", 0))])
        yield counter("events_dropped_total",
                      "Reports lost: ring buffer full, worker queue full, or summarised by "
                      "LOG_RATE.",
                      [(("ringbuf",), c["events_lost"]), (("queue",), snap["queue_dropped"]),
                       (("log_rate",), snap["suppressed"])], labels=("where",))
        yield gauge("sources_tracked", "Entries in the kernel's per-source map.",
                    [((), snap["map_fill"]["sources"][0])])
        yield gauge("kernel_map_entries", "Entries in use in the bounded kernel maps.",
                    [((m,), used) for m, (used, _cap) in snap["map_fill"].items()],
                    labels=("map",))
        yield gauge("kernel_map_capacity", "Capacity of the bounded kernel maps.",
                    [((m,), cap) for m, (_used, cap) in snap["map_fill"].items()],
                    labels=("map",))
        yield gauge("blocks_active", "Hosts blocked now.", [((), snap["blocks_active"])])
        yield counter("blocks_total", "Blocks made since the daemon started.",
                      [((), snap["blocks_total"])])
        yield counter("capped_blocks_total", "Sources blocked in XDP only, without a log "
                      "line or an nft element, because BLOCK_RATE was reached (a spoofed "
                      "flood).", [((), snap["capped_total"])])
        spoof = snap.get("spoof")
        if spoof:  # issue 13
            yield counter("reports_by_evidence_total", "Scan reports by the strength of their "
                          "evidence that the source address is real.",
                          [((k,), v) for k, v in spoof["evidence"].items()], labels=("evidence",))
            yield counter("challenges_sent_total", "Return-routability SYN-ACKs sent.",
                          [((), spoof["challenges_sent"])])
            yield counter("challenges_answered_total", "Challenges answered by a RST echoing "
                          "the cookie.", [((), spoof["challenges_answered"])])
        proc = snap["process"]
        yield counter("process_cpu_seconds_total", "CPU time of the daemon process.",
                      [((), proc["cpu_seconds"])])
        yield gauge("process_resident_memory_bytes", "Resident memory of the daemon process.",
                    [((), proc["rss_bytes"])])
        yield gauge("process_open_fds", "Open file descriptors of the daemon process.",
                    [((), proc["open_fds"])])
        yield gauge("process_threads", "Threads of the daemon process.",
                    [((), proc["threads"])])
        yield gauge("up", "1 while the daemon runs.", [((), 1)])
        fl = snap.get("fleet")
        if fl:  # only with FLEET_URL: a single host has no fleet series
            yield gauge("fleet_connected", "1 while the fleet's Redis answers.",
                        [((), 1 if fl["connected"] else 0)])
            if fl.get("lag_ms") is not None:
                yield gauge("fleet_lag_seconds", "Age of the last fleet entry when it was "
                            "read (its publisher's clock to ours).",
                            [((), fl["lag_ms"] / 1000)])
            yield gauge("fleet_queued", "Publications waiting for Redis (on disk).",
                        [((), fl["queued"])])
            yield counter("fleet_entries_total", "Fleet stream entries: sent by this host, "
                          "received from others, applied (nft and XDP), capped (XDP only, "
                          "past BLOCK_RATE), refused (invalid or protected), spared "
                          "(possibly spoofed: XDP only or a line, per EVIDENCE_RESPONSE).",
                          [((k,), fl.get(k, 0)) for k in ("sent", "received", "applied",
                                                          "capped", "refused", "spared")],
                          labels=("what",))
            yield counter("fleet_sweeps_total", "Horizontal scans this host found in the "
                          "fleet's sightings.", [((), fl.get("sweeps", 0))])


def render(snap):
    """The exposition text for one snapshot (what a scrape of /metrics returns)."""
    from prometheus_client import CollectorRegistry, generate_latest
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: snap))
    return generate_latest(registry).decode()


class MetricsServer:
    """prometheus_client's own HTTP server over a registry holding only our collector
    (no default process/platform collectors: the series are scanwatch's)."""

    def __init__(self, listen, snapshot):
        from prometheus_client import CollectorRegistry
        self.host, self.port = parse_listen(listen)
        self.listen = listen
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SnapshotCollector(snapshot))
        self.httpd = self.thread = None

    def start(self):
        from prometheus_client import start_http_server
        try:
            self.httpd, self.thread = start_http_server(self.port, self.host, self.registry)
        except OSError as err:
            raise ConfigError(f"METRICS_LISTEN: cannot listen on {self.listen}: "
                              f"{err.strerror}") from err

    def stop(self):
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
