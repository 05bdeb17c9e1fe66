#!/usr/bin/env bash
# Build Lanner's container image with buildah from a locally bootstrapped Debian base (no container
# registry is reachable here). `make image` runs it; tests/deploy runs it with a private storage.
#
#   scripts/build-image.sh [--tag REF] [--root DIR --runroot DIR] [--oci-archive FILE]
#
# 1. base: a bookworm root file system made by mmdebstrap from the Debian mirror, cached as
#    build/image/base-bookworm.tar (remade when BASE_PACKAGES change), imported into buildah as
#    localhost/lanner-base:bookworm (re-imported when the tarball changed);
# 2. wheels: Lanner and its dependencies at the versions .venv runs, from a copy of the sources;
# 3. context: the wheels, build/bpf/*.o and build/cri/lanner_cri (made by `make setup`);
# 4. buildah build -f deploy/image/Containerfile; with --oci-archive, also an OCI archive of it
#    (for `ctr -n k8s.io images import` on a node or `skopeo copy` to a registry).
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
tag="localhost/lanner:$version"
archive=""
storage=()
while [ $# -gt 0 ]; do
    case "$1" in
        --tag) tag=$2; shift 2 ;;
        --root|--runroot) storage+=("$1" "$2"); shift 2 ;;
        --oci-archive) archive=$2; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-image: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

for tool in buildah mmdebstrap; do
    if ! command -v "$tool" >/dev/null; then
        echo "build-image: $tool not found: run \`make setup\` (scripts/setup-deploy.sh installs it)" >&2
        exit 2
    fi
done
if [ "$(id -u)" -ne 0 ]; then
    echo "build-image: needs root (mmdebstrap and buildah's storage)" >&2
    exit 2
fi
if [ ! -f build/bpf/sensor.bpf.o ] || [ ! -f build/cri/lanner_cri/api_pb2_grpc.py ] || [ ! -x .venv/bin/pip ]; then
    echo "build-image: build/bpf, build/cri or .venv missing: run \`make setup\` first" >&2
    exit 2
fi

bah() { buildah "${storage[@]}" "$@"; }
t0=$(date +%s)
out=build/image
mkdir -p "$out"

# --- 1. the base ---------------------------------------------------------------------------------
# python3 + python3-venv: the interpreter and the venv the image installs into; libbpf1: the BPF
# loader the sensor calls through ctypes; libstdc++6: grpcio's extension (the CRI client);
# ca-certificates: HTTPS outputs (falcosidekick, webhooks); tini: the entrypoint, which passes
# signals on to lanner (deploy/image/Containerfile says why).
BASE_PACKAGES="python3,python3-venv,libbpf1,libstdc++6,ca-certificates,tini"
MIRROR=${LANNER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY=${LANNER_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
base_tar=$out/base-bookworm.tar
base_key="bookworm $BASE_PACKAGES"
if [ ! -s "$base_tar" ] || [ "$(cat "$base_tar.key" 2>/dev/null)" != "$base_key" ]; then
    echo "build-image: bootstrapping the Debian base ($BASE_PACKAGES) into $base_tar"
    rm -f "$base_tar.tmp"
    mmdebstrap --quiet --variant=essential --include="$BASE_PACKAGES" \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --format=tar bookworm "$base_tar.tmp" \
        "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" "deb $SECURITY bookworm-security main"
    mv "$base_tar.tmp" "$base_tar"
    sha256sum "$base_tar" | cut -d' ' -f1 > "$base_tar.sha256"
    echo "$base_key" > "$base_tar.key"
fi
[ -s "$base_tar.sha256" ] || sha256sum "$base_tar" | cut -d' ' -f1 > "$base_tar.sha256"
base_sha=$(cat "$base_tar.sha256")
base_ref=localhost/lanner-base:bookworm
# The previous build of a name is removed once the name has moved on (no pile of untagged images).
drop_replaced() {  # name, previous image id
    if [ -n "$2" ] && [ "$(bah images --quiet --no-trunc "$1" 2>/dev/null)" != "$2" ]; then
        bah rmi "$2" >/dev/null 2>&1 || true
    fi
}
have=$(bah inspect --type image --format '{{index .OCIv1.Config.Labels "dev.lanner.base.sha256"}}' "$base_ref" 2>/dev/null || true)
if [ "$have" != "$base_sha" ]; then
    echo "build-image: importing the base as $base_ref"
    old_base=$(bah images --quiet --no-trunc "$base_ref" 2>/dev/null || true)
    ctr=$(bah from --quiet scratch)
    bah add --quiet "$ctr" "$base_tar" / >/dev/null
    bah config --label "dev.lanner.base.sha256=$base_sha" --env LANG=C.UTF-8 --cmd /bin/sh "$ctr"
    bah commit --quiet --rm "$ctr" "$base_ref" >/dev/null
    drop_replaced "$base_ref" "$old_base"
fi

# --- 2. the wheels -------------------------------------------------------------------------------
rm -rf "$out/src" "$out/context"
mkdir -p "$out/src" "$out/context/wheels" "$out/context/bpf" "$out/context/cri"
cp pyproject.toml README.md "$out/src/"
cp -r lanner "$out/src/"
find "$out/src" -name __pycache__ -prune -exec rm -rf {} +
# The versions .venv runs: the CRI stubs in build/cri were generated for its grpcio and protobuf.
.venv/bin/pip freeze --exclude-editable | grep -E '^[A-Za-z0-9_.-]+==' > "$out/constraints.txt"
if ! .venv/bin/pip wheel --quiet --disable-pip-version-check --wheel-dir "$out/context/wheels" \
        --constraint "$out/constraints.txt" "$out/src" > "$out/wheels.log" 2>&1; then
    cat "$out/wheels.log" >&2
    echo "build-image: building the wheels failed (log above, also in $out/wheels.log)" >&2
    exit 1
fi

# --- 3. the rest of the context ------------------------------------------------------------------
cp build/bpf/*.bpf.o "$out/context/bpf/"
cp -r build/cri/lanner_cri "$out/context/cri/"
find "$out/context/cri" -name __pycache__ -prune -exec rm -rf {} +

# --- 4. the image --------------------------------------------------------------------------------
# --isolation chroot: the RUN step (a pip install from local wheels) needs no OCI runtime and no
# cgroup. buildah's default, an OCI runtime, works here too with runc; crun, the default runtime on
# some systems, cannot run on hybrid cgroup hosts like this one.
old_image=$(bah images --quiet --no-trunc "$tag" 2>/dev/null || true)
bah build --quiet --isolation chroot --build-arg "BASE=$base_ref" --layers=false \
    -f deploy/image/Containerfile -t "$tag" "$out/context" >/dev/null
drop_replaced "$tag" "$old_image"
if [ -n "$archive" ]; then
    rm -f "$archive"
    bah push --quiet "$tag" "oci-archive:$archive:$tag"
fi
size=$(bah images --format '{{.Size}}' "$tag" 2>/dev/null | head -1)
echo "build-image: $tag ($size) built in $(( $(date +%s) - t0 )) s${archive:+, archive $archive}"
