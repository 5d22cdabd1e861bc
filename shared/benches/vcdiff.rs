//! Criterion benchmarks of VCDIFF decoding and encoding on the 100 KB JSON
//! test vectors (`tests/fixtures/vcdiff`). Throughput is target bytes.
//!
//! Run with `cargo bench -p ably-sse-wire --bench vcdiff`; results are recorded in
//! `BENCHMARKS.md`.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shared::vcdiff::{decode, encode};

/// The decoder's limit: far above the 100 KB targets measured here.
const LIMIT: usize = 16 << 20;

fn fixture(path: &str) -> Vec<u8> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vcdiff")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|err| panic!("cannot read {}: {err}", full.display()))
}

fn decode_and_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("vcdiff");
    // Short runs: the machine has two cores and the numbers are stable.
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);

    for (name, payload, delta) in [
        // 8 records changed: a few long COPYs, so mostly memcpy.
        ("decode/json-100k", "json-100k", "xdelta3-cli-plain"),
        // ~1600 small edits: instruction decoding dominates.
        (
            "decode/json-100k-many-edits",
            "json-100k-many-edits",
            "xdelta3-cli-plain",
        ),
    ] {
        let base = fixture(&format!("payloads/{payload}/base"));
        let target = fixture(&format!("payloads/{payload}/target"));
        let delta = fixture(&format!("deltas/{payload}/{delta}.vcdiff"));
        assert_eq!(decode(&base, &delta, LIMIT).unwrap(), target);
        group.throughput(Throughput::Bytes(target.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| decode(black_box(&base), black_box(&delta), LIMIT).unwrap());
        });
    }

    let base = fixture("payloads/json-100k/base");
    let target = fixture("payloads/json-100k/target");
    group.throughput(Throughput::Bytes(target.len() as u64));
    group.bench_function("encode/json-100k", |b| {
        b.iter(|| encode(black_box(&base), black_box(&target)));
    });

    group.finish();
}

criterion_group!(benches, decode_and_encode);
criterion_main!(benches);
