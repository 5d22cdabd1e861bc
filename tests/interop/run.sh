#!/usr/bin/env bash
# The interop suite: clients nobody here wrote against our binaries, on loopback.
#   - ably-js 2 (REST, Node) against mock-ably with a key, and with authUrl at auth-server;
#   - ably-js 2 Realtime (Node, msgpack and JSON) on mock-ably's WebSocket;
#   - @ably/spaces on ably-js Realtime (Node), with tokens from auth-server;
#   - Ably's own VCDIFF decoder on every delta mock-ably sends;
#   - ably-js 2 Realtime (Node) with Ably's documented authCallback recipes, verbatim, on
#     auth-server's /api/ably-token and /api/ably-jwt with a cookie session;
#   - ably-js 2 Realtime (Node) revoked through auth-server's /api/revoke after a policy
#     reload (SIGHUP): cut with 40141, then renewed and resumed, or kept out;
#   - Debian's Chromium (via playwright-core): EventSource on mock-ably with tokens from
#     auth-server, the ably-js browser build across origins, the dev-mode demo page, and the
#     same recipes on a same-origin page with a cookie session.
# Versions are pinned in package-lock.json. Needs Node 20+ with npm (the npm registry) and
# Debian's `chromium` (`apt-get install chromium`; CHROMIUM=/path overrides it).
#
#   tests/interop/run.sh                    # everything
#   tests/interop/run.sh rest.test.mjs      # some files only
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "interop: needs Node 20+ and npm" >&2
  exit 1
fi
if [[ -z "${CHROMIUM:-}" ]] && ! command -v chromium >/dev/null; then
  echo "interop: needs Chromium: apt-get install chromium (or set CHROMIUM=/path/to/chromium)" >&2
  exit 1
fi

# auth-server with its default features, so that `--dev` (the demo page) is in.
cargo build --quiet --manifest-path "$root/Cargo.toml" -p mock-ably -p auth-server
target_dir="$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
(cd "$here" && npm ci --silent --no-audit --no-fund)

cd "$here"
if [[ $# -eq 0 ]]; then
  set -- *.test.mjs
fi
# One file at a time: the machine has two cores, and Chromium wants one of them.
INTEROP_BIN_DIR="$target_dir/debug" exec node --test --test-concurrency=1 --test-timeout=120000 \
  --test-reporter=spec "$@"
