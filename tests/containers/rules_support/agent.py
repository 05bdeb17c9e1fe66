"""A TCP stand-in for the Kubernetes API server (the agent itself runs through tests/agent_support.py)."""

from __future__ import annotations

import socket
import threading


class Listener:
    """A TCP server on a loopback address that accepts and closes every connection (an API-server stand-in)."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.port: int = self.sock.getsockname()[1]
        self.sock.listen(64)
        self.accepted = 0
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        self.sock.close()
