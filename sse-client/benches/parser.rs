//! Criterion benchmarks of the SSE parser beside `eventsource-stream` and
//! LaunchDarkly's `eventsource-client`, on the same inputs in the same
//! chunks.
//!
//! Run with `cargo bench -p sse-client --bench parser`; results are in
//! BENCHMARKS.md. `-- --one-shot` instead times the 4 MiB event in 256-byte
//! chunks once through each parser (see [`one_shot`]).
//!
//! - `sse-client`: `Parser::feed` and `next_frame`, the sans-IO core.
//! - `eventsource-stream`: `EventStream` over an always-ready stream of the
//!   chunks, polled with a no-op waker (no runtime).
//! - `eventsource-client`: its public client over an in-memory transport that
//!   serves the chunks, in a current-thread tokio runtime (its parser is not
//!   public). Each run stops after the last expected event.

use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use eventsource_client::{Client as _, SSE};
use futures_util::{Stream, StreamExt};
use launchdarkly_sdk_transport::{ByteStream, HttpTransport, ResponseFuture, TransportError};
use sse_client::sse::{Frame, Parser};

/// A workload: the body's chunks and how many events it holds.
struct Input {
    chunks: Vec<Bytes>,
    events: usize,
    bytes: usize,
}

fn chunked(body: &[u8], size: usize, events: usize) -> Input {
    Input {
        chunks: body.chunks(size).map(Bytes::copy_from_slice).collect(),
        events,
        bytes: body.len(),
    }
}

/// 10,000 small JSON events, as a busy channel sends them, in 1 KiB chunks.
fn small_events() -> Input {
    let body: String = (0..10_000)
        .map(|n| {
            format!("id: {n}\nevent: update\ndata: {{\"n\":{n},\"text\":\"hello world\"}}\n\n")
        })
        .collect();
    chunked(body.as_bytes(), 1024, 10_000)
}

/// One `data:` line of `len` bytes, in `chunk`-byte chunks.
fn long_event(len: usize, chunk: usize) -> Input {
    let mut body = b"data: ".to_vec();
    body.extend(
        (0..len)
            .map(|i| b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[i % 64]),
    );
    body.extend_from_slice(b"\n\n");
    chunked(&body, chunk, 1)
}

/// 5,000 LLM-style token events in 37-byte chunks, so that nearly every
/// chunk boundary falls inside a line.
fn token_stream() -> Input {
    let body: String = (0..5_000)
        .map(|n| {
            format!(
                "data: {{\"id\":\"chatcmpl-1\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{n}\"}}}}]}}\n\n"
            )
        })
        .collect();
    chunked(body.as_bytes(), 37, 5_000)
}

fn ours(input: &Input) -> usize {
    let mut parser = Parser::default();
    let mut seen = 0;
    for chunk in &input.chunks {
        parser.feed(chunk).expect("within limits");
        while let Some(frame) = parser.next_frame() {
            if let Frame::Event(event) = frame {
                black_box(event.data());
                seen += 1;
            }
        }
    }
    seen
}

fn eventsource_stream(input: &Input) -> usize {
    let chunks = futures_util::stream::iter(
        input
            .chunks
            .iter()
            .cloned()
            .map(Ok::<_, std::convert::Infallible>),
    );
    let mut events = eventsource_stream::EventStream::new(chunks);
    let mut cx = Context::from_waker(Waker::noop());
    let mut seen = 0;
    loop {
        match Pin::new(&mut events).poll_next(&mut cx) {
            Poll::Ready(Some(Ok(event))) => {
                black_box(event.data);
                seen += 1;
            }
            Poll::Ready(Some(Err(err))) => panic!("{err}"),
            Poll::Ready(None) => return seen,
            Poll::Pending => unreachable!("the input stream is always ready"),
        }
    }
}

/// Serves the same chunks to every request.
#[derive(Clone)]
struct InMemory(std::sync::Arc<Vec<Bytes>>);

impl HttpTransport for InMemory {
    fn request(&self, _request: http::Request<Option<Bytes>>) -> ResponseFuture {
        let chunks = std::sync::Arc::clone(&self.0);
        Box::pin(async move {
            let body: ByteStream = Box::pin(futures_util::stream::iter(
                chunks
                    .iter()
                    .cloned()
                    .map(Ok::<_, TransportError>)
                    .collect::<Vec<_>>(),
            ));
            Ok(http::Response::builder()
                .status(200)
                .header("content-type", "text/event-stream")
                .body(body)
                .expect("a valid response"))
        })
    }
}

fn launchdarkly(runtime: &tokio::runtime::Runtime, input: &Input) -> usize {
    let client = eventsource_client::ClientBuilder::for_url("http://127.0.0.1/")
        .expect("a valid URL")
        .build_with_transport(InMemory(std::sync::Arc::new(input.chunks.clone())));
    runtime.block_on(async {
        let mut stream = client.stream();
        let mut seen = 0;
        while seen < input.events {
            match stream.next().await {
                Some(Ok(SSE::Event(event))) => {
                    black_box(event.data);
                    seen += 1;
                }
                Some(Ok(_)) => {}
                other => panic!("unexpected {:?}", other.map(|r| r.map(|_| ()))),
            }
        }
        seen
    })
}

fn compare(c: &mut Criterion, group: &str, input: &Input, slow_baseline: bool) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    assert_eq!(ours(input), input.events);
    assert_eq!(eventsource_stream(input), input.events);
    assert_eq!(launchdarkly(&runtime, input), input.events);

    let mut group = c.benchmark_group(group);
    group.throughput(Throughput::Bytes(input.bytes as u64));
    if slow_baseline {
        group.sample_size(10);
    }
    group.bench_function("sse-client", |b| b.iter(|| ours(input)));
    group.bench_function("eventsource-stream", |b| {
        b.iter(|| eventsource_stream(input))
    });
    group.bench_function("eventsource-client", |b| {
        b.iter(|| launchdarkly(&runtime, input));
    });
    group.finish();
}

fn workloads(c: &mut Criterion) {
    compare(c, "small-events", &small_events(), false);
    compare(c, "token-stream", &token_stream(), false);
    // eventsource-stream is quadratic in the chunks of one line: 4 MiB in
    // 256-byte chunks takes it about 35 s per run, so the three-way
    // comparison stops at 256 KiB here; `--one-shot` times the 4 MiB one.
    compare(
        c,
        "long-event-256KiB-256B-chunks",
        &long_event(256 << 10, 256),
        true,
    );
}

/// Ours alone on the 4 MiB event: the same bytes in ever more chunks.
fn linear_in_chunks(c: &mut Criterion) {
    let mut group = c.benchmark_group("long-event-4MiB");
    for chunk in [4 << 20, 4096, 256] {
        let input = long_event(4 << 20, chunk);
        group.throughput(Throughput::Bytes(input.bytes as u64));
        group.bench_with_input(
            BenchmarkId::new("sse-client", format!("{chunk}B-chunks")),
            &input,
            |b, input| b.iter(|| ours(input)),
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let input = long_event(4 << 20, 256);
    group.sample_size(10);
    group.bench_with_input(
        BenchmarkId::new("eventsource-client", "256B-chunks"),
        &input,
        |b, input| b.iter(|| launchdarkly(&runtime, input)),
    );
    group.finish();
}

/// `cargo bench -p sse-client --bench parser -- --one-shot`: the 4 MiB
/// event in 256-byte chunks through all three parsers, timed by hand.
/// `eventsource-stream` is quadratic there (about a minute a run), which
/// rules out criterion's minimum of ten samples plus warm-up; it runs once,
/// the other two (milliseconds) five times each, best and median printed.
fn one_shot() {
    let input = long_event(4 << 20, 256);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let time = |name: &str, runs: usize, parse: &dyn Fn() -> usize| {
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                let started = Instant::now();
                assert_eq!(parse(), input.events, "{name}");
                started.elapsed()
            })
            .collect();
        times.sort();
        let throughput = input.bytes as f64 / times[0].as_secs_f64() / f64::from(1 << 20);
        println!(
            "long-event-4MiB-256B-chunks/{name}: best {:?} ({throughput:.1} MiB/s), median {:?} of {runs}",
            times[0],
            times[runs / 2]
        );
    };
    time("sse-client", 5, &|| ours(&input));
    time("eventsource-client", 5, &|| launchdarkly(&runtime, &input));
    time("eventsource-stream", 1, &|| eventsource_stream(&input));
}

criterion_group!(benches, workloads, linear_in_chunks);

fn main() {
    if std::env::args().any(|arg| arg == "--one-shot") {
        one_shot();
        return;
    }
    // What criterion_main! expands to.
    benches();
    Criterion::default().configure_from_args().final_summary();
}
