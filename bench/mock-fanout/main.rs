//! Fan-out benchmark for mock-ably: many SSE subscribers, or realtime
//! WebSocket subscribers, on one channel, on loopback.
//!
//! Run with `cargo bench -p mock-ably --bench fanout` (add
//! `-- --subscribers 1000 --rate 50 --seconds 10 --burst 2000` to change the
//! defaults shown, and `--realtime` for realtime subscribers: each opens
//! `ws://…/?key=…&format=json`, waits for CONNECTED, ATTACHes the channel
//! and waits for ATTACHED). It starts the optimised `mock-ably` binary as a child
//! process, so the mock's memory is measured alone, then:
//!
//! 1. **idle**: opens every subscriber, waits for them to settle, and reads the
//!    mock's resident memory (`VmRSS`) before and after: RSS per idle stream;
//! 2. **steady**: publishes `--rate` messages a second for `--seconds` over
//!    REST, each carrying its send time, and records publish-to-receive
//!    latency for every delivery (p50, p99, max) and deliveries per second;
//! 3. **burst**: publishes `--burst` messages as fast as REST allows (batches
//!    of 10) and reports deliveries per second until every subscriber has
//!    them all.
//!
//! The subscribers and the publisher run in this process, on the same
//! machine as the mock, so they compete with it for CPU: the figures are a
//! floor for the mock itself. It prints a Markdown table for `BENCHMARKS.md`.
//! Every loop is bounded in count and time, and only `127.0.0.1` is used.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::json;
use tokio::sync::mpsc;

const KEY: &str = "benchApp.benchKey:bench-secret";
const CHANNEL: &str = "fanout";
/// The most any phase may take before the benchmark gives up.
const PHASE_LIMIT: Duration = Duration::from_secs(120);

/// Benchmark settings, from the command line.
#[derive(Debug, Clone, Copy)]
struct Settings {
    /// Realtime WebSocket subscribers instead of SSE streams.
    realtime: bool,
    subscribers: usize,
    rate: u64,
    seconds: u64,
    burst: u64,
}

impl Settings {
    fn from_args() -> Self {
        let mut settings = Self {
            realtime: false,
            subscribers: 1000,
            rate: 50,
            seconds: 10,
            burst: 2000,
        };
        let args: Vec<String> = std::env::args().collect();
        let value = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .map(|v| {
                    v.parse::<u64>()
                        .unwrap_or_else(|_| panic!("{name} takes a number"))
                })
        };
        settings.realtime = args.iter().any(|a| a == "--realtime");
        // `cargo bench` passes `--bench`; other unknown flags are ignored too.
        if let Some(n) = value("--subscribers") {
            settings.subscribers = usize::try_from(n).expect("a subscriber count");
        }
        settings.rate = value("--rate").unwrap_or(settings.rate).max(1);
        settings.seconds = value("--seconds").unwrap_or(settings.seconds).max(1);
        settings.burst = value("--burst").unwrap_or(settings.burst);
        settings
    }
}

/// The mock as a child process, killed on drop.
struct Mock {
    child: Child,
    base_url: String,
}

impl Mock {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mock-ably"))
            .args(["--bind", "127.0.0.1:0", "--key", KEY, "--keepalive", "15s"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start mock-ably");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("cannot read the ready line");
        let base_url = line
            .trim_end()
            .strip_prefix("mock-ably listening on ")
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}"))
            .to_owned();
        Self { child, base_url }
    }

    /// The mock's resident set size, in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("cannot read /proc/<pid>/status (Linux only)");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmRSS line")
    }
}

/// CPU time (user + system) a process has used, in ms, from
/// `/proc/<pid>/stat` (`self` for this process). `/proc` counts in USER_HZ,
/// which Linux fixes at 100 per second.
fn cpu_ms(pid: &str) -> u64 {
    let (user, system) = cpu_split_ms(pid);
    user + system
}

/// User and system CPU time of a process, in ms (see [`cpu_ms`]).
fn cpu_split_ms(pid: &str) -> (u64, u64) {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("cannot read /proc/<pid>/stat");
    // The command name may contain spaces; fields are counted after its `)`.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("a stat line") + 2..]
        .split_whitespace()
        .collect();
    let user: u64 = fields[11].parse().expect("utime");
    let system: u64 = fields[12].parse().expect("stime");
    (user * 10, system * 10)
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a subscriber reports when its stream ends: the publish-to-receive
/// latencies (µs) of the steady phase, or why it could not subscribe.
type Report = Result<Vec<u32>, String>;

/// Reads one SSE stream, counting every message and timing those whose data
/// is `s=<µs since epoch>` (the steady phase).
async fn subscriber(
    client: reqwest::Client,
    url: String,
    epoch: Instant,
    ready: mpsc::Sender<()>,
    received: Arc<AtomicU64>,
    reports: mpsc::UnboundedSender<Report>,
) {
    let response = match client.get(&url).send().await {
        Ok(response) if response.status() == 200 => response,
        Ok(response) => {
            let _ = reports.send(Err(format!("status {}", response.status())));
            return;
        }
        Err(err) => {
            let _ = reports.send(Err(err.to_string()));
            return;
        }
    };
    let _ = ready.send(()).await;
    let mut body = response.bytes_stream();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut latencies = Vec::new();
    const MARK: &[u8] = b"\"data\":\"";
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            break;
        };
        let now = u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        buf.extend_from_slice(&chunk);
        // Complete events end with a blank line; parse those, keep the rest.
        let Some(end) = buf.windows(2).rposition(|w| w == b"\n\n") else {
            continue;
        };
        let mut rest = &buf[..end];
        while let Some(at) = rest.windows(MARK.len()).position(|w| w == MARK) {
            let data = &rest[at + MARK.len()..];
            let steady = data.starts_with(b"s=");
            let digits = &data[2..];
            let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
            if steady {
                let sent: u64 = std::str::from_utf8(&digits[..len])
                    .expect("ASCII digits")
                    .parse()
                    .expect("a send time");
                latencies.push(u32::try_from(now.saturating_sub(sent)).unwrap_or(u32::MAX));
            }
            received.fetch_add(1, Ordering::Relaxed);
            rest = &digits[len..];
        }
        buf.drain(..end + 2);
    }
    let _ = reports.send(Ok(latencies));
}

/// Reads one realtime connection (JSON frames): CONNECTED, ATTACH, then
/// every MESSAGE, timing those whose data is `s=<µs since epoch>`.
async fn realtime_subscriber(
    url: String,
    epoch: Instant,
    ready: mpsc::Sender<()>,
    received: Arc<AtomicU64>,
    reports: mpsc::UnboundedSender<Report>,
) {
    use futures_util::SinkExt as _;
    use shared::protocol::{Action, Format, ProtocolMessage};
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    let mut socket = match tokio_tungstenite::connect_async(&url).await {
        Ok((socket, _)) => socket,
        Err(err) => {
            let _ = reports.send(Err(err.to_string()));
            return;
        }
    };
    let mut latencies = Vec::new();
    let mut attached = false;
    while let Some(Ok(message)) = socket.next().await {
        let now = u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        let WsMessage::Text(text) = message else {
            continue;
        };
        let Ok(frame) = Format::Json.decode(text.as_bytes()) else {
            let _ = reports.send(Err(format!("an unreadable frame: {text}")));
            return;
        };
        match frame.action {
            Action::CONNECTED if !attached => {
                let mut attach = ProtocolMessage::new(Action::ATTACH);
                attach.channel = Some(CHANNEL.to_owned());
                let bytes = Format::Json.encode(&attach).expect("an ATTACH encodes");
                let text = String::from_utf8(bytes).expect("JSON is UTF-8");
                if socket.send(WsMessage::Text(text.into())).await.is_err() {
                    break;
                }
            }
            Action::ATTACHED if !attached => {
                attached = true;
                let _ = ready.send(()).await;
            }
            Action::MESSAGE => {
                for message in frame.messages.unwrap_or_default() {
                    if let Some(sent) = message
                        .data
                        .as_ref()
                        .and_then(|d| d.as_str())
                        .and_then(|d| d.strip_prefix("s="))
                        .and_then(|d| d.parse::<u64>().ok())
                    {
                        latencies.push(u32::try_from(now.saturating_sub(sent)).unwrap_or(u32::MAX));
                    }
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
            Action::ERROR | Action::DISCONNECTED => {
                let _ = reports.send(Err(format!("refused: {:?}", frame.error)));
                return;
            }
            _ => {}
        }
    }
    let _ = reports.send(Ok(latencies));
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[rank]) / 1000.0
}

/// The open-files limit, from `/proc/self/limits`.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

async fn wait_for(what: &str, received: &AtomicU64, target: u64) -> Duration {
    let started = Instant::now();
    while received.load(Ordering::Relaxed) < target {
        assert!(
            started.elapsed() < PHASE_LIMIT,
            "{what}: only {} of {target} deliveries after {PHASE_LIMIT:?}",
            received.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let settings = Settings::from_args();
    let n = settings.subscribers;
    if let Some(limit) = open_files_limit() {
        // This process holds one socket per subscriber, and so does the mock.
        assert!(
            limit >= n as u64 + 200,
            "open-files limit {limit} is too low for {n} subscribers: raise it with `ulimit -n {}`",
            n + 1000
        );
    }
    let mock = Mock::start();
    let key_param: String = url::form_urlencoded::byte_serialize(KEY.as_bytes()).collect();
    let stream_url = format!(
        "{}/sse?v=1.2&channels={CHANNEL}&key={key_param}",
        mock.base_url
    );
    let publish_url = format!("{}/channels/{CHANNEL}/messages", mock.base_url);
    let (key_name, secret) = KEY.split_once(':').expect("a key");
    let publisher = reqwest::Client::new();
    let publish = |body: serde_json::Value| {
        let request = publisher
            .post(&publish_url)
            .basic_auth(key_name, Some(secret))
            .json(&body);
        async move {
            let response = request.send().await.expect("publish failed");
            assert_eq!(response.status(), 201, "publish refused");
        }
    };

    // Warm up the mock (first connection, allocator arenas), then measure.
    publish(json!({"data": "warm-up"})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = mock.rss_kib();

    // Phase 1: idle subscribers.
    let epoch = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let (ready_tx, mut ready_rx) = mpsc::channel(n.max(1));
    let (reports_tx, mut reports_rx) = mpsc::unbounded_channel();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("a client");
    let opening = Instant::now();
    let realtime_url = format!(
        "{}/?key={key_param}&format=json&v=6",
        mock.base_url.replacen("http://", "ws://", 1)
    );
    for _ in 0..n {
        if settings.realtime {
            tokio::spawn(realtime_subscriber(
                realtime_url.clone(),
                epoch,
                ready_tx.clone(),
                Arc::clone(&received),
                reports_tx.clone(),
            ));
        } else {
            tokio::spawn(subscriber(
                client.clone(),
                stream_url.clone(),
                epoch,
                ready_tx.clone(),
                Arc::clone(&received),
                reports_tx.clone(),
            ));
        }
    }
    drop((ready_tx, reports_tx));
    for opened in 0..n {
        tokio::time::timeout(PHASE_LIMIT, ready_rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {opened} of {n} streams opened"))
            .unwrap_or_else(|| panic!("only {opened} of {n} streams opened"));
    }
    let open_time = opening.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = mock.rss_kib();
    let per_stream_kib = (rss_idle.saturating_sub(rss_before)) as f64 / n.max(1) as f64;

    // Phase 2: a steady publish rate.
    let count = settings.rate * settings.seconds;
    let interval = Duration::from_micros(1_000_000 / settings.rate);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let pid = mock.child.id().to_string();
    let (mock_cpu_start, own_cpu_start) = (cpu_ms(&pid), cpu_ms("self"));
    let mock_split_start = cpu_split_ms(&pid);
    let steady_start = Instant::now();
    for _ in 0..count {
        ticker.tick().await;
        let sent = epoch.elapsed().as_micros();
        publish(json!({"name": "tick", "data": format!("s={sent}")})).await;
    }
    let steady_target = count * n as u64;
    wait_for("steady", &received, steady_target).await;
    let steady_elapsed = steady_start.elapsed();
    let rss_busy = mock.rss_kib();
    let mock_cpu_steady = cpu_ms(&pid) - mock_cpu_start;
    let mock_split = cpu_split_ms(&pid);
    let (mock_user_steady, mock_system_steady) = (
        mock_split.0 - mock_split_start.0,
        mock_split.1 - mock_split_start.1,
    );
    let own_cpu_steady = cpu_ms("self") - own_cpu_start;

    // Phase 3: a burst, as fast as REST allows.
    let before_burst = received.load(Ordering::Relaxed);
    let mock_cpu_burst_start = cpu_ms(&pid);
    let burst_start = Instant::now();
    let mut published = 0;
    while published < settings.burst {
        let batch: Vec<_> = (0..10.min(settings.burst - published))
            .map(|_| json!({"data": format!("b={}", epoch.elapsed().as_micros())}))
            .collect();
        published += batch.len() as u64;
        publish(serde_json::Value::Array(batch)).await;
    }
    let publish_time = burst_start.elapsed();
    wait_for("burst", &received, before_burst + settings.burst * n as u64).await;
    let burst_elapsed = burst_start.elapsed();
    let mock_cpu_burst = cpu_ms(&pid) - mock_cpu_burst_start;

    // Stop the mock: every stream ends and its subscriber reports.
    drop(client);
    drop(mock);
    let mut steady = Vec::with_capacity(usize::try_from(steady_target).unwrap_or(0));
    for _ in 0..n {
        let report = tokio::time::timeout(PHASE_LIMIT, reports_rx.recv())
            .await
            .expect("a subscriber did not report")
            .expect("a subscriber report");
        steady.extend(report.unwrap_or_else(|why| panic!("a subscriber failed: {why}")));
    }
    assert_eq!(steady.len() as u64, steady_target, "steady deliveries");
    steady.sort_unstable();

    let steady_rate = steady_target as f64 / steady_elapsed.as_secs_f64();
    let burst_rate = (settings.burst * n as u64) as f64 / burst_elapsed.as_secs_f64();
    println!("| Measure | Value |");
    println!("|---|---|");
    let (kind, unit) = if settings.realtime {
        ("realtime WebSocket, JSON, attached", "connection")
    } else {
        ("SSE", "stream")
    };
    println!(
        "| subscribers ({kind}, one channel) | {n} (opened in {:.2} s) |",
        open_time.as_secs_f64()
    );
    println!("| mock RSS before / with idle {unit}s | {rss_before} KiB / {rss_idle} KiB |");
    println!("| **RSS per idle {unit}** | **{per_stream_kib:.1} KiB** |");
    println!(
        "| steady: {} msg/s for {} s | {steady_target} deliveries, {steady_rate:.0} deliveries/s |",
        settings.rate, settings.seconds
    );
    println!(
        "| steady: publish-to-receive p50 / p99 / max | **{:.2} ms / {:.2} ms** / {:.2} ms ({} samples) |",
        percentile(&steady, 50.0),
        percentile(&steady, 99.0),
        percentile(&steady, 100.0),
        steady.len()
    );
    println!(
        "| steady: CPU time, mock / subscribers and publisher | {mock_cpu_steady} ms ({:.2} µs per delivery; user {mock_user_steady} ms, system {mock_system_steady} ms) / {own_cpu_steady} ms |",
        mock_cpu_steady as f64 * 1000.0 / steady_target as f64
    );
    println!("| mock RSS after the steady phase | {rss_busy} KiB |");
    println!(
        "| burst: {} messages (published in {:.2} s) | **{burst_rate:.0} deliveries/s** ({:.2} s until all {} delivered) |",
        settings.burst,
        publish_time.as_secs_f64(),
        burst_elapsed.as_secs_f64(),
        settings.burst * n as u64
    );
    println!(
        "| burst: mock CPU time | {mock_cpu_burst} ms ({:.2} µs per delivery) |",
        mock_cpu_burst as f64 * 1000.0 / (settings.burst * n as u64) as f64
    );
}
