#!/usr/bin/env bash
# Every service mounts /healthz, /readyz and /metrics on the common HTTP server. Checked with
# curl and raw sockets against the running embedded Kafka's server: the right status for good,
# malformed, oversized and unknown requests, and the server survives all of them.
source "$(dirname "$0")/../support/it_lib.sh"

URL="http://127.0.0.1:$DEVBROKER_HTTP_PORT"
status() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
# raw REQUEST: sends bytes on a plain socket, prints the status line's code.
raw() {
    $PY - "$DEVBROKER_HTTP_PORT" "$1" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(sys.argv[2].encode().decode("unicode_escape").encode("latin-1"))
data = b""
try:
    while b"\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
except socket.timeout:
    pass
print(data.split(b"\r\n")[0].split(b" ")[1].decode() if data.startswith(b"HTTP/1.1 ") else "none")
PY
}

expect_eq 200 "$(status "$URL/healthz")" "/healthz"
curl -s "$URL/healthz" | grep -q '"status":"ok"' || fail "/healthz body"
expect_eq 200 "$(status "$URL/readyz")" "/readyz"
metrics=$(curl -s "$URL/metrics")
echo "$metrics" | grep -q '^# TYPE integral_build_info gauge' || fail "/metrics lacks build info"
echo "$metrics" | grep -q '^integral_http_requests_total{code="200"} [1-9]' ||
    fail "/metrics does not count requests: $metrics"
ok "/healthz, /readyz and /metrics answer"

expect_eq 404 "$(status "$URL/no/such/route")" "unknown route"
expect_eq 405 "$(status -X POST "$URL/healthz")" "POST to a GET route"
expect_eq 400 "$(raw 'GARBAGE\r\n\r\n')" "garbage request line"
expect_eq 400 "$(raw 'GET /healthz HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n')" \
    "Content-Length with chunked"
big=$(head -c 9000 /dev/zero | tr '\0' a)
expect_eq 431 "$(status -H "X-Big: $big" "$URL/healthz")" "oversized header"
long=$(head -c 3000 /dev/zero | tr '\0' a)
expect_eq 414 "$(status "$URL/$long")" "URL too long"
head -c 100000 /dev/zero >"$WORK/body"
expect_eq 413 "$(status -X POST --data-binary @"$WORK/body" "$URL/healthz")" "body too large"
ok "malformed, oversized and unknown requests get 400/404/405/413/414/431"

expect_eq 200 "$(status "$URL/healthz")" "/healthz after the bad requests"
ok "the server is still up"
