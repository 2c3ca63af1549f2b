"""/metrics through prometheus_client: every series name kept, served over HTTP."""
import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scanwatch.sentry.admin import metrics
from scanwatch.errors import ConfigError

SNAP = {"counters": {"SYN/Normal": 12, "FIN": 1, "NULL": 0, "XMAS": 2, "Unknown Type": 0,
                     "UDP": 3, "ACK/Window": 0, "Maimon": 7, "Tiny Fragment": 0, "tripwire": 4, "dropped": 50, "kernel_blocks": 1,
                     "malformed": 0, "events_lost": 6, "badsum": 9},
        "map_fill": {"sources": (7, 65536), "blocked": (1, 8192)},
        "blocks_active": 1, "blocks_total": 2, "capped_total": 0, "queue_dropped": 0,
        "suppressed": 5, "process": {"cpu_seconds": 1.234, "rss_bytes": 52428800,
                                     "open_fds": 17, "threads": 6},
        "fleet": {"connected": True, "lag_ms": 12.5, "queued": 3, "sent": 4, "received": 9,
                  "applied": 7, "capped": 1, "refused": 2, "sweeps": 1}}

SERIES = {
    ("scanwatch_probes_total", (("type", "SYN/Normal"),)): 12,
    ("scanwatch_probes_total", (("type", "UDP"),)): 3,
    ("scanwatch_probes_total", (("type", "Maimon"),)): 7,
    ("scanwatch_tripwire_hits_total", ()): 4,
    ("scanwatch_dropped_packets_total", ()): 50,
    ("scanwatch_kernel_blocks_total", ()): 1,
    ("scanwatch_malformed_packets_total", ()): 0,
    ("scanwatch_badsum_probes_total", ()): 9,
    ("scanwatch_events_dropped_total", (("where", "ringbuf"),)): 6,
    ("scanwatch_events_dropped_total", (("where", "log_rate"),)): 5,
    ("scanwatch_sources_tracked", ()): 7,
    ("scanwatch_kernel_map_entries", (("map", "blocked"),)): 1,
    ("scanwatch_kernel_map_capacity", (("map", "sources"),)): 65536,
    ("scanwatch_blocks_active", ()): 1,
    ("scanwatch_blocks_total", ()): 2,
    ("scanwatch_capped_blocks_total", ()): 0,
    ("scanwatch_process_cpu_seconds_total", ()): 1.234,
    ("scanwatch_process_resident_memory_bytes", ()): 52428800,
    ("scanwatch_process_open_fds", ()): 17,
    ("scanwatch_process_threads", ()): 6,
    ("scanwatch_up", ()): 1,
    ("scanwatch_fleet_connected", ()): 1,
    ("scanwatch_fleet_lag_seconds", ()): 0.0125,
    ("scanwatch_fleet_queued", ()): 3,
    ("scanwatch_fleet_entries_total", (("what", "received"),)): 9,
    ("scanwatch_fleet_entries_total", (("what", "capped"),)): 1,
    ("scanwatch_fleet_entries_total", (("what", "refused"),)): 2,
    ("scanwatch_fleet_sweeps_total", ()): 1,
}


def samples(text):
    fams = list(text_string_to_metric_families(text))
    return fams, {(s.name, tuple(sorted(s.labels.items()))): s.value
                  for f in fams for s in f.samples}


def test_every_series_and_type():
    fams, got = samples(metrics.render(SNAP))
    for key, value in SERIES.items():
        assert got[key] == pytest.approx(value), key
    kinds = {f.name: f.type for f in fams}
    assert kinds["scanwatch_probes"] == "counter" and kinds["scanwatch_blocks_active"] == "gauge"
    assert not [n for n in got if not n[0].startswith("scanwatch_")]  # no default collectors


def test_no_fleet_series_without_a_fleet_and_no_lag_before_an_entry():
    _, got = samples(metrics.render(dict(SNAP, fleet=None)))
    assert not [n for n in got if n[0].startswith("scanwatch_fleet_")]
    _, got = samples(metrics.render(dict(SNAP, fleet=dict(SNAP["fleet"], lag_ms=None,
                                                           connected=False))))
    assert ("scanwatch_fleet_lag_seconds", ()) not in got
    assert got[("scanwatch_fleet_connected", ())] == 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_served_over_http_with_a_fresh_snapshot_per_scrape():
    calls = []
    port = free_port()
    server = metrics.MetricsServer(f"127.0.0.1:{port}", lambda: calls.append(1) or SNAP)
    server.start()
    try:
        for _ in range(2):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                assert r.headers["Content-Type"].startswith("text/plain")
                _, got = samples(r.read().decode())
            assert got[("scanwatch_blocks_total", ())] == 2
        assert len(calls) == 2
        with pytest.raises(ConfigError, match="cannot listen"):
            metrics.MetricsServer(f"127.0.0.1:{port}", lambda: SNAP).start()
    finally:
        server.stop()
