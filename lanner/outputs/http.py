"""``http``: each alert POSTed as Falco's JSON to a URL (Falco's http_output; falcosidekick's input).

An alert is delivered only on a 2xx answer. Connection errors, timeouts, 408, 429 and 5xx are
retried with backoff (the alert stays at the head of the queue, so order is kept); any other
answer is a permanent failure for that alert. One connection is kept alive between alerts."""

from __future__ import annotations

import http.client
import ssl
from urllib.parse import urlsplit

from lanner import __version__
from lanner.alert import Alert
from lanner.outputs.base import DEFAULT_QUEUE_SIZE, Output, OutputError, PermanentError, RetryLater, RetryPolicy
from lanner.outputs.lines import encode, json_line

RETRIABLE_STATUS = frozenset({408, 429})
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


def parse_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path with query). Raises ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port, path


class HttpOutput(Output):
    kind = "http"

    def __init__(self, url: str, *, headers: dict[str, str] | None = None, ca_file: str | None = None,
                 client_cert: str | None = None, client_key: str | None = None, insecure: bool = False,
                 timeout: float = 5.0, user_agent: str = f"lanner/{__version__}", name: str | None = None,
                 queue_size: int = DEFAULT_QUEUE_SIZE, retry: RetryPolicy | None = None) -> None:
        super().__init__(name, queue_size=queue_size, retry=retry)
        self.url = url
        self.scheme, self.host, self.port, self.path = parse_url(url)
        self.headers = {"Content-Type": "application/json", "User-Agent": user_agent, **(headers or {})}
        self.ca_file = ca_file
        self.client_cert = client_cert
        self.client_key = client_key
        self.insecure = insecure
        self.timeout = timeout
        self._tls: ssl.SSLContext | None = None
        self._conn: http.client.HTTPConnection | None = None

    def _open(self) -> None:
        if self.scheme != "https":
            return
        try:
            ctx = ssl.create_default_context(cafile=self.ca_file)
            if self.client_cert:
                ctx.load_cert_chain(self.client_cert, self.client_key)
        except (OSError, ssl.SSLError) as e:
            raise OutputError(f"output {self.name!r}: TLS set-up: {e}") from None
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        self._tls = ctx

    def _connection(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self._tls)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _send(self, alert: Alert) -> None:
        body = encode(json_line(alert))
        reused = self._conn is not None
        try:
            status, reason, text, retry_after = self._post(body)
        except _STALE:
            if not reused:
                raise
            # The receiver closed the kept-alive connection while it was idle: the request never
            # reached it, so a fresh connection may send it again at once.
            status, reason, text, retry_after = self._post(body)
        if 200 <= status < 300:
            return
        detail = f"HTTP {status} {reason}" + (f": {text}" if text else "")
        if status in RETRIABLE_STATUS or status >= 500:
            raise RetryLater(detail, retry_after)
        raise PermanentError(detail)

    def _post(self, body: bytes) -> tuple[int, str, str, float | None]:
        if self._conn is None:
            self._conn = self._connection()
        try:
            self._conn.request("POST", self.path, body=body, headers=self.headers)
            resp = self._conn.getresponse()
            text = resp.read(2048).decode("utf-8", "replace").strip()
            resp.read()  # drain, so the connection can be reused
        except (OSError, http.client.HTTPException) as e:
            self._close()
            if isinstance(e, OSError):
                raise
            raise OSError(f"{type(e).__name__}: {e}") from e
        if resp.will_close:
            self._close()
        return resp.status, resp.reason, text[:200], _retry_after(resp.getheader("Retry-After"))

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is ignored)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
