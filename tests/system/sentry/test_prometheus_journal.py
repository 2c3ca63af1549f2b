"""The admin's pipeline end to end, against a daemon nmap is scanning:
* Debian's real `prometheus` scrapes /metrics inside the target namespace, and its HTTP
  API answers for the scanwatch series, a rate that moved, and every expression of
  packaging/grafana-dashboard.json;
* the daemon runs as systemd would start it (INVOCATION_ID), with journald's native
  socket bind-mounted in a private mount namespace to a datagram socket this test
  reads: each report carries SCANWATCH_* fields and PortSentry's unchanged text."""
import json
import re
import shutil
import socket
import struct
import sys
import time
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
# fail2ban's filter.d/portsentry.conf failregex (Debian 12), <HOST> as fail2ban expands it
F2B = re.compile(r"^attackalert: .* from host: (?:\S+/)?(?P<host>[0-9a-fA-F.:]+) to (?:TCP|UDP) port: \d+")


def parse_native(data):
    """journald's native protocol: KEY=value lines, or KEY\\n + le64 size + bytes + \\n."""
    fields, i = {}, 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            fields[k.decode()] = v.decode()
            i = nl + 1
        else:
            (size,) = struct.unpack_from("<Q", data, nl + 1)
            start = nl + 9
            fields[line.decode()] = data[start:start + size].decode()
            i = start + size + 1
    return fields


def test_prometheus_scrapes_and_journal_fields(lab, tmp_path):
    lab.wait_reachable()
    jdir = tmp_path / "systemd"
    (jdir / "journal").mkdir(parents=True)
    jsock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    jsock.bind(str(jdir / "journal" / "socket"))
    jsock.settimeout(0.2)
    # /run/systemd may not exist on a machine without systemd running: the daemon gets
    # an empty private /run with only our journal directory in it (its RUN_DIR is a
    # temp dir), and the host's /run is left as it is
    wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs tmpfs /run && mkdir /run/systemd && mount --bind "$0" /run/systemd'
            ' && exec "$@"', str(jdir)]
    conf = 'METRICS_LISTEN="127.0.0.1:9877"\n'
    with SentryProcess(lab, conf=conf, wrap=wrap, env={"INVOCATION_ID": "0" * 32}) as sw:
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
            assert value('scanwatch_kernel_map_capacity{map="sources"}') == 65536
            # every dashboard expression is valid PromQL that Prometheus evaluates
            dash = json.loads(DASH.read_text())
            for panel in dash["panels"]:
                for t in panel["targets"]:
                    expr = (t["expr"].replace("$__rate_interval", "10s")
                            .replace("$__range", "1m").replace("$instance", ".*"))
                    r = query(expr)
                    assert r and r["status"] == "success", (panel["title"], expr, r)
            # the journal: the scan report and the block, with their fields
            got = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(
                    f.get("SCANWATCH_ACTION") == "block" and "blocked via nftables" in
                    f["MESSAGE"] for f in got):
                try:
                    got.append(parse_native(jsock.recv(1 << 16)))
                except socket.timeout:
                    continue
            alerts = [f for f in got if f.get("SCANWATCH_SRC") == lab.scanner_ip4
                      and F2B.match(f["MESSAGE"])]
            assert alerts, got
            a = alerts[0]
            assert a["SCANWATCH_TYPE"] == "SYN/Normal" and a["SCANWATCH_PORT"].isdigit()
            assert a["SCANWATCH_ACTION"] == "block" and a["SYSLOG_IDENTIFIER"] == "scanwatch"
            assert a["PRIORITY"] == "5" and a["SYSLOG_FACILITY"] == "3"
            assert F2B.match(a["MESSAGE"]).group("host") == lab.scanner_ip4
            assert a["MESSAGE"] in sw.log()  # the same text as on stderr
            assert any(f["MESSAGE"].startswith(f"attackalert: Host {lab.scanner_ip4} has been "
                                               "blocked via nftables") for f in got)
        finally:
            prom.terminate()
            prom.wait(timeout=15)
            prom_log.close()
            jsock.close()
