"""Optional Prometheus endpoint (METRICS_LISTEN="127.0.0.1:9877"): text format 0.0.4."""
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ...errors import ConfigError
from ..kernel.contract import KIND_NAMES as KINDS


def parse_listen(text):
    """"HOST:PORT" (IPv6 as [::1]:PORT) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"METRICS_LISTEN: {text!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def _label(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(snap):
    """The exposition text for one snapshot (a dict the daemon builds; see Daemon.metrics)."""
    out = []

    def metric(name, kind, help_text, samples):
        out.append(f"# HELP scanwatch_{name} {help_text}")
        out.append(f"# TYPE scanwatch_{name} {kind}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            out.append(f"scanwatch_{name}{{{lab}}} {value}" if lab else f"scanwatch_{name} {value}")

    c = snap["counters"]
    metric("probes_total", "counter", "Scan probes seen by the XDP program, by PortSentry type.",
           [({"type": k}, c[k]) for k in KINDS])
    metric("tripwire_hits_total", "counter", "Probes to a watched port without a listener.",
           [({}, c["tripwire"])])
    metric("dropped_packets_total", "counter", "Packets dropped in XDP from blocked sources.",
           [({}, c["dropped"])])
    metric("kernel_blocks_total", "counter", "Sources the XDP program blocked itself.",
           [({}, c["kernel_blocks"])])
    metric("malformed_packets_total", "counter", "Packets with truncated headers.",
           [({}, c["malformed"])])
    metric("events_dropped_total", "counter",
           "Reports lost: ring buffer full, worker queue full, or summarised by LOG_RATE.",
           [({"where": "ringbuf"}, c["events_lost"]), ({"where": "queue"}, snap["queue_dropped"]),
            ({"where": "log_rate"}, snap["suppressed"])])
    metric("sources_tracked", "gauge", "Entries in the kernel's per-source map.",
           [({}, snap["map_fill"]["sources"][0])])
    metric("kernel_map_entries", "gauge", "Entries in use in the bounded kernel maps.",
           [({"map": m}, used) for m, (used, _cap) in snap["map_fill"].items()])
    metric("kernel_map_capacity", "gauge", "Capacity of the bounded kernel maps.",
           [({"map": m}, cap) for m, (_used, cap) in snap["map_fill"].items()])
    metric("blocks_active", "gauge", "Hosts blocked now.", [({}, snap["blocks_active"])])
    metric("blocks_total", "counter", "Blocks made since the daemon started.",
           [({}, snap["blocks_total"])])
    metric("capped_blocks_total", "counter", "Sources blocked in XDP only, without a log "
           "line or an nft element, because BLOCK_RATE was reached (a spoofed flood).",
           [({}, snap["capped_total"])])
    metric("process_cpu_seconds_total", "counter", "CPU time of the daemon process.",
           [({}, round(snap["cpu_seconds"], 3))])
    metric("up", "gauge", "1 while the daemon runs.", [({}, 1)])
    return "\n".join(out) + "\n"


class MetricsServer:
    def __init__(self, listen, snapshot):
        host, port = parse_listen(listen)
        snap_fn = snapshot

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = render(snap_fn()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # scrapes are not worth a log line
                pass

        server_cls = ThreadingHTTPServer
        if ":" in host:
            import socket
            server_cls = type("V6Server", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
        try:
            self.httpd = server_cls((host, port), Handler)
        except OSError as err:
            raise ConfigError(f"METRICS_LISTEN: cannot listen on {listen}: {err.strerror}") from err
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics",
                                       daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
