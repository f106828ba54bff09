#!/bin/sh
# System packages the test suite needs on a bare Debian/Ubuntu CI machine. Idempotent: it
# installs only what is missing, so running it twice is cheap.
#   - openssh-server: tests/bench start a real sshd on 127.0.0.1 (no systemd, no service);
#     it brings ssh-keygen (openssh-client) too.
#   - gcc + libc6-dev: the tests compile a tiny TFLite external delegate (.so).
# Run as root (or through sudo). Package indexes come from the machine's own apt sources.
set -eu

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

missing=""
[ -x /usr/sbin/sshd ] || missing="$missing openssh-server"
command -v ssh-keygen >/dev/null 2>&1 || missing="$missing openssh-client"
command -v cc >/dev/null 2>&1 || missing="$missing gcc libc6-dev"

if [ -z "$missing" ]; then
    echo "install-system-deps: nothing to do (sshd, ssh-keygen and cc present)"
    exit 0
fi

echo "install-system-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# Wait for a concurrent apt/dpkg run instead of failing on its lock.
$SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
# shellcheck disable=SC2086  # word splitting of the package list is intended
$SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $missing
# The Debian package may try to start the service; the tests run their own sshd, so an
# unstarted (or absent) system service is fine.
[ -x /usr/sbin/sshd ] || { echo "install-system-deps: /usr/sbin/sshd still missing" >&2; exit 1; }
echo "install-system-deps: done"
