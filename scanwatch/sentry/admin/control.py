"""The control socket: one JSON request line in, one JSON reply line out.

The socket lives in RUN_DIR with mode 0600, so only root asks the daemon anything.
"""
import grp
import json
import os
import socket
import threading

from ...errors import NotRunning, StateError

SOCKET_NAME = "scanwatch.sock"
PID_NAME = "scanwatch.pid"


def socket_path(run_dir):
    return os.path.join(run_dir, SOCKET_NAME)


class Server:
    def __init__(self, run_dir, handler, group=None):
        self.path = socket_path(run_dir)
        self.handler = handler  # dict request -> dict reply
        self.group = group
        self.sock = None
        self.thread = None

    def start(self):
        if os.path.exists(self.path):
            try:
                request(os.path.dirname(self.path), {"cmd": "ping"}, timeout=1)
            except NotRunning:
                os.unlink(self.path)  # left behind by a daemon that died
            else:
                raise StateError(f"{self.path}: another scanwatch daemon is running")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(self.path)
        except OSError as err:
            raise StateError(f"{self.path}: {err.strerror}") from err
        finally:
            os.umask(old)
        self._share_with_group()
        sock.listen(16)
        self.sock = sock
        self.thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self.thread.start()

    def _share_with_group(self):
        """Admins in CONTROL_GROUP may ask for status: socket root:GROUP 0660."""
        if not self.group:
            return
        try:
            gid = grp.getgrnam(self.group).gr_gid
        except KeyError:
            return  # no such group: the socket stays root-only
        try:
            os.chown(self.path, 0, gid)
        except OSError:
            return  # no CAP_CHOWN for that group (a hardened unit): stay root-only
        os.chmod(self.path, 0o660)

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed by stop()
            # One thread per client: a client that connects and says nothing must not
            # hold everyone else's status for the read timeout.
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        with conn:
            conn.settimeout(5)
            try:
                line = conn.makefile("rb").readline(65536)
                reply = self.handler(parse_request(line))
            except Exception as err:  # a bad request must never kill the daemon
                reply = {"error": str(err)}
            try:
                conn.sendall(json.dumps(reply, default=str).encode() + b"\n")
            except OSError:
                pass

    def stop(self):
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
            self.sock = None
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def request(run_dir, message, timeout=5.0):
    """Send one request to the daemon; NotRunning when nothing answers."""
    path = socket_path(run_dir)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = sock.makefile("rb").readline()
    except FileNotFoundError as err:
        raise NotRunning(f"scanwatch is not running (no {path})") from err
    except ConnectionRefusedError as err:
        raise NotRunning(f"scanwatch is not running ({path} is stale)") from err
    except PermissionError as err:
        raise StateError(f"{path}: permission denied (status needs root)") from err
    except OSError as err:
        raise NotRunning(f"scanwatch is not answering on {path}: {err}") from err
    finally:
        sock.close()
    if not data:
        raise NotRunning(f"scanwatch closed {path} without answering")
    reply = json.loads(data)
    if "error" in reply:
        raise StateError(f"daemon: {reply['error']}")
    return reply


def parse_request(line):
    """One request line -> a dict with a string "cmd"; ValueError says what is wrong."""
    try:
        req = json.loads(line or b"{}")
    except ValueError as err:
        raise ValueError(f"not a JSON request ({err})") from err
    if not isinstance(req, dict):
        raise ValueError('a request is a JSON object such as {"cmd": "status"}')
    if not isinstance(req.get("cmd"), str):
        raise ValueError('a request needs "cmd": "status", "top", "unblock" or "flush"')
    return req
