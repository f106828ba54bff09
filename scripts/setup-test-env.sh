#!/usr/bin/env bash
# Installs what the test suite needs beyond Python packages, and prepares device stand-ins.
# Idempotent: each step checks before it installs. Needs root (apt) on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
for step in scripts/setup.d/*.sh; do
    [ -e "$step" ] || continue
    echo "== $step"
    bash "$step"
done
