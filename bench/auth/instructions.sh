#!/usr/bin/env bash
# Counts the user-space instructions a server spends per /api/ably-jwt
# request, under valgrind's callgrind: repeatable on a busy machine, where
# wall-clock runs (run.sh) are not.
#
# Usage: bench/auth/instructions.sh [auth-server binary]
#        (from anywhere; REQUESTS_SECONDS=10 CONNECTIONS=16
#         TARGETS="hello auth authquiet authmany authrs"; KEEP=1 keeps the
#         callgrind files for callgrind_annotate)
# Needs: valgrind, wrk, python3, node (any version: only its built-in crypto).
#
# Each target runs under callgrind; after a warm-up, the counters are zeroed,
# wrk drives it for REQUESTS_SECONDS, the counters are dumped, and the total
# instruction count (all threads; the kernel is not counted) is divided by
# the number of requests wrk completed.
#
# Targets: hello (bare axum, the ceiling), auth (HS256 app JWT, default
# logging), authquiet (the same with RUST_LOG=warn), authmany (default
# logging, 20,000 distinct app JWTs in turn, so no token is seen twice
# within a cache's reach: the cost of a first presentation), authrs (RS256
# app JWT through a JWKS).
#
# Valgrind does not emulate the SHA extensions (SHA-NI), so sha2 runs its
# portable code here, far slower than on a CPU that has them; the sha256
# column is that part, to be read apart from the rest.
set -euo pipefail
unset RUST_LOG

SECONDS_PER_RUN=${REQUESTS_SECONDS:-10}
CONNECTIONS=${CONNECTIONS:-16}
TARGETS=${TARGETS:-hello auth authquiet authmany authrs}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d)
export ABLY_API_KEY=benchApp.benchKey:bench-ably-key-secret
export AUTH_APP_JWT_SECRET=bench-app-jwt-secret

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

if [ $# -ge 1 ]; then
  AUTH=$1
else
  echo "==> building" >&2
  cargo build --release -p auth-server --manifest-path "$ROOT/Cargo.toml" >&2
  AUTH="$TARGET_DIR/release/auth-server"
fi
HELLO="$TARGET_DIR/release/bench-hello"
case " $TARGETS " in *" hello "*)
  cargo build --release --manifest-path "$HERE/hello/Cargo.toml" --target-dir "$TARGET_DIR" >&2 ;;
esac

# App tokens (valid for two hours) and a JWKS, from the test fixture key.
python3 - "$WORK" <<'PY'
import base64, hashlib, hmac, json, os, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"sub": "bench-user", "roles": ["bench"], "iat": int(time.time()),
                       "exp": int(time.time()) + 7200}).encode())
sig = b64(hmac.new(os.environ["AUTH_APP_JWT_SECRET"].encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
open(os.path.join(sys.argv[1], "app-hs256.jwt"), "w").write(f"{head}.{body}.{sig}")
with open(os.path.join(sys.argv[1], "app-hs256-many.txt"), "w") as many:
    for i in range(20000):
        body = b64(json.dumps({"sub": "bench-user", "roles": ["bench"], "iat": int(time.time()),
                               "exp": int(time.time()) + 7200, "n": i}).encode())
        sig = b64(hmac.new(os.environ["AUTH_APP_JWT_SECRET"].encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
        many.write(f"{head}.{body}.{sig}\n")
PY
# For authmany: each request takes the next token of the list.
cat >"$WORK/many.lua" <<'LUA'
local tokens, i = {}, 0
function init(args)
  for line in io.lines(args[1]) do tokens[#tokens + 1] = "Bearer " .. line end
end
function request()
  i = i % #tokens + 1
  return wrk.format("GET", nil, { Authorization = tokens[i] })
end
LUA
node - "$WORK" "$ROOT/auth-server/tests/fixtures/rsa-1.pem" <<'JS'
const crypto = require('crypto');
const fs = require('fs');
const [out, pemPath] = process.argv.slice(2);
const pem = fs.readFileSync(pemPath);
const b64 = (b) => Buffer.from(b).toString('base64url');
const now = Math.floor(Date.now() / 1000);
const head = b64(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: 'bench' }));
// iss and aud as the authrs run below pins them (required with a JWKS).
const body = b64(JSON.stringify({
  sub: 'bench-user', roles: ['bench'], iat: now, exp: now + 7200,
  iss: 'https://idp.bench.invalid/', aud: 'ably-auth-bench',
}));
const sig = crypto.sign('sha256', Buffer.from(`${head}.${body}`), pem).toString('base64url');
fs.writeFileSync(`${out}/app-rs256.jwt`, `${head}.${body}.${sig}`);
const jwk = crypto.createPublicKey(pem).export({ format: 'jwk' });
fs.writeFileSync(`${out}/jwks.json`, JSON.stringify({ keys: [{ ...jwk, kid: 'bench', alg: 'RS256', use: 'sig' }] }));
JS
HS256=$(cat "$WORK/app-hs256.jwt")
RS256=$(cat "$WORK/app-rs256.jwt")

# wait_line FILE: waits (up to 60 s: valgrind starts slowly) for a
# "listening on http://ADDR" line in FILE and prints the URL.
wait_line() {
  for _ in $(seq 1 6000); do
    if grep -q 'listening on http://' "$1"; then
      grep -o 'http://[^ ]*' "$1" | head -1
      return
    fi
    sleep 0.01
  done
  echo "no ready line in $1" >&2; exit 1
}

node "$HERE/express/jwks.js" "$WORK/jwks.json" >"$WORK/jwks.out" &
PIDS+=("$!")
JWKS_URL=$(wait_line "$WORK/jwks.out")

# measure NAME TOKEN CMD...: prints a table row: instructions per request
# and how many requests they were averaged over. TOKEN "many" drives the
# token list instead of one token.
measure() {
  local name=$1 token=$2; shift 2
  local load=(-H "Authorization: Bearer $token")
  if [ "$token" = many ]; then
    load=(-s "$WORK/many.lua")
    token=$(head -1 "$WORK/app-hs256-many.txt")
  fi
  (cd "$WORK" && exec valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.cg" "$@" \
    >"$WORK/$name.out" 2>"$WORK/$name.err") &
  local pid=$!
  PIDS+=("$pid")
  local url
  url=$(wait_line "$WORK/$name.out")
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$url/api/ably-jwt")
  [ "$code" = 200 ] || { echo "$name answered $code" >&2; exit 1; }
  local many=()
  [ "${load[0]}" = -s ] && many=(-- "$WORK/app-hs256-many.txt")
  wrk -t1 -c"$CONNECTIONS" -d3s --timeout 30s "${load[@]}" "$url/api/ably-jwt" "${many[@]}" >/dev/null
  (cd "$WORK" && callgrind_control --zero "$pid" >/dev/null 2>&1)
  wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --timeout 30s "${load[@]}" \
    "$url/api/ably-jwt" "${many[@]}" >"$WORK/$name.wrk"
  (cd "$WORK" && callgrind_control --dump=measured "$pid" >/dev/null 2>&1)
  local requests instructions sha dump
  requests=$(awk '/requests in/ { print $1 }' "$WORK/$name.wrk")
  grep -q 'Non-2xx' "$WORK/$name.wrk" && { echo "$name: non-2xx answers" >&2; exit 1; }
  # The dump triggered above is the file whose description says so.
  dump=$(grep -l '^desc: Trigger: dump measured' "$WORK/$name.cg"*)
  instructions=$(awk '/^(summary|totals):/ { print $2; exit }' "$dump")
  sha=$(callgrind_annotate --inclusive=yes --threshold=100 "$dump" 2>/dev/null \
    | awk '/sha2::sha256::compress256 / && !seen { gsub(",", "", $1); print $1; seen = 1 }')
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  echo "| $name | $((instructions / requests)) | $(( ${sha:-0} / requests )) | $(( (instructions - ${sha:-0}) / requests )) | $requests |"
}

echo "| target | instructions per request | of which sha256 (portable) | without sha256 | requests measured |"
echo "| --- | ---: | ---: | ---: | ---: |"
export AUTH_BIND=127.0.0.1:0 AUTH_RATE_LIMIT_PER_USER=off AUTH_RATE_LIMIT_PER_IP=off
for name in $TARGETS; do
  case $name in
    hello) measure hello - "$HELLO" ;;
    auth) measure auth "$HS256" "$AUTH" ;;
    authquiet) RUST_LOG=warn measure authquiet "$HS256" "$AUTH" ;;
    authmany) measure authmany many "$AUTH" ;;
    authrs) AUTH_APP_JWT_SECRET='' AUTH_JWKS_URL="$JWKS_URL" AUTH_JWT_ALGORITHMS=RS256 \
      AUTH_JWT_ISSUER=https://idp.bench.invalid/ AUTH_JWT_AUDIENCE=ably-auth-bench \
      measure authrs "$RS256" "$AUTH" ;;
  esac
done
