"""The only module that talks to Redis (redis-py). Every Redis error leaves here as one
FleetError line; callers never see a redis exception or a traceback.

Commands used (and so the ACL a fleet user needs): XADD, XREAD, XREVRANGE, PFADD, PFCOUNT,
EXPIRE, HSET, HSETNX, HGETALL, PING, plus CLUSTER SLOTS and COMMAND when FLEET_URL points
at a cluster (redis-py learns the slot map and the key positions with them), and INFO there
too with redis-py before 5.0.8 (Debian 12's python3-redis 4.3.4 asks a cluster node's INFO
whether cluster mode is on).
"""
import logging
import os
import ssl
import stat
import time

import redis
from redis import cluster as rcluster

from ...errors import FleetError
from .message import parse_url

# redis-py logs some errors itself, with a traceback (4.3.4's cluster client does, before
# it raises): every error is reported here in one line instead.
logging.getLogger("redis").addHandler(logging.NullHandler())
logging.getLogger("redis").propagate = False


def read_password(path):
    """The fleet password: the file must be 0600 or stricter (not group/world readable),
    and its content is never logged."""
    if not path:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as err:
        raise FleetError(f"{path}: {err.strerror}") from None
    try:
        st = os.fstat(fd)
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise FleetError(f"{path}: mode {stat.S_IMODE(st.st_mode):04o}; the fleet password "
                             "file must be 0600")
        data = os.read(fd, 4097)
    finally:
        os.close(fd)
    if len(data) > 4096:
        raise FleetError(f"{path}: longer than a password")
    return data.decode("utf-8", "replace").strip()


def describe(err, have_password=True):
    """One line for any redis-py error (the password never appears: redis-py's messages
    do not carry it, and we add only the server's own words)."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if "NOAUTH" in text or (not have_password and ("WRONGPASS" in text or isinstance(
            err, redis.AuthenticationError))):
        return f"Redis refused the fleet user: no password given, set FLEET_PASSWORD_FILE ({text})"
    if isinstance(err, redis.AuthenticationError) or "WRONGPASS" in text:
        return f"Redis refused the fleet user's password ({text})"
    if "NOPERM" in text:
        return f"Redis ACL forbids it ({text})"
    if isinstance(err, (redis.ConnectionError, redis.TimeoutError)):
        return f"Redis unreachable ({text})"
    return f"Redis error ({text})"


class Link:
    """One connection (or cluster client) to the fleet's Redis."""

    def __init__(self, url, *, password_file="", ca_file="", timeout=2.0, name="scanwatch"):
        self.tls, self.user, self.host, self.port, self.db = parse_url(url)
        self.password = read_password(password_file)
        self.ca_file = ca_file
        self.timeout = timeout
        self.name = name
        self.client = None
        self.cluster = False
        self.ok_at = 0.0  # monotonic time of the last command that went through

    def _kw(self, block_s):
        kw = dict(host=self.host, port=self.port, username=self.user, password=self.password,
                  socket_connect_timeout=self.timeout,
                  socket_timeout=self.timeout + block_s, decode_responses=False,
                  retry_on_timeout=False)
        if self.tls:
            kw.update(ssl=True, ssl_cert_reqs=ssl.CERT_REQUIRED,
                      ssl_ca_certs=self.ca_file or None)
        return kw

    def connect(self, block_s=1.0):
        """Connect and check the password; a cluster is recognised by its answer to
        CLUSTER SLOTS and then driven by redis-py's cluster client."""
        self.close()
        try:
            plain = redis.Redis(db=self.db, **self._kw(block_s))
            try:
                slots = plain.execute_command("CLUSTER", "SLOTS")
            except redis.ResponseError as err:
                if "cluster support disabled" not in str(err):
                    raise
                slots = None
            if slots:
                plain.close()
                kw = self._kw(block_s)
                kw.pop("retry_on_timeout")
                self.client = rcluster.RedisCluster(**kw)
                self.cluster = True
            else:
                self.client = plain
            self.client.ping()
        except (redis.RedisError, rcluster.RedisClusterException) as err:
            self.client = None
            raise FleetError(describe(err, self.password is not None)) from None
        except OSError as err:
            self.client = None
            raise FleetError(f"Redis unreachable ({err})") from None
        return self

    def close(self):
        if self.client is not None:
            try:
                self.client.close()
            except (redis.RedisError, OSError):
                pass
            self.client = None

    def _call(self, fn, *args, **kw):
        if self.client is None:
            self.connect()
        try:
            out = fn(*args, **kw)
            self.ok_at = time.monotonic()
            return out
        except (redis.RedisError, rcluster.RedisClusterException) as err:
            self.close()  # the next call reconnects
            raise FleetError(describe(err, self.password is not None)) from None
        except OSError as err:
            self.close()
            raise FleetError(f"Redis unreachable ({err})") from None

    # --- the commands the fleet uses ---------------------------------------------------
    def publish(self, stream, fields, maxlen):
        return self._call(lambda: self.client.xadd(stream, fields, maxlen=maxlen,
                                                   approximate=True)).decode()

    def read(self, stream, last_id, block_ms=1000, count=100):
        """Entries after last_id: [(id, {bytes: bytes})]. Blocks in Redis (XREAD BLOCK),
        not in a polling loop."""
        reply = self._call(lambda: self.client.xread({stream: last_id}, count=count,
                                                     block=block_ms))
        out = []
        for _key, entries in reply or []:
            for eid, fields in entries:
                out.append((eid.decode() if isinstance(eid, bytes) else eid, fields))
        return out

    def last_id(self, stream):
        """The newest id in the stream, "0-0" if empty (a new member starts at the end:
        what was blocked before it joined reaches it through the blocks' own owners)."""
        def newest():
            r = self.client.xrevrange(stream, count=1)
            return r[0][0].decode() if r else "0-0"
        return self._call(newest)

    def holds(self, stream, pos):
        """False when the stream was trimmed past `pos` (the entry there and every older
        one are gone while newer ones exist): what came between may be lost."""
        def check():
            if self.client.xrevrange(stream, max=pos, min="-", count=1):
                return True
            return not self.client.xrevrange(stream, count=1)  # empty: nothing to miss
        return self._call(check)

    def sight(self, keys_for, batch, window, marks=None, marks_key=None, host=""):
        """PFADD each source's host:port pairs into its HyperLogLog, start its window
        (EXPIRE NX: the window runs from the first sighting, it does not slide), and return
        {addr: distinct pairs so far}. marks {addr: strength}: this member's "possibly
        spoofed" marks, HSET host -> strength in the source's marks hash (same window)."""
        marks = marks or {}

        def run():
            pipe = self.client.pipeline(transaction=False)
            order = []
            for addr, members in batch.items():
                key = keys_for(addr)
                pipe.pfadd(key, *members)
                pipe.expire(key, window, nx=True)
                # one key per PFCOUNT: redis-py's cluster pipeline refuses .pfcount() as a
                # possibly cross-slot command; the raw command on one key is fine anywhere
                pipe.execute_command("PFCOUNT", key)
                order.append(addr)
            for addr, strength in marks.items():
                key = marks_key(addr)
                pipe.hset(key, host, strength)
                pipe.expire(key, window, nx=True)
            res = pipe.execute()
            return {a: int(res[3 * i + 2]) for i, a in enumerate(order)}
        return self._call(run) if batch or marks else {}

    def claim(self, key, host, window):
        """True for the one member that first claims a source's fleet verdict (HSETNX),
        and for that member again (a retry after a Redis error): the others leave it to
        that member's judgement and its stream entry."""
        def run():
            pipe = self.client.pipeline(transaction=False)
            pipe.hsetnx(key, "by", host)
            pipe.expire(key, window, nx=True)
            pipe.hgetall(key)
            return pipe.execute()[2].get(b"by") == host.encode()
        return self._call(run)

    def marks(self, key):
        """{host: strength} a source was marked with (empty if none)."""
        raw = self._call(lambda: self.client.hgetall(key))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def heartbeat(self, members_key, host, record):
        return self._call(lambda: self.client.hset(members_key, host, record))

    def members(self, members_key):
        raw = self._call(lambda: self.client.hgetall(members_key))
        return {k.decode(): v.decode() for k, v in raw.items()}
