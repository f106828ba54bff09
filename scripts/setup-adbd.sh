#!/usr/bin/env bash
# A real adb peer for the adb transport tests: Debian's adbd (bookworm-backports) inside an
# arm64 Debian rootfs, run through qemu-user. The tests start adbd in a chroot with ADBD_PORT
# and reach it with the host's real `adb` client over TCP.
#
# There is no Android system here: `getprop` is a small stand-in script installed below, and
# the tests push a stand-in "benchmark_model" (see docs/devices.md for where the boundary is).
#
# Idempotent; cached under $EDGEPACK_ADBD_DIR (default .ci/work/adbd). Needs root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/arm64-common.sh
. "$here/arm64-common.sh"

work=${EDGEPACK_ADBD_DIR:-$repo_root/.ci/work/adbd}
rootfs="$work/rootfs"
stamp="$work/.complete-v2"
suite=bookworm

need_packages adb mmdebstrap qemu-user-static binfmt-support util-linux
ensure_binfmt

if [ -e "$stamp" ]; then
    log "cached: $rootfs"
    exit 0
fi

mirror=$(debian_mirror)
log "building arm64 adbd rootfs from $mirror ($suite + $suite-backports)"
rm -rf "$rootfs"
mkdir -p "$work"
# The extract variant unpacks adbd, its dependencies and the tools the adb transport calls
# on a device (sh, mkdir, chmod, rm, cat, sha256sum, uname, taskset) without running
# maintainer scripts under emulation: ~9 s instead of ~60 s for a configured system.
mmdebstrap --quiet --arch=arm64 --variant=extract \
    --include=adbd,dash,bash,coreutils,util-linux,grep,sed \
    --aptopt="APT::Default-Release \"$suite-backports\"" \
    --aptopt='Acquire::Languages "none"' \
    "$suite" "$rootfs" \
    "deb $mirror $suite main" "deb $mirror $suite-backports main"
[ -e "$rootfs/bin/sh" ] || [ -e "$rootfs/usr/bin/sh" ] || ln -s dash "$rootfs/usr/bin/sh"
mkdir -p "$rootfs/dev" "$rootfs/proc" "$rootfs/sys" "$rootfs/tmp" "$rootfs/usr/local/bin"
chmod 1777 "$rootfs/tmp"

# Android's scratch dir for pushed binaries, world-writable like on a phone.
mkdir -p "$rootfs/data/local/tmp"
chmod 1777 "$rootfs/data/local/tmp"

# getprop stand-in: the properties a phone reports, from a plain key=value file.
mkdir -p "$rootfs/etc/edgepack"
cat > "$rootfs/etc/edgepack/build.prop" <<'PROPS'
ro.product.model=edgepack adbd stand-in
ro.product.manufacturer=Debian
ro.product.cpu.abi=arm64-v8a
ro.product.cpu.abilist=arm64-v8a
ro.build.version.release=14
ro.build.version.sdk=34
ro.soc.model=qemu-aarch64
PROPS
cat > "$rootfs/usr/local/bin/getprop" <<'GETPROP'
#!/bin/sh
# Stand-in for Android's getprop: reads /etc/edgepack/build.prop (key=value lines).
props=/etc/edgepack/build.prop
if [ "$#" -eq 0 ]; then
    sed 's/^\([^=]*\)=\(.*\)$/[\1]: [\2]/' "$props"
    exit 0
fi
value=$(grep -m1 "^$1=" "$props" | cut -d= -f2-)
printf '%s\n' "${value:-$2}"
GETPROP
chmod 755 "$rootfs/usr/local/bin/getprop"

adbd_bin=$(chroot "$rootfs" sh -c 'command -v adbd || ls /usr/lib/android-sdk/platform-tools/adbd 2>/dev/null' || true)
[ -n "$adbd_bin" ] || die "adbd was not installed in $rootfs"
printf '%s\n' "$adbd_bin" > "$work/adbd-path"
touch "$stamp"
log "ready: $rootfs (adbd at $adbd_bin)"
