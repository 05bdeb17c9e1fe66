"""The admission webhook: admission.k8s.io/v1 AdmissionReview over HTTPS.

``/validate`` applies the Pod Security Standards the way Pod Security Admission does — enforce,
warn and audit modes per namespace, from the namespace's ``pod-security.kubernetes.io/*``
labels given in a config file (the webhook does not query the API server) — plus Lanner's extra
checks as warnings. ``/mutate`` fills in secure defaults (only fields that are unset) with a
JSON Patch. ``/healthz`` answers ``ok``. Requests that are malformed, too large or of another
AdmissionReview version get a 4xx with a message saying why.

The server is stdlib ``http.server`` with TLS done per connection in a bounded worker pool, so
a slow client's handshake never blocks accepting others and a burst cannot start unbounded
threads.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from lanner.posture.pss import LATEST, Version, evaluate, parse_version, version_str
from lanner.posture.workloads import PodTarget, pod_targets

LABEL_PREFIX = "pod-security.kubernetes.io/"
MODES = ("enforce", "warn", "audit")
POLICY_LEVELS = ("privileged", "baseline", "restricted")
DEFAULT_MAX_BYTES = 3 * 1024 * 1024
DRAIN_LIMIT = 16 * 1024 * 1024  # bigger bodies are not even read: the connection is closed
POD_KINDS_ENFORCED = frozenset({"Pod"})


class ConfigError(Exception):
    pass


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ModePolicy:
    level: str
    version: Version
    version_label: str

    def __str__(self) -> str:
        return f"{self.level}:{self.version_label}"


@dataclass
class NamespacePolicy:
    modes: dict[str, ModePolicy]


def _parse_labels(labels: dict[str, Any], where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if not isinstance(labels, dict):
        raise ConfigError(f"{where}: expected a mapping of Pod Security labels")
    for k, v in labels.items():
        key = str(k)
        short = key[len(LABEL_PREFIX):] if key.startswith(LABEL_PREFIX) else key
        if short not in (*MODES, *(m + "-version" for m in MODES)):
            raise ConfigError(f"{where}: unknown key {key!r} (use {LABEL_PREFIX}enforce, -version, warn, "
                              "audit…)")
        val = str(v)
        if short in MODES and val not in POLICY_LEVELS:
            raise ConfigError(f"{where}: {key}: {val!r} is not privileged, baseline or restricted")
        if short.endswith("-version"):
            try:
                parse_version(val)
            except ValueError as e:
                raise ConfigError(f"{where}: {key}: {e}") from None
        out[short] = val
    return out


@dataclass
class AdmissionConfig:
    """Namespaces' Pod Security labels, defaults and exemptions (docs/admission.md)."""

    defaults: dict[str, str] = field(default_factory=lambda: {"enforce": "privileged", "warn": "privileged",
                                                              "audit": "privileged"})
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)
    exempt_namespaces: frozenset[str] = frozenset()
    exempt_usernames: frozenset[str] = frozenset()
    exempt_runtime_classes: frozenset[str] = frozenset()
    extra_warnings: bool = True
    mutate_run_as_non_root: bool = False
    max_request_bytes: int = DEFAULT_MAX_BYTES

    @classmethod
    def from_dict(cls, data: Any) -> AdmissionConfig:
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ConfigError("config: expected a mapping")
        known = {"defaults", "namespaces", "exemptions", "extraWarnings", "mutate", "maxRequestBytes"}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"config: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        cfg = cls()
        cfg.defaults = {**cfg.defaults, **_parse_labels(data.get("defaults") or {}, "defaults")}
        nss = data.get("namespaces") or {}
        if not isinstance(nss, dict):
            raise ConfigError("namespaces: expected a mapping namespace → labels")
        cfg.namespaces = {str(ns): _parse_labels(labels or {}, f"namespaces.{ns}")
                          for ns, labels in nss.items()}
        ex = data.get("exemptions") or {}
        if not isinstance(ex, dict):
            raise ConfigError("exemptions: expected a mapping")
        cfg.exempt_namespaces = frozenset(map(str, ex.get("namespaces") or []))
        cfg.exempt_usernames = frozenset(map(str, ex.get("usernames") or []))
        cfg.exempt_runtime_classes = frozenset(map(str, ex.get("runtimeClasses") or []))
        cfg.extra_warnings = bool(data.get("extraWarnings", True))
        mutate = data.get("mutate") or {}
        if isinstance(mutate, dict):
            cfg.mutate_run_as_non_root = bool(mutate.get("runAsNonRoot", False))
        mrb = data.get("maxRequestBytes", DEFAULT_MAX_BYTES)
        if not isinstance(mrb, int) or mrb <= 0:
            raise ConfigError("maxRequestBytes: expected a positive integer")
        cfg.max_request_bytes = mrb
        return cfg

    @classmethod
    def load(cls, path: str) -> AdmissionConfig:
        import yaml

        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f)
        except OSError as e:
            raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from None
        try:
            return cls.from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    def policy(self, namespace: str) -> NamespacePolicy:
        labels = {**self.defaults, **self.namespaces.get(namespace, {})}
        modes = {}
        for m in MODES:
            vlabel = labels.get(f"{m}-version", "latest")
            modes[m] = ModePolicy(labels.get(m, "privileged"), parse_version(vlabel), vlabel)
        return NamespacePolicy(modes)


# ---------------------------------------------------------------- evaluation


def _summarize(target: PodTarget, level: str, version: Version) -> list[str]:
    """PSA-style reasons: one entry per control, details of each violation in parentheses."""
    if level == "privileged":
        return []
    by_control: dict[str, list[str]] = {}
    for v in evaluate(target.meta, target.spec, level, version):  # type: ignore[arg-type]
        by_control.setdefault(v.control, []).append(v.message)
    return [f"{c} ({'; '.join(msgs)})" for c, msgs in by_control.items()]


def review(config: AdmissionConfig, body: Any, mutate: bool = False) -> dict[str, Any]:
    """The AdmissionReview response for a request body (already parsed JSON). Raises
    BadRequest for anything that is not an admission.k8s.io/v1 AdmissionReview request."""
    if not isinstance(body, dict):
        raise BadRequest(400, "expected a JSON object (an AdmissionReview)")
    api, kind = body.get("apiVersion"), body.get("kind")
    if kind != "AdmissionReview":
        raise BadRequest(400, f"expected kind AdmissionReview, got {kind!r}")
    if api != "admission.k8s.io/v1":
        raise BadRequest(400, f"unsupported AdmissionReview version {api!r}: this webhook speaks "
                              "admission.k8s.io/v1 (set admissionReviewVersions: [\"v1\"])")
    req = body.get("request")
    if not isinstance(req, dict):
        raise BadRequest(400, "AdmissionReview has no request")
    uid = req.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadRequest(400, "AdmissionReview request has no uid")
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    out = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}

    operation = req.get("operation")
    if operation not in ("CREATE", "UPDATE"):
        return out
    obj = req.get("object")
    if not isinstance(obj, dict):
        raise BadRequest(400, f"{operation} request has no object")
    rkind = (req.get("kind") or {}).get("kind") if isinstance(req.get("kind"), dict) else None
    rkind = rkind or obj.get("kind")
    if isinstance(rkind, str) and not obj.get("kind"):
        obj = {**obj, "kind": rkind}
    sub = req.get("subResource") or ""
    if rkind == "Pod" and sub not in ("", "ephemeralcontainers"):
        return out
    namespace = str(req.get("namespace") or (obj.get("metadata") or {}).get("namespace") or "")
    user_info = req.get("userInfo")
    user = str(user_info.get("username") or "") if isinstance(user_info, dict) else ""
    if namespace in config.exempt_namespaces:
        response["auditAnnotations"] = {"exempt": "namespace"}
        return out
    if user in config.exempt_usernames:
        response["auditAnnotations"] = {"exempt": "user"}
        return out
    targets = [t for t in pod_targets(obj) if isinstance(t, PodTarget)]
    if not targets:
        return out
    if any(t.spec.get("runtimeClassName") in config.exempt_runtime_classes for t in targets):
        response["auditAnnotations"] = {"exempt": "runtimeClass"}
        return out
    if operation == "UPDATE" and rkind == "Pod" and sub == "":
        old = req.get("oldObject")
        if isinstance(old, dict) and old.get("spec") == obj.get("spec"):
            return out  # like PSA: updates that leave the pod spec alone are not re-checked

    if mutate:
        return _mutate(config, obj, targets, out)

    policy = config.policy(namespace)
    warnings: list[str] = []
    audit: dict[str, str] = {}
    enforce = policy.modes["enforce"]
    if rkind in POD_KINDS_ENFORCED:
        audit["enforce-policy"] = str(enforce)
        reasons = [r for t in targets for r in _summarize(t, enforce.level, enforce.version)]
        if reasons:
            meta = obj.get("metadata") or {}
            name = meta.get("name") or meta.get("generateName") or ""
            message = (f'pods "{name}" is forbidden: violates PodSecurity "{enforce}": ' + ", ".join(reasons))
            response["allowed"] = False
            response["status"] = {"status": "Failure", "code": 403, "reason": "Forbidden", "message": message}
    warn = policy.modes["warn"]
    reasons = [r for t in targets for r in _summarize(t, warn.level, warn.version)]
    if reasons:
        warnings.append(f'would violate PodSecurity "{warn}": ' + ", ".join(reasons))
    aud = policy.modes["audit"]
    reasons = [r for t in targets for r in _summarize(t, aud.level, aud.version)]
    if reasons:
        audit["audit-violations"] = f'would violate PodSecurity "{aud}": ' + ", ".join(reasons)
    if config.extra_warnings:
        from lanner.posture.extras import evaluate_extras

        extra = [f"lanner {v.control}: {v.message}" for t in targets for v in
                 evaluate_extras(t.meta, t.spec, frozenset({"hardening.allowPrivilegeEscalation",
                                                            "hardening.runAsUser"}))]
        warnings.extend(extra[:20])
        if len(extra) > 20:
            warnings.append(f"lanner: {len(extra) - 20} more warning(s) not shown")
    if warnings:
        response["warnings"] = warnings
    if audit:
        response["auditAnnotations"] = audit
    return out


def _mutate(config: AdmissionConfig, obj: dict[str, Any], targets: list[PodTarget], out: dict[str, Any]
            ) -> dict[str, Any]:
    from lanner.posture.model import Op
    from lanner.posture.ops import json_patch

    ops: list[Op] = []
    for t in targets:
        for v in evaluate(t.meta, t.spec, "restricted", LATEST):
            if v.control == "runAsNonRoot" and not config.mutate_run_as_non_root:
                continue
            ops.extend(Op(o.kind, (*t.base, *o.path), o.value, o.additive) for o in v.ops if o.additive)
    patch = json_patch(obj, ops)
    if patch:
        out["response"]["patchType"] = "JSONPatch"
        out["response"]["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return out


# ---------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "lanner-admission"
    sys_version = ""
    timeout = 15  # idle keep-alive connections and slow clients

    server: WebhookServer

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            sys.stderr.write(f"admission: {self.address_string()} {format % args}\n")

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": status,
                           "message": message}).encode()
        self._send(status, body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/healthz", "/readyz", "/livez"):
            self._send(200, b"ok\n", "text/plain")
        else:
            self._error(404, f"no such endpoint {path}: use POST /validate, POST /mutate or GET /healthz")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path not in ("/validate", "/mutate", "/"):
            self._error(404, f"no such endpoint {path}: use POST /validate or POST /mutate")
            return
        try:
            body = self._read_body()
            result = review(self.server.config, body, mutate=path == "/mutate")
        except BadRequest as e:
            self._error(e.status, str(e))
            return
        except Exception as e:  # a bug must not take the server down; report it as a 500
            self._error(500, f"internal error: {type(e).__name__}: {e}")
            return
        self._send(200, json.dumps(result).encode())

    def _read_body(self) -> Any:
        ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            self.close_connection = True
            raise BadRequest(415, f"Content-Type must be application/json, got {ctype or 'none'!r}")
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise BadRequest(411, "send the body with a Content-Length (chunked encoding is not accepted)")
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self.close_connection = True
            raise BadRequest(411, "Content-Length is required")
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise BadRequest(400, f"invalid Content-Length {length_text!r}") from None
        limit = self.server.config.max_request_bytes
        if length > limit:
            self.close_connection = True
            if length <= DRAIN_LIMIT:  # read and drop it, so the client sees the answer, not a reset
                left = length
                while left > 0:
                    chunk = self.rfile.read(min(left, 65536))
                    if not chunk:
                        break
                    left -= len(chunk)
            raise BadRequest(413, f"request body of {length} bytes is over the limit of {limit} bytes")
        raw = self.rfile.read(length)
        if len(raw) < length:
            self.close_connection = True
            raise BadRequest(400, f"request body ended after {len(raw)} of {length} bytes")
        try:
            return json.loads(raw)
        except UnicodeDecodeError:
            raise BadRequest(400, "malformed request: body is not UTF-8 JSON") from None
        except json.JSONDecodeError as e:
            raise BadRequest(400, f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None


class WebhookServer(HTTPServer):
    """HTTPS server: accepts on one thread, does TLS and HTTP for each connection in a bounded
    pool, and sheds connections beyond ``max_pending`` instead of queueing without end."""

    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], ssl_context: ssl.SSLContext, config: AdmissionConfig,
                 workers: int = 32, max_pending: int = 4096, verbose: bool = False) -> None:
        super().__init__(address, _Handler)
        self.ssl_context = ssl_context
        self.config = config
        self.verbose = verbose
        self.max_pending = max_pending
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="admission")
        self._pending = 0
        self._lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            if self._pending >= self.max_pending:
                self.shutdown_request(request)
                return
            self._pending += 1
        self._pool.submit(self._work, request, client_address)

    def _work(self, request: socket.socket, client_address: Any) -> None:
        conn: socket.socket = request
        try:
            request.settimeout(10)
            conn = self.ssl_context.wrap_socket(request, server_side=True)
            self.finish_request(conn, client_address)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            with self._lock:
                self._pending -= 1
            self.shutdown_request(conn)

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def make_ssl_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def make_server(host: str, port: int, cert: str, key: str, config: AdmissionConfig,
                verbose: bool = False) -> WebhookServer:
    return WebhookServer((host, port), make_ssl_context(cert, key), config, verbose=verbose)


def serve(host: str, port: int, cert: str, key: str, config: AdmissionConfig) -> None:
    server = make_server(host, port, cert, key, config, verbose=True)
    sys.stderr.write(f"lanner admission: serving https://{host}:{server.server_address[1]} "
                     f"(/validate, /mutate, /healthz); default policy {version_str(LATEST)}\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
