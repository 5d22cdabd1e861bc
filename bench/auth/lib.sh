# Shared by run.sh and storm.sh (sourced, not run, with HERE set to this
# directory and PIN_DEFAULT to the script's default for PIN): the set-up
# (ROOT, WORK, TARGET_DIR, the bench keys, CPU pinning, the cleanup of
# servers), starting servers, one wrk run, medians and peak RSS.

unset RUST_LOG
ROOT=$(cd "$HERE/../.." && pwd)
WORK=$(mktemp -d)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
export ABLY_API_KEY=benchApp.benchKey:bench-ably-key-secret
export AUTH_APP_JWT_SECRET=bench-app-jwt-secret
# PIN=1: servers on CPU 1, wrk on CPU 0, when there are two CPUs.
# PIN=0 lets the scheduler spread everything over all CPUs.
if [ "${PIN:-$PIN_DEFAULT}" = 1 ] && [ "$(nproc)" -ge 2 ]; then
  SERVER_CPU=(taskset -c 1); LOAD_CPU=(taskset -c 0)
else
  SERVER_CPU=(); LOAD_CPU=()
fi

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

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

# bench NAME WRK-OPTIONS... [-- SCRIPT-ARGS...]: one wrk run against NAME's
# /api/ably-jwt with the given request options (a header, or a Lua script
# and, after `--`, its arguments); prints "req/s p50_ms p99_ms". Fails if
# wrk fails or any answer was not a 2xx.
bench() {
  local url_var="URL_$1"; shift
  local options=() script_args=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do options+=("$1"); shift; done
  [ $# -gt 0 ] && shift && script_args=(-- "$@")
  if ! "${LOAD_CPU[@]}" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency \
    "${options[@]}" "${!url_var}/api/ably-jwt" "${script_args[@]}" >"$WORK/wrk.txt" 2>&1; then
    echo "wrk failed:" >&2; cat "$WORK/wrk.txt" >&2; return 1
  fi
  if grep -q 'Non-2xx' "$WORK/wrk.txt"; then
    echo "non-2xx answers:" >&2; cat "$WORK/wrk.txt" >&2; return 1
  fi
  awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) } /^Requests\/sec:/ { rps = $2 }
    END { printf "%d %.2f %.2f\n", rps, p50, p99 }' "$WORK/wrk.txt"
}

rss_mb() { awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# col NAME N: the median of column N of NAME's rows in results.txt.
col() { awk -v n="$1" -v c="$2" '$1 == n { print $c }' "$WORK/results.txt" | median; }
