#!/usr/bin/env bash
# Headless Chromium for the report tests (tests/release/test_report_browser.py): they open the
# generated report.html in a real browser and check that its inline JS drew the plots.
# Debian's own package; idempotent; needs root (apt) when chromium is missing.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "40-chromium: /usr/bin/chromium is missing; run as root to apt-get install it" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
