#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian 12 machine: Debian packages, the .venv, mounts, BPF objects.
set -euo pipefail
cd "$(dirname "$0")/.."

# python3-venv: the .venv. clang, bpftool, libbpf-dev, libelf-dev: building the CO-RE BPF objects
# (libbpf1, loaded at run time, is already on Debian 12). redis-server/redis-tools: `lanner bench sensor`.
need_apt=()
for pkg in python3-venv clang bpftool libbpf-dev libelf-dev redis-server redis-tools; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing Debian packages (${need_apt[*]}) and not root to install them" >&2
        exit 2
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

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
