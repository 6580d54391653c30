#!/usr/bin/env bash
# The explorer's browser test drives Debian's chromium through Playwright (pip-installed browsers cannot
# download theirs here). `tools/ensure-chromium.sh` installs it with apt when it is missing and this
# runs as root on Debian (CI); elsewhere it says how, and the browser tests skip (outside CI).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the explorer's browser test"
    apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
else
    echo "chromium not found: install it (Debian: apt-get install chromium) to run the explorer's browser test"
fi
