#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian 12 machine: Debian packages, the .venv, mounts, BPF objects.
set -euo pipefail
cd "$(dirname "$0")/.."

# python3-venv: the .venv. clang, bpftool, libbpf-dev, libelf-dev: building the CO-RE BPF objects
# (libbpf1, loaded at run time, is already on Debian 12). redis-server/redis-tools: `lanner bench sensor`.
# containerd (with runc), containernetworking-plugins, busybox-static: the container tests' private
# containerd and its locally built images (tests/containers, ../shared/lab/CONTAINERD.md).
. scripts/lib/apt.sh
ensure_debian_packages setup python3-venv clang bpftool libbpf-dev libelf-dev redis-server redis-tools \
    containerd containernetworking-plugins busybox-static

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# Reinstall only when the project metadata changed since the last successful install.
stamp=.venv/.lanner-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[dev]'
    touch "$stamp"
fi

# CRI gRPC stubs: the importable package lanner_cri (api_pb2, api_pb2_grpc) under build/cri, made from
# the shared api.proto by the installed grpcio-tools (generated code checks the grpcio and protobuf
# versions at import, so it is regenerated when the proto or the installed packages change).
# Users put build/cri on sys.path.
SHARED=${LANNER_SHARED:-../shared}
cri_proto="$SHARED/cri/api.proto"
cri_done=build/cri/lanner_cri/api_pb2_grpc.py
if [ ! -f "$cri_done" ] || [ "$cri_proto" -nt "$cri_done" ] || [ "$stamp" -nt "$cri_done" ]; then
    if [ ! -f "$cri_proto" ]; then
        echo "setup: $cri_proto not found (set LANNER_SHARED)" >&2
        exit 2
    fi
    rm -rf build/cri.new
    mkdir -p build/cri.new/proto/lanner_cri build/cri.new/lanner_cri
    cp "$cri_proto" build/cri.new/proto/lanner_cri/api.proto
    .venv/bin/python -m grpc_tools.protoc -I build/cri.new/proto --python_out=build/cri.new \
        --grpc_python_out=build/cri.new --pyi_out=build/cri.new build/cri.new/proto/lanner_cri/api.proto
    : > build/cri.new/lanner_cri/__init__.py
    rm -rf build/cri
    mv build/cri.new build/cri
    echo "setup: CRI stubs generated in build/cri/lanner_cri"
fi

# The kernel file systems the sensor needs; absent on a fresh machine (see docs/install.md).
mount_fs() {  # type, mount point
    if ! mountpoint -q "$2"; then
        if [ "$(id -u)" -ne 0 ]; then
            echo "setup: $2 is not mounted and only root can mount it" >&2
            return 0
        fi
        mkdir -p "$2"
        mount -t "$1" "$1" "$2"
    fi
}
mount_fs tracefs /sys/kernel/tracing
mount_fs securityfs /sys/kernel/security
mount_fs bpf /sys/fs/bpf

bash scripts/build-bpf.sh
bash scripts/setup-deploy.sh  # deploy/: buildah, mmdebstrap, prometheus, kubectl (docs/deploy.md)
