# Shared helpers for the arm64 stand-ins (sourced by setup-arm64-board.sh and setup-adbd.sh).
# Needs root: installs Debian packages and registers qemu-aarch64 with binfmt_misc.

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0): it installs packages, mounts and chroots"
# Default caches live in the checkout (ignored by git), wherever the script is called from.
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The Debian mirror of THIS machine's apt sources (never hard-coded in the repo).
debian_mirror() {
    local src=/etc/apt/sources.list.d/debian.sources uri=""
    if [ -r "$src" ]; then
        uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$src")
    fi
    if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' /etc/apt/sources.list)
    fi
    [ -n "$uri" ] || die "cannot derive a Debian mirror from /etc/apt/sources.list.d/debian.sources"
    printf '%s\n' "${uri%/}"
}

# Install host packages that are missing (one apt-get update at most).
need_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    log "installing host packages: ${missing[*]}"
    # Wait for a concurrent apt/dpkg run (another set-up script) instead of failing on its lock.
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
}

# qemu-user-static registered for aarch64 ELF binaries, with the F flag so chroots work.
ensure_binfmt() {
    if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
            || die "cannot mount binfmt_misc (the container needs it for qemu-user)"
    fi
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 \
            || update-binfmts --import qemu-aarch64 >/dev/null 2>&1 || true
    fi
    grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null \
        || die "qemu-aarch64 is not registered with binfmt_misc"
    grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
        || die "qemu-aarch64 binfmt entry lacks the F flag; chroots cannot run aarch64 code"
}
