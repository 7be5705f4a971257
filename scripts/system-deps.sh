#!/usr/bin/env bash
# Installs the system packages the tests use: Graphviz (`dot`) and Chromium
# (for the browser test). Needs root and apt-get; otherwise it only reports.
set -euo pipefail
missing=()
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
    echo "Missing system packages: ${missing[*]}. Install them with your package manager" \
         "(e.g. 'sudo apt-get install ${missing[*]}'); the tests that need them will be skipped."
fi
