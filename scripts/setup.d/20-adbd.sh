#!/usr/bin/env bash
# Device stand-ins for the tests: see scripts/setup-adbd.sh.
set -euo pipefail
exec bash "$(dirname "$0")/../setup-adbd.sh"
