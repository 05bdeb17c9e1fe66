"""Real receivers for the output tests: an HTTP(S) server in a thread, a test PKI, alerts, waiting."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lanner.alert import Alert
from lanner.outputs import Output, OutputStats

WAIT = 60.0
"""Generous: conditions are waited for, never timed."""


def make_alert(seq: int, priority: str = "Warning", rule: str = "Test rule") -> Alert:
    return Alert(rule=rule, priority=priority, message=f"test alert seq={seq} | user=root",
                 output_fields={"seq": seq, "user.name": "root"}, time_ns=1_735_726_868_123_456_789 + seq,
                 tags=("host", "T1000"), hostname="node1")


def wait_for(cond: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def settled(out: Output) -> OutputStats:
    """Stats once nothing is queued or in flight."""
    wait_for(lambda: (s := out.stats()).queue_depth == 0 and s.in_flight == 0, f"{out.name} to settle")
    return out.stats()


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Receiver:
    """An HTTP(S) server recording every POST. ``answer(n, body)`` gives the status for the n-th request
    (0-based); it is one request at a time, so a request is either fully handled or never accepted."""

    tls: ssl.SSLContext | None = None
    keep_alive: bool = False
    """HTTP/1.1 with connections kept open (closed by the server after 0.3 s idle)."""
    answer: Callable[[int, dict[str, Any]], int] = lambda n, body: 200
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    accepted: list[Request] = field(default_factory=list)
    """The requests answered with 2xx."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: http.server.HTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/alerts"

    def start(self) -> Receiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if self.keep_alive else "HTTP/1.0"
            timeout = 0.3 if self.keep_alive else None

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                req = Request(self.path, dict(self.headers.items()), body)
                with receiver.lock:
                    status = receiver.answer(len(receiver.requests), body)
                    receiver.requests.append(req)
                    if 200 <= status < 300:
                        receiver.accepted.append(req)
                self.send_response(status)
                if status in (429, 503):
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = http.server.HTTPServer(("127.0.0.1", self.port), Handler)
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join()
            self._server = None

    def seqs(self) -> list[int]:
        with self.lock:
            return [r.body["output_fields"]["seq"] for r in self.accepted]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path

    def server_context(self, require_client_cert: bool = False) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.ca)
        return ctx


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA, a server certificate for 127.0.0.1/localhost and a client certificate signed by it,
    and an unrelated CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    d = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)

    def write(name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
        (d / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (d / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
        return d / f"{name}.crt", d / f"{name}.key"

    def ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        return cert, key

    def leaf(cn: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
             usage: x509.ObjectIdentifier) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        ca_cert, ca_key = issuer
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
                   .issuer_name(ca_cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False))
        if usage == ExtendedKeyUsageOID.SERVER_AUTH:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    the_ca = ca("lanner test CA")
    other = ca("some other CA")
    ca_path, _ = write("ca", *the_ca)
    other_path, _ = write("other-ca", *other)
    server_cert, server_key = write("server", *leaf("127.0.0.1", the_ca, ExtendedKeyUsageOID.SERVER_AUTH))
    client_cert, client_key = write("client", *leaf("lanner agent", the_ca, ExtendedKeyUsageOID.CLIENT_AUTH))
    return Pki(ca_path, server_cert, server_key, client_cert, client_key, other_path)
