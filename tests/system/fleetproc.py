"""Helpers for the fleet's system tests (issue 15), not a test: N restartable daemons on
a FleetLab's host namespaces, a fresh scanner address per test, nmap over the hosts."""
import itertools
import shutil
import tempfile

from redisproc import password_file
from resilience import Sentry, kernel_blocked
from sentryproc import wait_for

_next = itertools.count(101)


def fresh_scanner(lab):
    """A new scanner address per test: blocks and fleet counts of the last test do not
    carry over."""
    ip = lab.addr(next(_next))
    lab.run(lab.scanner_ns, "ip", "addr", "flush", "dev", "swh0", timeout=10)
    lab.run(lab.scanner_ns, "ip", "addr", "add", f"{ip}/24", "dev", "swh0", timeout=10)
    for h in lab.hosts:
        h.scanner_ip4 = ip
    wait_for(lambda: lab.run(lab.scanner_ns, "ping", "-c1", "-W1", lab.hosts[0].target_ip4)
             .returncode == 0, 10, "scanner reachable")
    return ip


def conf(redis, sw_dir, host, fleet=True, **extra):
    lines = {"SWEEP_PORTS": "20"}
    if fleet:
        lines.update(FLEET_URL=redis.url(), FLEET_HOST=host,
                     FLEET_PASSWORD_FILE=str(password_file(sw_dir)))
    lines.update(extra)
    return "".join(f'{k}="{v}"\n' for k, v in lines.items())


class Member(Sentry):
    """One fleet member: a daemon that can be stopped and started again on its own
    directory (state, fleet.pos, fleet.queue kept)."""

    def __init__(self, host, workdir, conf_text=None, fleet=True):
        self.host, self.fleet = host, fleet
        super().__init__(host, workdir, args=("-stcp",), conf=conf_text)
        if fleet:
            self.wait_log("fleet: connected", timeout=30)

    def restart(self, wait_connected=True):
        return Member(self.host, self.dir, None, fleet=self.fleet and wait_connected)


class Fleet:
    """N real daemons, one per host namespace."""

    def __init__(self, lab, fleet=True, hosts=None, **extra):
        self.lab, self.sws = lab, []
        try:
            for h in hosts or lab.hosts:
                d = tempfile.mkdtemp(prefix="swfleet-")
                self.sws.append(Member(h, d, conf(lab.redis, d, f"web{h.n}", fleet, **extra),
                                       fleet=fleet))
        except BaseException:
            self.stop()
            raise

    def stop(self):
        for sw in self.sws:
            sw.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        if exc[0] is None:  # kept after a failure, for a look at the logs and state
            for sw in self.sws:
                shutil.rmtree(sw.dir, ignore_errors=True)

    def logs(self):
        return "\n".join(f"--- {sw.lab.target_ns}\n{all_logs(sw)[-3000:]}" for sw in self.sws)

    def wait(self, pred, timeout, what):
        """wait_for, with every daemon's log in the failure."""
        try:
            return wait_for(pred, timeout, what)
        except AssertionError as err:
            raise AssertionError(f"{err}\n{self.logs()}") from None


def all_logs(sw):
    """Every run's log of a member, oldest first."""
    return "".join(p.read_text() for p in sorted(sw.dir.glob("daemon-*.log"),
                                                 key=lambda p: int(p.stem.split("-")[1])))


def blocked_in(sw, addr):
    return addr in sw.nft_set(4) and addr in kernel_blocked(sw.pid)


def blocked_everywhere(sws, addr):
    return all(blocked_in(sw, addr) for sw in sws)


def nmap_hosts(lab, *args, hosts=None, timeout=180):
    targets = [h.target_ip4 for h in (hosts or lab.hosts)]
    res = lab.run(lab.scanner_ns, "nmap", "-n", "-Pn", "-T4", "--max-retries", "0", *args,
                  "-oG", "-", *targets, timeout=timeout)
    assert res.returncode == 0, res.stderr
    return res.stdout


def stream_entries(redis, name="scanwatch"):
    """The block stream's entries [(id, {field: value})], read with the admin user by
    redis-py run inside the service namespace (Redis listens only there)."""
    return redis.py(f"""
r = client()
print(json.dumps([(i.decode(), {{k.decode(): v.decode('latin-1') for k, v in f.items()}})
                  for i, f in r.xrange('{name}:{{blocks}}:stream')]))""")


def stream_count(redis, addr, kind="block", name="scanwatch"):
    return sum(1 for _i, f in stream_entries(redis, name)
               if f.get("addr") == addr and f.get("kind") == kind)
