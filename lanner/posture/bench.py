"""``bench_scan(n)``: scan throughput on generated manifests (figures, not a pass/fail test)."""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{i}
  namespace: bench
spec:
  selector: {{matchLabels: {{app: app-{i}}}}}
  template:
    metadata:
      labels: {{app: app-{i}}}
    spec:
      securityContext:
        runAsNonRoot: true
      initContainers:
        - name: init
          image: busybox:1.36
      containers:
        - name: app
          image: registry.example/app:{i}
          ports: [{{containerPort: 8080}}]
          env:
            - name: API_TOKEN
              value: abc{i}
          securityContext:
            allowPrivilegeEscalation: false
            capabilities: {{drop: [ALL]}}
        - name: sidecar
          image: registry.example/proxy:latest
          securityContext:
            privileged: {priv}
"""


def bench_scan(n: int) -> dict[str, Any]:
    """Writes ``n`` Deployments (one multi-document file), scans them in-process and returns
    figures: manifests per second, findings, and the time to load and to check."""
    from lanner.posture.loader import load_paths
    from lanner.posture.scan import ScanOptions, ScanResult, scan_documents

    text = "---\n".join(_DEPLOYMENT.format(i=i, priv="true" if i % 3 == 0 else "false") for i in range(n))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "bench.yaml")
        with open(path, "w") as f:
            f.write(text)
        t0 = time.perf_counter()
        loaded = load_paths([path])
        t1 = time.perf_counter()
        result = ScanResult()
        scan_documents(loaded.documents, ScanOptions(), result)
        t2 = time.perf_counter()
    total = t2 - t0
    return {
        "manifests": n,
        "bytes": len(text),
        "findings": len(result.findings),
        "load_seconds": round(t1 - t0, 4),
        "check_seconds": round(t2 - t1, 4),
        "total_seconds": round(total, 4),
        "manifests_per_second": round(n / total, 1) if total else None,
    }
