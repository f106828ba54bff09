#!/usr/bin/env bash
# Device stand-ins for the tests: see scripts/setup-arm64-board.sh.
set -euo pipefail
exec bash "$(dirname "$0")/../setup-arm64-board.sh"
