#!/usr/bin/env python3
"""The fleet (issue 15) measured on real daemons in throw-away network namespaces.

Run as root from the repository, after `make setup`:

    .venv/bin/python bench/fleet.py [--rounds 40] [--load-seconds 15] [--sim-hosts 1000]

One FleetLab: five sentry namespaces, a scanner and a service namespace on a bridge, with
Debian's redis-server started in the service namespace. Nothing runs in the root
namespace; everything is removed on exit.

 1. propagation: a single SYN to a tripwire port of host 1 from a new source, `rounds`
    times; the time from host 1's nftables NEWSETELEM to the last of hosts 2..5's, read by
    netlink listeners in each namespace (bench/sentry.py's nftwatch helper, one process
    each, real-time priority) on one clock.
 2. ports learned: `nmap -n -sS -p- -T4 --max-retries 1 --min-rate 20000` run against
    hosts 1..5 one after the other, without and with FLEET_URL; ports reported open or
    closed per host.
 3. Redis at scale: a load generator in the service namespace (bounded in time and in
    operations) plays `sim-hosts` members, each publishing blocks at BLOCK_RATE per minute
    and a batch of sightings a second, while one real daemon consumes the stream. Redis
    CPU, memory per tracked source (MEMORY USAGE of the sightings keys), the daemon's CPU
    and how much of the stream it kept up with.
"""
import sys

# --- helper run inside the service namespace ----------------------------------------------


def _helper_load(host, port, user, password, seconds, hosts, block_rate, per_host,
                 attackers, max_ops):
    """Play `hosts` members for `seconds`: blocks at block_rate/min each (XADD) and
    `per_host` sightings a second each (PFADD, EXPIRE NX, PFCOUNT), pipelined. Prints one
    JSON line with what it did."""
    import json
    import random
    import time

    import redis
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    from scanwatch.sentry.fleet import message
    seconds, hosts, block_rate = float(seconds), int(hosts), int(block_rate)
    per_host, attackers, max_ops = int(per_host), int(attackers), int(max_ops)
    r = redis.Redis(host=host, port=int(port), username=user, password=password)
    keys = message.Keys("scanwatch")
    rng = random.Random(15)
    pool = [f"100.{64 + i // 65536 % 64}.{i // 256 % 256}.{i % 256}" for i in range(attackers)]
    blocks = sightings = ops = 0
    start = time.monotonic()
    tick = 0
    lat = []
    while time.monotonic() - start < seconds and ops < max_ops:
        tick += 1
        due = start + tick  # one second of the fleet's traffic per tick
        pipe = r.pipeline(transaction=False)
        n_blocks = hosts * block_rate // 60
        now = time.time()
        for i in range(n_blocks):
            h = f"sim{rng.randrange(hosts)}"
            f = message.encode("block", pool[rng.randrange(attackers)], host=h, left=3600,
                               evidence="unverified", scan="SYN/Normal", ports=(22, 80),
                               ts=now, uid=f"{h}:{tick}-{i}")
            pipe.xadd(keys.stream, f, maxlen=10000, approximate=True)
            if len(pipe) >= 2000:
                pipe.execute()
        blocks += n_blocks
        for h in range(hosts):
            for _ in range(per_host):
                k = keys.sweep(pool[rng.randrange(attackers)])
                pipe.pfadd(k, f"sim{h}:t{rng.randrange(1, 1024)}")
                pipe.expire(k, 600, nx=True)
                pipe.execute_command("PFCOUNT", k)
                sightings += 1
            if len(pipe) >= 3000:
                t0 = time.monotonic()
                pipe.execute()
                lat.append(time.monotonic() - t0)
        pipe.execute()
        ops += n_blocks + 3 * hosts * per_host
        time.sleep(max(0.0, due - time.monotonic()))
    took = time.monotonic() - start
    mem = [r.memory_usage(keys.sweep(a)) or 0 for a in pool[:200]]
    tracked = sum(1 for a in pool[:2000] if r.exists(keys.sweep(a)))
    print(json.dumps({"seconds": round(took, 2), "blocks": blocks, "sightings": sightings,
                      "ops": ops, "behind_s": round(max(0.0, took - tick), 2),
                      "key_bytes_mean": sum(mem) / len(mem), "tracked_of_2000": tracked,
                      "stream_len": r.xlen(keys.stream),
                      "used_memory": r.info("memory")["used_memory"],
                      "keys": r.dbsize()}), flush=True)


if __name__ == "__main__" and len(sys.argv) > 2 and sys.argv[1] == "--helper":
    {"load": _helper_load}[sys.argv[2]](*sys.argv[3:])
    sys.exit(0)

# --- the bench -------------------------------------------------------------------------------
import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import xml.etree.ElementTree as ET  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "system"))
sys.path.insert(0, str(ROOT))
from fleetproc import Fleet, fresh_scanner  # noqa: E402
from lab import FleetLab  # noqa: E402
from redisproc import PASSWORD, RedisServer  # noqa: E402

PYTHON = sys.executable
SENTRY_BENCH = str(ROOT / "bench" / "sentry.py")
SELF = str(Path(__file__).resolve())
TRIPWIRE = 1  # in PortSentry's default TCP_PORTS: one SYN is a block


def log(msg):
    print(f"[fleet bench] {msg}", file=sys.stderr, flush=True)


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(vals, q):
    s = sorted(vals)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def wait_for(pred, timeout, what, step=0.01):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def cleanup(fl):
    fl.stop()
    for sw in fl.sws:
        shutil.rmtree(sw.dir, ignore_errors=True)


# --- 1. propagation ------------------------------------------------------------------------
def propagation(lab, rounds, work):
    fl = Fleet(lab, BLOCK_RATE="1000")
    watchers, outs = [], []
    try:
        for h in lab.hosts:
            out = work / f"nft-{h.n}.txt"
            p = lab.popen(h.target_ns, PYTHON, SENTRY_BENCH, "--helper", "nftwatch", str(out),
                          stdout=subprocess.PIPE, text=True)
            assert p.stdout.readline().strip() == "ready"
            watchers.append(p)
            outs.append(out)
        lab.run(lab.scanner_ns, "ip", "addr", "flush", "dev", "swh0", timeout=10)
        srcs = [lab.addr(10 + i) for i in range(rounds)]
        for ip in srcs:
            lab.run(lab.scanner_ns, "ip", "addr", "add", f"{ip}/24", "dev", "swh0", timeout=10)

        def lines(path):
            return [ln.split() for ln in path.read_text().splitlines()
                    if ln.endswith("scanwatch blocked4")]

        lat = []
        for i, src in enumerate(srcs):
            before = [len(lines(o)) for o in outs]
            code = ("import socket\ns=socket.socket()\ns.settimeout(1)\n"
                    f"s.bind(({src!r},0))\ns.connect_ex(({lab.hosts[0].target_ip4!r},{TRIPWIRE}))\n")
            lab.run(lab.scanner_ns, PYTHON, "-c", code, timeout=10)
            wait_for(lambda: all(len(lines(o)) > b for o, b in zip(outs, before)), 10,
                     f"round {i}: the element on every host")
            t = [float(lines(o)[b][0]) for o, b in zip(outs, before)]
            lat.append((max(t[1:]) - t[0]) * 1000)
            time.sleep(0.2)
        for sw in fl.sws[1:]:
            assert sw.status()["fleet"]["received"] >= rounds
        return lat
    finally:
        for p in watchers:
            p.terminate()
            p.wait()
        cleanup(fl)


# --- 2. ports learned -------------------------------------------------------------------------
def ports_learned(lab, fleet):
    fresh_scanner(lab)
    fl = Fleet(lab, fleet=fleet, BLOCK_RATE="1000")
    try:
        per_host = []
        for h in lab.hosts:
            res = lab.run(lab.scanner_ns, "nmap", "-n", "-Pn", "-sS", "-p-", "-T4",
                          "--max-retries", "1", "--min-rate", "20000", "-oX", "-",
                          h.target_ip4, timeout=600)
            root = ET.fromstring(res.stdout)
            per_host.append(sum(1 for p in root.iter("port")
                                if p.find("state").get("state") in ("open", "closed")))
        return per_host
    finally:
        cleanup(fl)


# --- 3. Redis at scale ----------------------------------------------------------------------
def load(lab, args):
    fl = Fleet(lab, hosts=lab.hosts[:1])  # default BLOCK_RATE: past it, XDP only
    sw = fl.sws[0]
    try:
        r = lab.redis
        mem0 = r.py("print(json.dumps(client().info('memory')['used_memory']))")
        cpu_r0, cpu_d0, t0 = proc_cpu(r.proc.pid), proc_cpu(sw.pid), time.monotonic()
        rec0 = sw.status()["fleet"]["received"]
        res = lab.run(lab.service_ns, PYTHON, SELF, "--helper", "load", r.host, str(r.port),
                      "admin", PASSWORD, str(args.load_seconds), str(args.sim_hosts),
                      str(args.block_rate), str(args.sightings), str(args.attackers),
                      str(args.max_ops), timeout=args.load_seconds * 4 + 60)
        if res.returncode != 0:
            raise RuntimeError(f"load generator failed: {res.stderr}")
        gen = json.loads(res.stdout.strip().splitlines()[-1])
        wall = time.monotonic() - t0
        cpu_r, cpu_d = proc_cpu(r.proc.pid) - cpu_r0, proc_cpu(sw.pid) - cpu_d0
        st = sw.status()["fleet"]
        return dict(gen, wall=wall, redis_cpu=cpu_r, daemon_cpu=cpu_d, mem0=mem0,
                    consumed=st["received"] - rec0, lag_ms=st["lag_ms"],
                    applied=st["applied"], capped=st["capped"])
    finally:
        cleanup(fl)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--load-seconds", type=int, default=15)
    ap.add_argument("--sim-hosts", type=int, default=1000)
    ap.add_argument("--block-rate", type=int, default=120, help="blocks/min per simulated host")
    ap.add_argument("--sightings", type=int, default=5, help="sightings/s per simulated host")
    ap.add_argument("--attackers", type=int, default=50000, help="distinct simulated sources")
    ap.add_argument("--max-ops", type=int, default=5_000_000)
    ap.add_argument("--skip", default="", help="comma list of: latency,ports,load")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/fleet.py: run as root (it makes network namespaces)")
    skip = set(filter(None, args.skip.split(",")))
    work = Path(tempfile.mkdtemp(prefix="swfleetbench-"))
    rows = []
    try:
        with FleetLab(hosts=5) as lab:
            lab.wait_reachable()
            lab.redis = RedisServer(lab)
            try:
                if "ports" not in skip:
                    log("ports learned by a sequential nmap -p- over 5 hosts, no fleet")
                    alone = ports_learned(lab, fleet=False)
                    log("the same with the fleet")
                    fleet = ports_learned(lab, fleet=True)
                    rows.append(("ports learned, no fleet (hosts 1..5)",
                                 f"{sum(alone)} ({' + '.join(map(str, alone))})"))
                    rows.append(("ports learned, fleet (hosts 1..5)",
                                 f"{sum(fleet)} ({' + '.join(map(str, fleet))})"))
                if "latency" not in skip:
                    log(f"propagation, {args.rounds} rounds")
                    lat = propagation(lab, args.rounds, work)
                    rows.append(("propagation host 1 nft -> last of hosts 2..5 nft",
                                 f"p50 {statistics.median(lat):.1f} ms, p99 {pct(lat, 99):.1f} ms, "
                                 f"max {max(lat):.1f} ms (n={len(lat)}; goal p99 < 100 ms)"))
                if "load" not in skip:
                    log(f"load: {args.sim_hosts} simulated hosts for {args.load_seconds} s")
                    g = load(lab, args)
                    rows += [
                        ("load generator", f"{args.sim_hosts} hosts x {args.block_rate} blocks/min"
                         f" + {args.sightings} sightings/s each, {g['seconds']:.1f} s "
                         f"({g['behind_s']:.1f} s behind its schedule)"),
                        ("  sent", f"{g['blocks']} blocks ({g['blocks'] / g['seconds']:.0f}/s), "
                         f"{g['sightings']} sightings ({g['sightings'] / g['seconds']:.0f}/s)"),
                        ("  Redis CPU", f"{100 * g['redis_cpu'] / g['wall']:.0f} % of one core"),
                        ("  Redis memory", f"{(g['used_memory'] - g['mem0']) / 2**20:.1f} MiB more; "
                         f"{g['keys']} keys, stream length {g['stream_len']}"),
                        ("  per tracked source", f"{g['key_bytes_mean']:.0f} bytes "
                         "(MEMORY USAGE of its sightings HyperLogLog)"),
                        ("  daemon consuming the stream", f"{100 * g['daemon_cpu'] / g['wall']:.0f} %"
                         f" of one core; {g['consumed']} entries read ({g['consumed'] / g['wall']:.0f}/s),"
                         f" lag at the end {g['lag_ms']} ms"),
                        ("  ... of which", f"{g['applied']} in nft + XDP (BLOCK_RATE), "
                         f"{g['capped']} in XDP only past it"),
                    ]
            finally:
                lab.redis.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    print(f"\nscanwatch fleet bench (git {head}, {os.cpu_count()} CPUs)\n")
    w = max(len(a) for a, _ in rows)
    for a, b in rows:
        print(f"{a:<{w}}  {b}")


if __name__ == "__main__":
    main()
