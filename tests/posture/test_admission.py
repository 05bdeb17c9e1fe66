"""The admission webhook over real HTTPS on 127.0.0.1 with generated certificates."""

from __future__ import annotations

import base64
import copy
import http.client
import json
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lanner.posture.admission import AdmissionConfig, WebhookServer, make_server, review
from lanner.posture.certs import generate_self_signed
from lanner.posture.pss import evaluate, parse_version
from tests.posture.conftest import run_lanner

CONFIG = {
    "defaults": {"enforce": "baseline", "warn": "restricted", "audit": "restricted"},
    "namespaces": {
        "prod": {"pod-security.kubernetes.io/enforce": "restricted"},
        "legacy": {"pod-security.kubernetes.io/enforce": "restricted",
                   "pod-security.kubernetes.io/enforce-version": "v1.22",
                   "pod-security.kubernetes.io/warn": "privileged",
                   "pod-security.kubernetes.io/audit": "privileged"},
        "open": {"enforce": "privileged", "warn": "privileged", "audit": "privileged"},
    },
    "exemptions": {"namespaces": ["kube-system"]},
    "extraWarnings": False,
}

GOOD_POD: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "good", "namespace": "prod"},
    "spec": {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "app", "image": "app:1", "securityContext": {
            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
    },
}


def pod(**changes: Any) -> dict[str, Any]:
    p = copy.deepcopy(GOOD_POD)
    sc = p["spec"]["containers"][0]["securityContext"]
    for k, v in changes.items():
        if v is None:
            sc.pop(k, None)
        else:
            sc[k] = v
    return p


def admission_review(obj: dict[str, Any], namespace: str = "prod", operation: str = "CREATE",
                     uid: str = "u-1") -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": {"group": "", "version": "v1", "kind": obj["kind"]},
        "resource": {"group": "", "version": "v1", "resource": obj["kind"].lower() + "s"},
        "namespace": namespace, "operation": operation, "userInfo": {"username": "alice"},
        "object": obj}}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    d = tmp_path_factory.mktemp("certs")
    cert, key, ca = generate_self_signed(str(d))
    assert base64.b64decode(ca).startswith(b"-----BEGIN CERTIFICATE-----")
    return cert, key


@pytest.fixture(scope="module")
def server(certs: tuple[str, str]) -> Iterator[WebhookServer]:
    srv = make_server("127.0.0.1", 0, certs[0], certs[1], AdmissionConfig.from_dict(CONFIG))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


class Client:
    def __init__(self, server: WebhookServer, cafile: str) -> None:
        self.port = server.server_address[1]
        self.ctx = ssl.create_default_context(cafile=cafile)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def post(self, path: str, doc: Any) -> tuple[int, dict[str, Any]]:
        status, body = self.request("POST", path, json.dumps(doc).encode(),
                                    {"Content-Type": "application/json"})
        return status, json.loads(body)


@pytest.fixture(scope="module")
def client(server: WebhookServer, certs: tuple[str, str]) -> Client:
    return Client(server, certs[0])


def test_healthz(client: Client) -> None:
    assert client.request("GET", "/healthz") == (200, b"ok\n")
    status, body = client.request("GET", "/nope")
    assert status == 404 and b"/healthz" in body


def test_allowed(client: Client) -> None:
    status, out = client.post("/validate", admission_review(GOOD_POD))
    assert status == 200
    assert out["apiVersion"] == "admission.k8s.io/v1" and out["kind"] == "AdmissionReview"
    resp = out["response"]
    assert resp["uid"] == "u-1" and resp["allowed"] is True
    assert "warnings" not in resp and "status" not in resp


def test_denied_with_reasons(client: Client) -> None:
    bad = pod(privileged=True, allowPrivilegeEscalation=None)
    status, out = client.post("/validate", admission_review(bad))
    resp = out["response"]
    assert status == 200 and resp["allowed"] is False
    assert resp["status"]["code"] == 403 and resp["status"]["reason"] == "Forbidden"
    msg = resp["status"]["message"]
    assert msg.startswith('pods "good" is forbidden: violates PodSecurity "restricted:latest": ')
    assert 'privileged (container "app" must not set securityContext.privileged=true)' in msg
    assert "allowPrivilegeEscalation (" in msg
    assert resp["auditAnnotations"]["enforce-policy"] == "restricted:latest"


def test_warned_not_denied(client: Client) -> None:
    # namespace "dev" is not configured: the defaults enforce baseline and warn restricted
    _, out = client.post("/validate", admission_review(pod(allowPrivilegeEscalation=None), "dev"))
    resp = out["response"]
    assert resp["allowed"] is True
    (warning,) = resp["warnings"]
    assert warning.startswith('would violate PodSecurity "restricted:latest": allowPrivilegeEscalation')
    assert resp["auditAnnotations"]["audit-violations"].startswith("would violate PodSecurity")
    # a baseline violation in the same namespace is denied
    _, out = client.post("/validate", admission_review(pod(privileged=True), "dev"))
    assert out["response"]["allowed"] is False
    assert 'violates PodSecurity "baseline:latest"' in out["response"]["status"]["message"]


def test_version_pinned_namespace(client: Client) -> None:
    root = pod(runAsUser=0)  # runAsUser is a restricted control only from v1.23
    assert client.post("/validate", admission_review(root, "legacy"))[1]["response"]["allowed"] is True
    assert client.post("/validate", admission_review(root, "prod"))[1]["response"]["allowed"] is False


def test_workloads_are_warned_not_enforced(client: Client) -> None:
    bad = pod(privileged=True)
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "prod"},
              "spec": {"template": {"metadata": {}, "spec": bad["spec"]}}}
    resp = client.post("/validate", admission_review(deploy))[1]["response"]
    assert resp["allowed"] is True
    assert any("privileged" in w for w in resp["warnings"])


def test_exempt_namespace_and_other_operations(client: Client) -> None:
    bad = pod(privileged=True)
    resp = client.post("/validate", admission_review(bad, "kube-system"))[1]["response"]
    assert resp["allowed"] is True and resp["auditAnnotations"] == {"exempt": "namespace"}
    resp = client.post("/validate", admission_review(bad, "prod", operation="DELETE"))[1]["response"]
    assert resp["allowed"] is True
    resp = client.post("/validate", admission_review(bad, "open"))[1]["response"]
    assert resp["allowed"] is True and "warnings" not in resp


def _apply_patch(doc: Any, patch: list[dict[str, Any]]) -> Any:
    doc = copy.deepcopy(doc)
    for op in patch:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        if op["op"] in ("add", "replace"):
            if isinstance(parent, list):
                parent.append(op["value"]) if last == "-" else parent.insert(int(last), op["value"])
            else:
                parent[last] = op["value"]
        elif op["op"] == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
    return doc


def test_mutate_fills_in_secure_defaults(client: Client) -> None:
    bare = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare"},
            "spec": {"containers": [{"name": "a", "image": "a:1"},
                                    {"name": "b", "image": "b:1", "securityContext": {"privileged": True}}]}}
    status, out = client.post("/mutate", admission_review(bare, "dev"))
    resp = out["response"]
    assert status == 200 and resp["allowed"] is True and resp["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(resp["patch"]))
    patched = _apply_patch(bare, patch)
    spec = patched["spec"]
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in spec["containers"]:
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # only unset fields are filled in: an explicit privileged: true is left for validation to judge
    assert spec["containers"][1]["securityContext"]["privileged"] is True
    left = {v.control for v in evaluate(patched["metadata"], spec, "restricted", parse_version("latest"))}
    assert left == {"privileged", "runAsNonRoot"}
    # a pod that already has everything gets no patch
    resp = client.post("/mutate", admission_review(GOOD_POD))[1]["response"]
    assert "patch" not in resp


@pytest.mark.parametrize(("body", "headers", "status", "needle"), [
    (b"{not json", None, 400, "malformed JSON at line 1 column 2"),
    (b"[]", None, 400, "expected a JSON object"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
                 "request": {"uid": "x"}}).encode(), None, 400, "unsupported AdmissionReview version"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                 "request": {"operation": "CREATE"}}).encode(), None, 400, "no uid"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "Pod"}).encode(), None, 400, "AdmissionReview"),
    (b"{}", {"Content-Type": "text/plain"}, 415, "Content-Type must be application/json"),
    (b"\xff\xfe\x00", None, 400, "not UTF-8"),
])
def test_malformed_requests_get_4xx(client: Client, body: bytes, headers: dict[str, str] | None,
                                    status: int, needle: str) -> None:
    got, raw = client.request("POST", "/validate", body, headers or {"Content-Type": "application/json"})
    assert got == status
    assert needle in json.loads(raw)["message"]


def test_oversized_request_is_refused_unread(client: Client) -> None:
    big = b'{"pad": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    status, raw = client.request("POST", "/validate", big, {"Content-Type": "application/json"})
    assert status == 413 and b"over the limit" in raw
    assert client.request("GET", "/healthz")[0] == 200
    # a huge announced body is refused from the headers alone
    conn = http.client.HTTPSConnection("127.0.0.1", client.port, context=client.ctx, timeout=30)
    conn.putrequest("POST", "/validate")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(1 << 30))
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413 and b"over the limit" in resp.read()
    conn.close()


def test_burst_of_1000_concurrent_requests(client: Client) -> None:
    n = 1000
    barrier = threading.Barrier(n, timeout=60)
    results: list[int] = []
    lock = threading.Lock()
    docs = [json.dumps(admission_review(pod(privileged=i % 2 == 0), uid=f"b-{i}")).encode() for i in range(n)]

    def one(i: int) -> None:
        try:
            barrier.wait()
            status, raw = client.request("POST", "/validate", docs[i], {"Content-Type": "application/json"})
            resp = json.loads(raw)["response"]
            ok = status == 200 and resp["uid"] == f"b-{i}" and resp["allowed"] is (i % 2 == 1)
        except Exception:
            ok = False
        with lock:
            results.append(1 if ok else 0)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    elapsed = time.perf_counter() - start
    assert len(results) == n and sum(results) == n, f"{sum(results)}/{len(results)} ok in {elapsed:.1f}s"
    assert client.request("GET", "/healthz")[0] == 200


def test_review_function_without_http() -> None:
    cfg = AdmissionConfig.from_dict(CONFIG)
    out = review(cfg, admission_review(pod(privileged=True)))
    assert out["response"]["allowed"] is False


def test_config_errors_are_clear(tmp_path: Path) -> None:
    from lanner.posture.admission import ConfigError

    with pytest.raises(ConfigError, match="not privileged, baseline or restricted"):
        AdmissionConfig.from_dict({"namespaces": {"a": {"pod-security.kubernetes.io/enforce": "strict"}}})
    with pytest.raises(ConfigError, match=r"v1\.NN"):
        AdmissionConfig.from_dict({"defaults": {"enforce-version": "v9"}})
    bad = tmp_path / "c.yaml"
    bad.write_text("namespaces: [")
    r = run_lanner("admission", "--generate-certs", str(tmp_path / "c"), "-c", str(bad), "--port", "0",
                   "--host", "127.0.0.1")
    assert r.returncode == 2 and "invalid YAML" in r.stderr and "Traceback" not in r.stderr


def test_generate_only(tmp_path: Path) -> None:
    r = run_lanner("admission", "--generate-certs", str(tmp_path), "--generate-only", "--san", "lanner.lanner.svc")
    assert r.returncode == 0 and "caBundle:" in r.stderr
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "lanner.lanner.svc" in names.get_values_for_type(x509.DNSName)
    assert (tmp_path / "tls.key").stat().st_mode & 0o077 == 0
    r = run_lanner("admission")
    assert r.returncode == 2 and "--cert" in r.stderr
