# Sourced by the set-up scripts. ensure_debian_packages [--no-recommends] WHO PKG...: install the
# Debian packages that are missing (nothing when none is), or exit 2 saying which when not root.
ensure_debian_packages() {
    local opts=()
    if [ "$1" = --no-recommends ]; then
        opts+=(--no-install-recommends)
        shift
    fi
    local who=$1 pkg
    shift
    local need=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    [ ${#need[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "$who: missing Debian packages (${need[*]}) and not root to install them" >&2
        exit 2
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${opts[@]}" "${need[@]}" >/dev/null
}
