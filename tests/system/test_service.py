"""Running as a service: Prometheus metrics and the group-readable control socket."""
import os
import stat
import sys

from sentryproc import SentryProcess, nmap

SCRAPE = ("import urllib.request\n"
          "print(urllib.request.urlopen('http://127.0.0.1:9877/metrics', timeout=5).read().decode())")


def test_metrics_endpoint_scraped_and_parsed(lab):
    from prometheus_client.parser import text_string_to_metric_families
    lab.wait_reachable()
    with SentryProcess(lab, conf='METRICS_LISTEN="127.0.0.1:9877"\n') as sw:
        nmap(lab, "-sS", "-p", "1-40")
        sw.wait_block_event()
        res = lab.run(lab.target_ns, sys.executable, "-c", SCRAPE)
        assert res.returncode == 0, res.stderr
        families = {f.name: f for f in text_string_to_metric_families(res.stdout)}
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in families.values() for s in f.samples}
        assert samples[("scanwatch_probes_total", (("type", "SYN/Normal"),))] >= 1
        assert samples[("scanwatch_blocks_active", ())] == 1
        assert samples[("scanwatch_blocks_total", ())] == 1
        assert samples[("scanwatch_capped_blocks_total", ())] == 0
        assert samples[("scanwatch_kernel_blocks_total", ())] == 1
        assert samples[("scanwatch_sources_tracked", ())] >= 1
        assert samples[("scanwatch_kernel_map_capacity", (("map", "sources"),))] == 65536
        assert samples[("scanwatch_process_cpu_seconds_total", ())] > 0
        assert samples[("scanwatch_process_resident_memory_bytes", ())] > 20 * 2**20
        assert samples[("scanwatch_process_threads", ())] >= 3
        assert samples[("scanwatch_process_open_fds", ())] >= 5
        assert ("scanwatch_events_dropped_total", (("where", "ringbuf"),)) in samples
        assert families["scanwatch_probes"].type == "counter"
        # Only this namespace's loopback: nothing listens on the veth address.
        res = lab.run(lab.scanner_ns, sys.executable, "-c",
                      SCRAPE.replace("127.0.0.1", lab.target_ip4))
        assert res.returncode != 0


def test_status_for_an_admin_in_the_control_group(lab):
    lab.wait_reachable()
    with SentryProcess(lab, conf='CONTROL_GROUP="staff"\n') as sw:
        sock = sw.paths["run"] / "scanwatch.sock"
        st = os.stat(sock)
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == 50
        base = ["setpriv", "--reuid=65534", "--regid=65534"]
        cmd = [sys.executable, "-c", "from scanwatch.cli import main; main()", "status",
               "--run-dir", str(sw.paths["run"])]
        os.chmod(sw.dir, 0o755)  # the test's temp dir: let nobody reach the run dir
        ok = lab.run(lab.target_ns, *base, "--groups=50", *cmd)
        assert ok.returncode == 0 and "scanwatch is running" in ok.stdout, ok.stderr
        denied = lab.run(lab.target_ns, *base, "--clear-groups", *cmd)
        assert denied.returncode != 0
        assert denied.stderr.strip().count("\n") == 0 and "needs root" in denied.stderr


def test_control_socket_is_root_only_without_the_group(lab):
    lab.wait_reachable()
    with SentryProcess(lab, conf='CONTROL_GROUP="no-such-group-here"\n') as sw:
        st = os.stat(sw.paths["run"] / "scanwatch.sock")
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
