#!/usr/bin/env bash
# In-process cost of verifying one app JWT with each crypto backend
# jsonwebtoken offers (see verify/src/main.rs): builds bench/auth/verify,
# which stays out of the workspace, and prints one line per backend and
# algorithm: "BACKEND ALG MICROSECONDS". Pinned to CPU 1 when there are two.
#
# Usage: bench/auth/verify.sh        (from anywhere; TOKENS=2000 ROUNDS=7)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
cargo build --release --manifest-path "$HERE/verify/Cargo.toml" --target-dir "$TARGET_DIR" >&2
CPU=(); [ "$(nproc)" -ge 2 ] && CPU=(taskset -c 1)
for backend in rust_crypto aws_lc_rs aws_lc_rs_signature aws_lc_rs_signature_parsed_once; do
  "${CPU[@]}" "$TARGET_DIR/release/bench-verify" "$backend" "${TOKENS:-2000}" "${ROUNDS:-7}"
done
