"""A small TCP proxy for tests: forwards 127.0.0.1:<port> to a target and can
cut a connection in the middle of a server literal. bind="::1" listens on
IPv6 loopback (Dovecot in the tests listens on 127.0.0.1 only).

    with CutProxy(("127.0.0.1", dc.port), cut_after=b"BODY[HEADER] {") as p:
        ... connect to p.port ...

cut_after: on the first connection only, after the server has sent these
bytes (plus a few more, so the cut lands inside the literal's data), both
sides are closed. Later connections pass through untouched. p.connections
counts accepted connections; p.cut tells whether a cut happened.

hold=(marker, seconds): client bytes containing marker reach the server that
much later (on every connection), so its answer to that command comes late.
"""

import select
import socket
import threading
import time


class CutProxy:
    def __init__(self, target, cut_after=None, extra=20, bind="127.0.0.1", hold=None):
        self.target = target
        self.hold = hold
        self.cut_after = cut_after
        self.extra = extra
        self.connections = 0
        self.cut = False
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        self.sock = socket.socket(family)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((bind, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass

    def _accept(self):
        while not self.stopping:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            first = self.connections == 1
            threading.Thread(target=self._pipe, args=(client, first), daemon=True).start()

    def _pipe(self, client, first):
        try:
            server = socket.create_connection(self.target)
        except OSError:
            client.close()
            return
        seen = b""
        cut_at = None
        try:
            while True:
                r, _, _ = select.select([client, server], [], [], 30)
                if not r:
                    break
                if client in r:
                    data = client.recv(65536)
                    if not data:
                        break
                    if self.hold and self.hold[0] in data:
                        time.sleep(self.hold[1])
                    server.sendall(data)
                if server in r:
                    data = server.recv(65536)
                    if not data:
                        break
                    if first and self.cut_after is not None and not self.cut:
                        seen += data
                        i = seen.find(self.cut_after)
                        if i >= 0:
                            cut_at = i + len(self.cut_after) + self.extra
                        if cut_at is not None and len(seen) >= cut_at:
                            keep = len(data) - (len(seen) - cut_at)
                            client.sendall(data[:max(keep, 0)])
                            self.cut = True
                            break
                    client.sendall(data)
        except OSError:
            pass
        finally:
            for s in (client, server):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
