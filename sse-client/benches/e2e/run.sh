#!/usr/bin/env bash
# End to end: the sse-client CLI and Node's `eventsource` package subscribed
# to the same mock-ably channel while 20,000 messages are published to it,
# each client stopping after the last one; GNU time reports CPU and peak RSS.
# Needs python3, node/npm and /usr/bin/time. Run from anywhere:
#   bash sse-client/benches/e2e/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
count="${COUNT:-20000}"
port="${PORT:-18931}"
key="bench.key:bench-secret"
url="http://127.0.0.1:$port"

cargo build --release -p sse-client -p mock-ably --manifest-path "$root/Cargo.toml" >&2
bin="${CARGO_TARGET_DIR:-$root/target}/release"
(cd "$here" && npm ci --silent >&2)

"$bin/mock-ably" --bind "127.0.0.1:$port" --key "$key" --retention 10m > /dev/null 2>&1 &
mock=$!
trap 'kill "$mock" 2>/dev/null' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

format="%U s user, %S s system, %M KiB peak RSS, %e s elapsed"
for run in 1 2 3; do
  channel="bench-$run"
  /usr/bin/time -f "sse-client: $format" -o "$here/.time-rust" \
    "$bin/sse-client" subscribe --channel "$channel" --key "$key" --endpoint "$url" \
    --limit "$count" > /dev/null 2> /dev/null &
  rust=$!
  /usr/bin/time -f "node-eventsource: $format" -o "$here/.time-node" \
    node "$here/node-client.mjs" "$url/sse?v=1.2&channels=$channel&key=$key" "$count" \
    > /dev/null 2> /dev/null &
  node=$!
  python3 "$here/publish.py" "$url" "$key" "$channel" "$count" 2
  wait "$rust" "$node"
  cat "$here/.time-rust" "$here/.time-node"
  rm -f "$here/.time-rust" "$here/.time-node"
done
