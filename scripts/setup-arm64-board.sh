#!/usr/bin/env bash
# An emulated aarch64 board for the device-harness tests: an arm64 Debian userland
# (mmdebstrap --variant=extract) with the aarch64 wheels of a TFLite runtime installed from
# the host (pip --platform ... --only-binary=:all: --target), run through qemu-user-static +
# binfmt_misc. The tests reach it over SSH: the host's sshd with ChrootDirectory into this
# rootfs (bind-mounted in a private mount namespace), so the harness runs there as aarch64 code.
#
# Runtime: tflite-runtime 2.14 with numpy<2 (works under bookworm's qemu 7.2; ai-edge-litert
# 2.x needs qemu >= 10 from bookworm-backports, see docs/devices.md).
#
# Idempotent; cached under $EDGEPACK_ARM64_DIR (default .ci/work/arm64). Needs root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/arm64-common.sh
. "$here/arm64-common.sh"

work=${EDGEPACK_ARM64_DIR:-$repo_root/.ci/work/arm64}
rootfs="$work/rootfs"
wheels="$work/wheels"
stamp="$work/.complete-v1"
suite=bookworm
pyver=3.11                      # bookworm's python3
runtime_reqs=("tflite-runtime==2.14.0" "numpy<2")
# Every manylinux tag up to bookworm's glibc (2.36): pip silently falls back to an older
# release when the wheel's tag is not listed (tflite-runtime 2.14 is manylinux_2_34).
platforms=(manylinux2014_aarch64)
for minor in $(seq 17 36); do platforms+=("manylinux_2_${minor}_aarch64"); done

need_packages mmdebstrap qemu-user-static binfmt-support openssh-server openssh-client
ensure_binfmt

if [ -e "$stamp" ]; then
    log "cached: $rootfs"
    exit 0
fi

host_python=$(command -v "python$pyver" || true)
[ -n "$host_python" ] || { need_packages "python$pyver"; host_python=$(command -v "python$pyver"); }
"$host_python" -m pip --version >/dev/null 2>&1 || need_packages python3-pip

mirror=$(debian_mirror)
log "arm64 userland from $mirror ($suite, extract variant)"
rm -rf "$rootfs"
mkdir -p "$work"
mmdebstrap --quiet --arch=arm64 --variant=extract \
    --include=python3,libstdc++6,dash,bash,coreutils \
    --aptopt='Acquire::Languages "none"' \
    "$suite" "$rootfs" "deb $mirror $suite main"
# The extract variant runs no maintainer scripts: give the board a /bin/sh and a /tmp.
[ -e "$rootfs/usr/bin/sh" ] || ln -s dash "$rootfs/usr/bin/sh"
mkdir -p "$rootfs/tmp" "$rootfs/dev" "$rootfs/proc" "$rootfs/sys"
chmod 1777 "$rootfs/tmp"

site="$rootfs/usr/local/lib/python$pyver/dist-packages"
pip_platform=()
for p in "${platforms[@]}"; do pip_platform+=(--platform "$p"); done
log "aarch64 wheels: ${runtime_reqs[*]}"
"$host_python" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    "${pip_platform[@]}" --python-version "$pyver" --implementation cp \
    --dest "$wheels" "${runtime_reqs[@]}"
"$host_python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-index \
    --find-links "$wheels" --only-binary=:all: "${pip_platform[@]}" \
    --python-version "$pyver" --implementation cp --target "$site" "${runtime_reqs[@]}"
ls "$site" | grep -q '^tflite_runtime' || die "tflite_runtime did not land in $site"

# Byte-compile on the host: emulated imports without .pyc take ~15 s (same CPython minor).
"$host_python" -m compileall -q -j 0 -s "$rootfs" -p / "$site" "$rootfs/usr/lib/python$pyver" \
    >/dev/null || log "warning: compileall reported errors (some files stay uncompiled)"

# Sanity check as aarch64 code.
chroot "$rootfs" /usr/bin/python3 -c \
    'import platform, numpy, tflite_runtime; print(platform.machine(), numpy.__version__, tflite_runtime.__version__)' \
    | tee "$work/runtime.txt" >&2
grep -q '^aarch64 ' "$work/runtime.txt" || die "the rootfs python does not run as aarch64"
touch "$stamp"
log "ready: $rootfs"
