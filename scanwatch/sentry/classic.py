"""PortSentry's classic modes (-tcp, -udp): bind the tripwire ports and wait.

A completed TCP handshake proves the source address is real, so classic TCP reports carry
evidence "connect"; a UDP datagram's source may be forged ("datagram").
"""
import errno
import selectors
import socket
import threading
from collections import OrderedDict

from .ignore import canonical


class ClassicListener:
    """Binds TCP_PORTS / UDP_PORTS on every address (IPv4 and IPv6) and reports each hit
    as on_hit(addr, port, proto, count) from its own thread."""

    def __init__(self, tcp_ports=(), udp_ports=(), banner="", on_hit=None, log=None,
                 max_sources=10000):
        self.ports = {"TCP": tuple(tcp_ports), "UDP": tuple(udp_ports)}
        self.banner = banner.encode() if banner else b""
        self.on_hit = on_hit
        self.log = log
        self.bound = {"TCP": [], "UDP": []}
        self.counts = OrderedDict()  # (addr, proto) -> hits, bounded like the kernel's LRU
        self.max_sources = max_sources
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        self.thread = None
        self.stopping = False

    def start(self):
        for proto, ports in self.ports.items():
            for port in ports:
                sock = self._bind(proto, port)
                if sock is None:
                    continue
                self.bound[proto].append(port)
                self.sel.register(sock, selectors.EVENT_READ, (proto, port))
                self.log.info("adminalert: Going into listen mode on %s port: %d", proto, port)
        self.sel.register(self.wake_r, selectors.EVENT_READ, None)
        self.thread = threading.Thread(target=self._loop, name="classic", daemon=True)
        self.thread.start()
        return self.bound

    def _bind(self, proto, port):
        kind = socket.SOCK_STREAM if proto == "TCP" else socket.SOCK_DGRAM
        sock = socket.socket(socket.AF_INET6, kind)
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            if proto == "TCP":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("::", port))
            if proto == "TCP":
                sock.listen(64)
            sock.setblocking(False)
            return sock
        except OSError as err:
            sock.close()
            # PortSentry skips a port in use and carries on; so do we, saying which.
            why = "in use" if err.errno == errno.EADDRINUSE else err.strerror
            self.log.info("adminalert: ERROR: could not bind %s socket: %d (%s). "
                          "Attempting to continue", proto, port, why)
            return None

    def _loop(self):
        while not self.stopping:
            for key, _ in self.sel.select(timeout=1.0):
                if key.data is None:
                    return
                proto, port = key.data
                try:
                    self._serve(key.fileobj, proto, port)
                except OSError:
                    continue  # a peer that vanished mid-handshake is no report

    def _serve(self, sock, proto, port):
        if proto == "TCP":
            conn, peer = sock.accept()
            try:
                if self.banner:
                    conn.setblocking(False)
                    try:
                        conn.send(self.banner)
                    except OSError:
                        pass  # best effort, never wait on a scanner
            finally:
                conn.close()
        else:
            _data, peer = sock.recvfrom(2048)
        addr = canonical(peer[0].split("%")[0])
        key = (str(addr), proto)
        count = self.counts.pop(key, 0) + 1
        self.counts[key] = count
        while len(self.counts) > self.max_sources:
            self.counts.popitem(last=False)
        self.on_hit(addr, port, proto, count)

    def forget(self, addr):
        for proto in ("TCP", "UDP"):
            self.counts.pop((str(canonical(addr)), proto), None)

    def stop(self):
        self.stopping = True
        try:
            self.wake_w.send(b"x")
        except OSError:
            pass
        if self.thread is not None:
            self.thread.join(timeout=3)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()
        self.wake_w.close()
