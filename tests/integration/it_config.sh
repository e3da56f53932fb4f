#!/usr/bin/env bash
# A bad configuration exits 2 with exactly one line on stderr that names the key (or the file)
# and the reason; a good one passes --check-config. Checked on every binary that exists.
source "$(dirname "$0")/../support/it_lib.sh"

# expect_config_error DESCRIPTION EXPECTED_TEXT COMMAND...
expect_config_error() {
    local what=$1 expected=$2 rc=0
    shift 2
    "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
    expect_eq 2 "$rc" "exit status for $what"
    expect_eq 1 "$(wc -l <"$WORK/err")" "stderr lines for $what"
    grep -qF -- "$expected" "$WORK/err" || fail "$what: '$expected' not in: $(cat "$WORK/err")"
}

# The gateway refuses to start without a token secret; the checks below need one.
export INTEGRAL_GATEWAY_JWT_SECRET=it-config-secret-0123456789abcdef0123

for bin in "$BIN"/integral-*; do
    name=$(basename "$bin")
    echo '{"log": {"levle": "debug"}}' >"$WORK/unknown.json"
    expect_config_error "$name unknown key" "log.levle: unknown key" \
        "$bin" --config "$WORK/unknown.json" --check-config
    echo '{"http": {"port": "80"}}' >"$WORK/type.json"
    expect_config_error "$name wrong type" "http.port: expected an integer" \
        "$bin" --config "$WORK/type.json" --check-config
    echo '{"http": {"port": 70000}}' >"$WORK/range.json"
    expect_config_error "$name out of range" "http.port: 70000 is out of range" \
        "$bin" --config "$WORK/range.json" --check-config
    expect_config_error "$name missing file" "$WORK/none.json: cannot open" \
        "$bin" --config "$WORK/none.json" --check-config
    printf '{"log": {"level": "info",}}' >"$WORK/syntax.json"
    expect_config_error "$name invalid JSON" "invalid JSON at line 1" \
        "$bin" --config "$WORK/syntax.json" --check-config
    expect_config_error "$name bad environment value" "INTEGRAL_LOG_LEVEL: log.level" \
        env INTEGRAL_LOG_LEVEL=loud "$bin" --check-config
    expect_config_error "$name bad choice" "\"loud\" is not one of debug|info|warn|error" \
        env INTEGRAL_LOG_LEVEL=loud "$bin" --check-config
    rc=0
    "$bin" --no-such-flag >/dev/null 2>&1 || rc=$?
    expect_eq 2 "$rc" "$name unknown flag"
    config="$INTEGRAL_SOURCE_DIR/config/${name#integral-}.json"
    if [ -f "$config" ]; then
        # From the project root, as deploy/integral.sh runs it: configs name files relative to it.
        (cd "$INTEGRAL_SOURCE_DIR" && "$bin" --config "$config" --check-config >/dev/null) ||
            fail "$config does not validate"
    fi
    ok "$name: bad configurations are refused with one line naming the key"
done

if [ -x "$BIN/integral-gateway" ]; then
    expect_config_error "gateway without a secret" "gateway.jwt_secret: " \
        env INTEGRAL_GATEWAY_JWT_SECRET= "$BIN/integral-gateway" --check-config
    expect_config_error "gateway with a short secret" "gateway.jwt_secret: " \
        env INTEGRAL_GATEWAY_JWT_SECRET=short "$BIN/integral-gateway" --check-config
    expect_config_error "gateway with a bad origin" "gateway.allowed_origins: " \
        env INTEGRAL_GATEWAY_ALLOWED_ORIGINS=evil.example "$BIN/integral-gateway" --check-config
    ok "integral-gateway: a missing or short secret and a bad origin are refused"
fi

# config/README.md is generated from the binaries' own key tables: it must be current.
"$INTEGRAL_SOURCE_DIR/config/make-readme.sh" "$BIN" >"$WORK/README.md"
diff -u "$INTEGRAL_SOURCE_DIR/config/README.md" "$WORK/README.md" ||
    fail "config/README.md is stale: run config/make-readme.sh $BIN > config/README.md"
ok "config/README.md documents every key of every binary"
