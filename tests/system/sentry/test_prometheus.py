"""Debian's real `prometheus` scrapes /metrics inside the target namespace of a daemon
nmap is scanning; its HTTP API answers for the scanwatch series, a rate that moved, and
every expression of packaging/grafana-dashboard.json, each with data. (journald:
test_journald.py.)"""
import json
import shutil
import sys
import urllib.parse
from pathlib import Path

import pytest

from sentryproc import SentryProcess, nmap, wait_for

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None,
                                reason="prometheus not installed (scripts/setup.sh)")
DASH = Path(__file__).resolve().parents[3] / "packaging" / "grafana-dashboard.json"
QUERY = ("import sys,urllib.request\n"
         "print(urllib.request.urlopen('http://127.0.0.1:19090/api/v1/' + sys.argv[1],"
         " timeout=5).read().decode())")


def test_prometheus_scrapes_a_scanned_daemon(lab, tmp_path):
    lab.wait_reachable()
    conf = 'METRICS_LISTEN="127.0.0.1:9877"\n'
    with SentryProcess(lab, conf=conf) as sw:
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                       "scrape_configs:\n  - job_name: scanwatch\n    static_configs:\n"
                       "      - targets: ['127.0.0.1:9877']\n")
        prom_log = open(tmp_path / "prometheus.log", "w")
        prom = lab.popen(lab.target_ns, "prometheus", f"--config.file={cfg}",
                         f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                         "--web.listen-address=127.0.0.1:19090", stdout=prom_log,
                         stderr=prom_log)
        try:
            def api(path):
                res = lab.run(lab.target_ns, sys.executable, "-c", QUERY, path, timeout=20)
                return json.loads(res.stdout) if res.returncode == 0 else None

            def query(expr):
                return api("query?" + urllib.parse.urlencode({"query": expr}))

            def value(expr):
                r = query(expr)
                res = r and r["status"] == "success" and r["data"]["result"]
                return float(res[0]["value"][1]) if res else None

            wait_for(lambda: value("scanwatch_up") == 1, 60, "prometheus scraped scanwatch_up")
            nmap(lab, "-sS", "-p", "1-40")
            sw.wait_block_event()
            wait_for(lambda: (value('rate(scanwatch_probes_total{type="SYN/Normal"}[10s])')
                              or 0) > 0, 30, "a probe rate > 0 in prometheus")
            wait_for(lambda: value("scanwatch_blocks_total") == 1, 30, "blocks_total == 1")
            assert value("scanwatch_blocks_active") == 1
            # issue 13: the report's evidence strength (nmap's host answers the challenge)
            wait_for(lambda: value('scanwatch_reports_by_evidence_total{evidence="proven"}')
                     == 1, 30, "one proven report in prometheus")
            assert value('scanwatch_kernel_map_capacity{map="sources"}') == 65536
            # every dashboard expression is valid PromQL that Prometheus evaluates
            dash = json.loads(DASH.read_text())
            for panel in dash["panels"]:
                for t in panel["targets"]:
                    expr = (t["expr"].replace("$__rate_interval", "10s")
                            .replace("$__range", "1m").replace("$instance", ".*"))
                    r = query(expr)
                    assert r and r["status"] == "success", (panel["title"], expr, r)
                    # the fleet panels have data only with FLEET_URL (test_fleet_share
                    # scrapes those series from a fleet member)
                    if "scanwatch_fleet_" not in expr:
                        assert r["data"]["result"], (panel["title"], expr, "no data")
        finally:
            prom.terminate()
            prom.wait(timeout=15)
            prom_log.close()
