#!/usr/bin/env bash
# Installs every Debian 12 package Integral needs to build, run and test.
# Idempotent and quick when everything is present: apt is only called for what is missing.
#   deploy/deps.sh            build + run + test dependencies
#   deploy/deps.sh --browser  also chromium, nodejs and npm, and the browser tests' one npm
#                             package (playwright-core, pinned by tests/browser/package-lock.json)
#                             with `npm ci` into tests/browser/node_modules (gitignored), when it
#                             is missing or older than the lock file. The tests drive Debian's
#                             /usr/bin/chromium: playwright never downloads a browser.
#   deploy/deps.sh --bench    also the benchmarks' profilers: linux-perf (engine_bench.sh
#                             --perf) and valgrind (tests/bench/engine_instructions.sh)
# The options combine.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
browser=0
bench=0
for arg in "$@"; do
    case $arg in
    --browser) browser=1 ;;
    --bench) bench=1 ;;
    *) echo "deps.sh: unknown option $arg (--browser, --bench)" >&2; exit 2 ;;
    esac
done

# npm ci for tests/browser, unless node_modules matches the lock file already.
browser_modules() {
    local dir=$ROOT/tests/browser
    if [ -f "$dir/node_modules/.package-lock.json" ] &&
        [ ! "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        return 0
    fi
    echo "deps.sh: npm ci in tests/browser" >&2
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}

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
if [ $browser -eq 1 ]; then
    packages+=(chromium nodejs npm)
fi
if [ $bench -eq 1 ]; then
    packages+=(linux-perf valgrind)
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
if [ ${#missing[@]} -eq 0 ]; then
    [ $browser -eq 0 ] || browser_modules
    exit 0
fi

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
[ $browser -eq 0 ] || browser_modules
