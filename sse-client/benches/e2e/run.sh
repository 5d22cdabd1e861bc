#!/usr/bin/env bash
# End to end: the sse-client CLI and Node's `eventsource` package on the same
# local stream of 20,000 Ably messages, reporting CPU time and peak RSS from
# GNU time. Needs python3, node/npm and /usr/bin/time; run from anywhere:
#   bash sse-client/benches/e2e/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
count="${COUNT:-20000}"
port="${PORT:-18931}"

cargo build --release -p sse-client --manifest-path "$root/Cargo.toml" >&2
bin="${CARGO_TARGET_DIR:-$root/target}/release/sse-client"
(cd "$here" && npm ci --silent >&2)

python3 "$here/server.py" "$port" "$count" &
server=$!
trap 'kill "$server"' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
url="http://127.0.0.1:$port"

measure() {
  local name="$1"; shift
  /usr/bin/time -f "$name: %U s user, %S s system, %M KiB peak RSS, %e s elapsed" "$@" > /dev/null
}
for _ in 1 2 3; do
  measure sse-client "$bin" subscribe --channel bench --token t --endpoint "$url" --limit "$count"
  measure node-eventsource node "$here/node-client.mjs" "$url/sse?channels=bench&v=1.2" "$count"
done
