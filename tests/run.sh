#!/usr/bin/env bash
# README's test command: installs what is missing, builds, and runs every test with ctest
# (unit tests, then integration tests against a real redis-server and the embedded Kafka,
# the web UI's in Debian's headless chromium among them: deps.sh --browser installs chromium,
# node and the browser tests' npm package).
#
#   tests/run.sh [BUILD_DIR] [ctest arguments...]      (BUILD_DIR defaults to ./build-test)
#
# Environment: INTEGRAL_SANITIZE=ON builds with AddressSanitizer + UBSan (CI does),
# INTEGRAL_WERROR=ON makes warnings errors (CI does), CMAKE_BUILD_TYPE (default Debug).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build-test}
shift || true

"$ROOT/deploy/deps.sh" --browser
cmake -S "$ROOT" -B "$BUILD" \
    -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-Debug}" \
    -DINTEGRAL_SANITIZE="${INTEGRAL_SANITIZE:-OFF}" \
    -DINTEGRAL_WERROR="${INTEGRAL_WERROR:-OFF}" >/dev/null
cmake --build "$BUILD" -j "$(nproc)"

# Sanitizers: any report fails the test that triggered it; leaks are reported at exit.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$ROOT/tests/support/lsan.supp:print_suppressions=0}

cd "$BUILD"
ctest --output-on-failure --timeout 600 "$@"
