#!/usr/bin/env bash
# Installs every Debian 12 package Integral needs to build, run and test.
# Idempotent and quick when everything is present: apt is only called for what is missing.
#   deploy/deps.sh            build + run + test dependencies
#   deploy/deps.sh --browser  also chromium (the browser tests)
set -euo pipefail

packages=(
    # build
    build-essential cmake pkg-config git
    libuv1-dev librdkafka-dev libhiredis-dev libcjson-dev libssl-dev
    libhttp-parser-dev libwslay-dev libjwt-dev libcmocka-dev
    # run
    redis-server
    # independent clients used by the tests and the demo
    kcat redis-tools curl python3 python3-websockets python3-confluent-kafka python3-redis
)
if [ "${1:-}" = "--browser" ]; then
    packages+=(chromium nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
# nodejs may come from another repository as one package with npm inside it.
if command -v node >/dev/null && command -v npm >/dev/null; then
    kept=()
    for p in "${missing[@]}"; do [ "$p" = nodejs ] || [ "$p" = npm ] || kept+=("$p"); done
    missing=("${kept[@]}")
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "deps.sh: missing packages: ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
    exit 1
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts a system redis-server on 6379 when the package is installed; Integral runs
# its own instances on their own ports and never uses that one.
