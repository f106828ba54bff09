#!/usr/bin/env bash
# Device stand-ins for the tests: see scripts/install-system-deps.sh.
set -euo pipefail
exec bash "$(dirname "$0")/../install-system-deps.sh"
