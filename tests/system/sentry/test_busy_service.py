"""No false alarm from a busy real service: thousands of connections (SYN cookies on), and
the service killed and restarted under its clients, whose late segments then hit ports
with no socket. The ACK-family probe check must not mistake any of it for a scan."""
import signal
import subprocess
import sys
import time

import pytest

from sentryproc import SentryProcess

# More service ports than SWEEP_PORTS (20): late segments to all of them would be a sweep.
PORTS = list(range(9100, 9130))

SERVER = f"""
import asyncio, sys
HOST = sys.argv[1]
async def echo(r, w):
    try:
        while data := await r.read(4096):
            w.write(data)
            await w.drain()
    except OSError:
        pass
    w.close()
async def main():
    for p in {PORTS!r}:
        await asyncio.start_server(echo, HOST, p, backlog=16)
    print('ready', flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""

# Short connections first (SHORT per port), while LONG connections per port keep writing
# for SECONDS; a dropped long connection reconnects after a back-off, as a real client does.
CLIENT = """
import asyncio, sys, time
host, ports, short, long_, seconds = sys.argv[1], eval(sys.argv[2]), *map(int, sys.argv[3:6])
done = {"short": 0, "resets": 0}
async def one(p, sem):
    async with sem:
        r, w = await asyncio.open_connection(host, p)
        w.write(b"ping"); await w.drain()
        assert await r.readexactly(4) == b"ping"
        w.close()
        done["short"] += 1
async def chatty(p, stop):
    while time.monotonic() < stop:
        try:
            r, w = await asyncio.open_connection(host, p)
            while time.monotonic() < stop:
                w.write(b"x" * 100); await w.drain()
                await r.readexactly(100)
                await asyncio.sleep(0.01)
            w.close()
        except (OSError, asyncio.IncompleteReadError):
            done["resets"] += 1
            await asyncio.sleep(2.0)
async def main():
    stop = time.monotonic() + seconds
    longs = [asyncio.create_task(chatty(p, stop)) for p in ports for _ in range(long_)]
    sem = asyncio.Semaphore(64)
    await asyncio.gather(*(one(p, sem) for p in ports for _ in range(short)))
    print("short-done", flush=True)
    await asyncio.gather(*longs)
    print(done["short"], done["resets"], flush=True)
asyncio.run(main())
"""


def _server(lab, host):
    p = lab.popen(lab.target_ns, sys.executable, "-c", SERVER, host, stdout=subprocess.PIPE,
                  text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


@pytest.mark.parametrize("family", [4, 6])
def test_busy_service_killed_and_restarted_under_its_clients_gives_no_report(lab, family):
    """IPv6 too: the same sysctl turns SYN cookies on for both, and the ACK check looks up
    IPv6 4-tuples with the same helper."""
    lab.wait_reachable()
    host, target = ("::", lab.target_ip6) if family == 6 else ("0.0.0.0", lab.target_ip4)
    res = lab.run(lab.target_ns, "sysctl", "-qw", "net.ipv4.tcp_syncookies=2")
    assert res.returncode == 0, res.stderr  # every handshake completes by a SYN cookie
    with SentryProcess(lab) as sw:
        srv = _server(lab, host)
        client = lab.popen(lab.scanner_ns, sys.executable, "-c", CLIENT, target,
                           repr(PORTS), "100", "2", "12", stdout=subprocess.PIPE, text=True)
        assert client.stdout.readline().strip() == "short-done"
        time.sleep(1.0)
        srv.send_signal(signal.SIGKILL)  # 60 chatty clients mid-conversation
        srv.wait()
        time.sleep(0.7)
        srv = _server(lab, host)
        out, _ = client.communicate(timeout=60)
        srv.kill()
        srv.wait()
        short, resets = map(int, out.split())
        assert short == 100 * len(PORTS) and resets >= 30, out
        time.sleep(0.5)
        st = sw.status()
        assert st["blocked"] == [] and st["logged"] == [], (st, sw.log())
        assert "attackalert" not in sw.log() and sw.events() == [], sw.log()
        assert st["counters"]["kernel_blocks"] == 0, st
    # TcpExt counters are shared by IPv4 and IPv6
    res = lab.run(lab.target_ns, "nstat", "-asz", "TcpExtSyncookiesRecv")
    assert int(res.stdout.split()[-2]) >= 100 * len(PORTS), res.stdout
