#!/usr/bin/env bash
# Benchmarks auth-server's /api/ably-jwt on loopback against Ably's documented
# Express handler (Node 24) and a bare axum route (this machine's ceiling).
#
# Usage: bench/auth/run.sh            (from anywhere; ROUNDS=5 DURATION=10s PIN=1)
# Needs: wrk (apt-get install wrk), npm (fetches express, jsonwebtoken, node@24).
# Each round runs every target once, in turn (interleaved), so drift on a
# shared machine hits all of them alike; the table reports medians.
set -euo pipefail
unset RUST_LOG

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=$(mktemp -d)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
export ABLY_API_KEY=benchApp.benchKey:bench-ably-key-secret
export AUTH_APP_JWT_SECRET=bench-app-jwt-secret
# PIN=1 (default): servers on CPU 1, wrk on CPU 0, when there are two CPUs.
# PIN=0 lets the scheduler spread everything over all CPUs.
if [ "${PIN:-1}" = 1 ] && [ "$(nproc)" -ge 2 ]; then SERVER_CPU=(taskset -c 1); LOAD_CPU=(taskset -c 0); else SERVER_CPU=(); LOAD_CPU=(); fi

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "==> building" >&2
cargo build --release -p auth-server --manifest-path "$ROOT/Cargo.toml" >&2
cargo build --release --manifest-path "$HERE/hello/Cargo.toml" --target-dir "$TARGET_DIR" >&2
(cd "$HERE/express" && npm ci --no-audit --no-fund --silent >&2)
NODE="$HERE/express/node_modules/.bin/node"
AUTH="$TARGET_DIR/release/auth-server"
HELLO="$TARGET_DIR/release/bench-hello"
"$NODE" "$HERE/express/tokens.js" "$WORK"

# start NAME CMD...: runs CMD in the background and waits for its
# "listening on http://ADDR" line; sets URL_<NAME> and PID_<NAME>.
start() {
  local name=$1; shift
  "${SERVER_CPU[@]}" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 500); do
    if grep -q 'listening on http://' "$WORK/$name.out"; then
      printf -v "URL_$name" '%s' "$(grep -o 'http://[^ ]*' "$WORK/$name.out" | head -1)"
      printf -v "PID_$name" '%s' "$pid"
      return
    fi
    sleep 0.01
  done
  echo "$name did not start:" >&2; cat "$WORK/$name.err" >&2; exit 1
}

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

# bench NAME TOKEN: one wrk run; prints "req/s p50_ms p99_ms".
bench() {
  local url_var="URL_$1"
  "${LOAD_CPU[@]}" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency \
    -H "Authorization: Bearer $2" "${!url_var}/api/ably-jwt" >"$WORK/wrk.txt"
  awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) } /^Requests\/sec:/ { rps = $2 }
    END { printf "%d %.2f %.2f\n", rps, p50, p99 }' "$WORK/wrk.txt"
}

rss_mb() { awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

echo "==> $ROUNDS interleaved rounds of $DURATION, wrk -t1 -c$CONNECTIONS" >&2
for round in $(seq 1 "$ROUNDS"); do
  for name in hello auth authquiet authrs express; do
    token=$HS256; [ "$name" = authrs ] && token=$RS256
    result=$(bench "$name" "$token")
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

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -v n="$1" -v c="$2" '$1 == n { print $c }' "$WORK/results.txt" | median; }

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
