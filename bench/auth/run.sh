#!/usr/bin/env bash
# Benchmarks auth-server's /api/ably-jwt on loopback against Ably's documented
# Express handler (Node 24) and a bare axum route (this machine's ceiling).
#
# Usage: bench/auth/run.sh            (from anywhere; ROUNDS=5 DURATION=10s PIN=1)
# Needs: wrk (apt-get install wrk), npm (fetches express, jsonwebtoken, node@24).
# Each round runs every target once, in turn (interleaved), so drift on a
# shared machine hits all of them alike; the table reports medians.
set -euo pipefail
ROUNDS=${ROUNDS:-5}
HERE=$(cd "$(dirname "$0")" && pwd)
PIN_DEFAULT=1
. "$HERE/lib.sh"

echo "==> building" >&2
cargo build --release -p auth-server --manifest-path "$ROOT/Cargo.toml" >&2
cargo build --release --manifest-path "$HERE/hello/Cargo.toml" --target-dir "$TARGET_DIR" >&2
(cd "$HERE/express" && npm ci --no-audit --no-fund --silent >&2)
NODE="$HERE/express/node_modules/.bin/node"
AUTH="$TARGET_DIR/release/auth-server"
HELLO="$TARGET_DIR/release/bench-hello"
"$NODE" "$HERE/express/tokens.js" "$WORK"

echo "==> starting servers" >&2
start jwks "$NODE" "$HERE/express/jwks.js" "$WORK/jwks.json"
# Default logging (info: one line per issued credential), and warn only.
AUTH_BIND=127.0.0.1:0 AUTH_RATE_LIMIT_PER_USER=off AUTH_RATE_LIMIT_PER_IP=off \
  start auth "$AUTH"
AUTH_BIND=127.0.0.1:0 AUTH_RATE_LIMIT_PER_USER=off AUTH_RATE_LIMIT_PER_IP=off RUST_LOG=warn \
  start authquiet "$AUTH"
AUTH_BIND=127.0.0.1:0 AUTH_RATE_LIMIT_PER_USER=off AUTH_RATE_LIMIT_PER_IP=off \
  AUTH_APP_JWT_SECRET= AUTH_JWKS_URL="$URL_jwks" AUTH_JWT_ALGORITHMS=RS256 \
  AUTH_JWT_ISSUER=https://idp.bench.invalid/ AUTH_JWT_AUDIENCE=ably-auth-bench \
  start authrs "$AUTH"
start express "$NODE" "$HERE/express/server.js"
start hello "$HELLO"
HS256=$(cat "$WORK/app-hs256.jwt")
RS256=$(cat "$WORK/app-rs256.jwt")
# Sanity: every target answers 200 before we measure it.
for pair in "auth:$HS256" "authquiet:$HS256" "authrs:$RS256" "express:-" "hello:-"; do
  name=${pair%%:*}; token=${pair#*:}; url_var="URL_$name"
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "${!url_var}/api/ably-jwt")
  [ "$code" = 200 ] || { echo "$name answered $code" >&2; exit 1; }
done

echo "==> $ROUNDS interleaved rounds of $DURATION, wrk -t1 -c$CONNECTIONS" >&2
for round in $(seq 1 "$ROUNDS"); do
  for name in hello auth authquiet authrs express; do
    token=$HS256; [ "$name" = authrs ] && token=$RS256
    result=$(bench "$name" -H "Authorization: Bearer $token")
    echo "$name $result" >>"$WORK/results.txt"
    echo "  round $round $name: $result" >&2
  done
done

# Ready time: spawn to the ready line, 10 starts, median.
for _ in $(seq 1 10); do
  python3 - "$AUTH" >>"$WORK/ready.txt" <<'PY'
import os, subprocess, sys, time
env = dict(os.environ, AUTH_BIND="127.0.0.1:0", RUST_LOG="warn")
start = time.perf_counter()
proc = subprocess.Popen([sys.argv[1]], stdout=subprocess.PIPE, env=env)
proc.stdout.readline()
print(f"{(time.perf_counter() - start) * 1000:.1f}")
proc.terminate(); proc.wait()
PY
done

echo
echo "| target | req/s (median) | p50 ms | p99 ms | peak RSS MB |"
echo "| --- | ---: | ---: | ---: | ---: |"
for name in hello auth authquiet authrs express; do
  case $name in
    hello) label="axum hello (ceiling)"; pid=$PID_hello ;;
    auth) label="auth-server, HS256 app JWT"; pid=$PID_auth ;;
    authquiet) label="auth-server, HS256, RUST_LOG=warn"; pid=$PID_authquiet ;;
    authrs) label="auth-server, RS256 app JWT via JWKS"; pid=$PID_authrs ;;
    express) label="Express + jsonwebtoken, Node $("$NODE" --version)"; pid=$PID_express ;;
  esac
  echo "| $label | $(col $name 2) | $(col $name 3) | $(col $name 4) | $(rss_mb "$pid") |"
done
echo
echo "auth-server ready (spawn to ready line), median of 10: $(median <"$WORK/ready.txt") ms"
