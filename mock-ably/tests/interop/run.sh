#!/usr/bin/env bash
# Checks mock-ably with clients we did not write: ably-js 2.28 (REST, Node)
# and Ably's own JavaScript VCDIFF decoder, both pinned in package-lock.json.
# Needs Node 18+ and npm (the npm registry); run from anywhere:
#   mock-ably/tests/interop/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
key="interopApp.interopKey:interop-secret"

cargo build --quiet --manifest-path "$root/Cargo.toml" -p mock-ably
target_dir="$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" \
  | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
(cd "$here" && npm ci --silent --no-audit --no-fund)

out="$(mktemp)"
"$target_dir/debug/mock-ably" --bind 127.0.0.1:0 --key "$key" >"$out" 2>/dev/null &
mock_pid=$!
trap 'kill "$mock_pid" 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do
  [[ -s "$out" ]] && break
  sleep 0.1
done
base_url="$(sed -n 's/^mock-ably listening on //p' "$out")"
[[ -n "$base_url" ]] || { echo "mock-ably did not start" >&2; exit 1; }

node "$here/ably-js.mjs" "$base_url" "$key"
node "$here/vcdiff-decoder.mjs" "$base_url" "$key"
