#!/usr/bin/env bash
# 500 members entering one space on mock-ably (see run.mjs): with
# @ably/spaces, then with plain ably-js presence for comparison.
#
# Usage: bench/spaces/run.sh [--members 500] [--workers 2]   (from anywhere)
# Needs: Node 20+ with npm (it runs `npm ci` in tests/interop, whose lockfile
# pins ably and @ably/spaces). Builds the optimised mock-ably.
set -euo pipefail
unset RUST_LOG
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps --manifest-path "$ROOT/Cargo.toml" |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')

echo "==> building" >&2
cargo build --release -p mock-ably --manifest-path "$ROOT/Cargo.toml" >&2
(cd "$ROOT/tests/interop" && npm ci --silent --no-audit --no-fund >&2)
export MOCK_ABLY="$TARGET_DIR/release/mock-ably"

echo "==> @ably/spaces" >&2
node "$HERE/run.mjs" "$@"
echo "==> ably-js presence, no Spaces" >&2
node "$HERE/run.mjs" --raw "$@"
