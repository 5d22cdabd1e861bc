#!/usr/bin/env bash
# The login storm: after an outage or a deploy every client renews at once,
# each presenting an app token the server has never seen. Drives
# auth-server's /api/ably-jwt on loopback with TOKENS distinct app JWTs
# (RS256, then ES256, from a JWKS; issuer and audience checked), each
# request the next token round the list, beside the anchor: Express +
# jsonwebtoken on Node 24 doing the same work (express/storm.js). With more
# tokens than auth-server remembers (10,000), a token comes round again only
# after TOKENS-1 others, long after it was forgotten: every presentation is
# verified afresh.
#
# Usage: bench/auth/storm.sh      (from anywhere; ROUNDS=3 DURATION=10s
#        CONNECTIONS=64 TOKENS=40000 PIN=0)
# Needs: wrk (apt-get install wrk), npm (fetches express, jsonwebtoken, node@24).
# PIN=0 (default) lets wrk and the servers share both CPUs, as the figures
# the targets were set against; PIN=1 puts servers on CPU 1 and wrk on CPU 0.
# Each round runs every target once, in turn; the table reports medians.
set -euo pipefail
ROUNDS=${ROUNDS:-3}
TOKENS=${TOKENS:-40000}
HERE=$(cd "$(dirname "$0")" && pwd)
PIN_DEFAULT=0
. "$HERE/lib.sh"

echo "==> building" >&2
cargo build --release -p auth-server --manifest-path "$ROOT/Cargo.toml" >&2
(cd "$HERE/express" && npm ci --no-audit --no-fund --silent >&2)
NODE="$HERE/express/node_modules/.bin/node"
AUTH="$TARGET_DIR/release/auth-server"
echo "==> signing $TOKENS RS256 and $TOKENS ES256 app tokens" >&2
"$NODE" "$HERE/express/tokens.js" "$WORK" "$TOKENS"

echo "==> starting servers" >&2
start jwks "$NODE" "$HERE/express/jwks.js" "$WORK/jwks.json"
AUTH_BIND=127.0.0.1:0 AUTH_RATE_LIMIT_PER_USER=off AUTH_RATE_LIMIT_PER_IP=off \
  AUTH_APP_JWT_SECRET= AUTH_JWKS_URL="$URL_jwks" AUTH_JWT_ALGORITHMS=RS256,ES256 \
  AUTH_JWT_ISSUER=https://idp.bench.invalid/ AUTH_JWT_AUDIENCE=ably-auth-bench \
  start auth "$AUTH"
JWKS_URL="$URL_jwks" start node "$NODE" "$HERE/express/storm.js"
# Sanity: both answer 200 to a token of each kind before we measure them.
for name in auth node; do
  for alg in rs256 es256; do
    url_var="URL_$name"
    code=$(curl -s -o /dev/null -w '%{http_code}' \
      -H "Authorization: Bearer $(head -1 "$WORK/$alg-storm.txt")" "${!url_var}/api/ably-jwt")
    [ "$code" = 200 ] || { echo "$name answered $code to $alg" >&2; exit 1; }
  done
done

echo "==> $ROUNDS interleaved rounds of $DURATION, wrk -t1 -c$CONNECTIONS, $TOKENS tokens each" >&2
for round in $(seq 1 "$ROUNDS"); do
  for name in auth node; do
    for alg in rs256 es256; do
      result=$(bench "$name" -s "$HERE/storm.lua" -- "$WORK/$alg-storm.txt")
      echo "$name-$alg $result" >>"$WORK/results.txt"
      echo "  round $round $name $alg: $result" >&2
    done
  done
done

echo
echo "| target | req/s (median) | p50 ms | p99 ms | peak RSS MB |"
echo "| --- | ---: | ---: | ---: | ---: |"
for name in auth node; do
  for alg in rs256 es256; do
    case $name in
      auth) label="auth-server"; pid=$PID_auth ;;
      node) label="Express + jsonwebtoken, Node $("$NODE" --version)"; pid=$PID_node ;;
    esac
    echo "| $label, ${alg^^}, distinct tokens | $(col "$name-$alg" 2) | $(col "$name-$alg" 3) | $(col "$name-$alg" 4) | $(rss_mb "$pid") |"
  done
done
