#!/usr/bin/env bash
# Build the CO-RE BPF objects: vmlinux.h from this kernel's BTF, then clang for every
# lanner/sensor/bpf/*.bpf.c (and lanner/response/bpf/*.bpf.c when present) into build/bpf/.
# Rebuilds only what is older than its source, its headers or vmlinux.h.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/bpf
mkdir -p "$out"
if [ ! -s build/vmlinux.h ]; then
    if [ ! -r /sys/kernel/btf/vmlinux ]; then
        echo "build-bpf: /sys/kernel/btf/vmlinux is missing: this kernel has no BTF (CONFIG_DEBUG_INFO_BTF)" >&2
        exit 2
    fi
    bpftool btf dump file /sys/kernel/btf/vmlinux format c > build/vmlinux.h.tmp
    mv build/vmlinux.h.tmp build/vmlinux.h
fi
shopt -s nullglob
for src in lanner/*/bpf/*.bpf.c; do
    obj="$out/$(basename "${src%.c}").o"
    dir=$(dirname "$src")
    if [ -f "$obj" ] && [ "$obj" -nt "$src" ] && [ "$obj" -nt build/vmlinux.h ] \
        && [ -z "$(find "$dir" -name '*.h' -newer "$obj")" ]; then
        continue
    fi
    clang -target bpf -D__TARGET_ARCH_x86 -O2 -g -Wall -Wno-unused-function \
        -I build -I "$dir" -c "$src" -o "$obj.tmp"
    mv "$obj.tmp" "$obj"
    echo "build-bpf: $obj"
done

# The benchmark's native load generator.
if [ ! -x build/loadgen ] || [ lanner/bench/loadgen.c -nt build/loadgen ]; then
    gcc -O2 -Wall -o build/loadgen lanner/bench/loadgen.c
    echo "build-bpf: build/loadgen"
fi
