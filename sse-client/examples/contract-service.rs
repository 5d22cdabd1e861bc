//! The test service LaunchDarkly's `sse-contract-tests` harness drives, so
//! that the real harness can be pointed at our `EventSource` where it can be
//! downloaded (our own tests port every one of its cases natively).
//!
//! Run with `cargo run -p sse-client --example contract-service -- 8000`,
//! then the harness with `--url http://localhost:8000`.
//!
//! The protocol (`docs/sse-conformance.md#launchdarkly-contract-tests`):
//! `GET /` lists capabilities, `POST /` opens a stream and answers with its
//! `Location`, `POST <stream>` takes `{"command":"restart"}`, `DELETE <stream>`
//! closes it, `DELETE /` stops the service. Every event, comment and error is
//! POSTed as JSON to `callbackUrl/<n>`, `n` counting from 1.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sse_client::sse::{EventSource, Item, ReconnectOptions, Request};
use tokio::sync::{mpsc, oneshot};

/// `POST /`: the stream the harness wants.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamOptions {
    stream_url: String,
    callback_url: String,
    initial_delay_ms: Option<u64>,
    read_timeout_ms: Option<u64>,
    last_event_id: Option<String>,
    #[serde(default)]
    headers: HashMap<String, String>,
    method: Option<String>,
    body: Option<String>,
}

#[derive(Clone, Default)]
struct Service {
    next_id: Arc<AtomicU64>,
    /// Open streams: their command channel; dropping it stops the stream.
    streams: Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<()>>>>,
    stop: Arc<Mutex<Option<oneshot::Sender<()>>>>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .map(|arg| arg.parse())
        .transpose()?
        .unwrap_or(8000);
    let (stop_tx, stop_rx) = oneshot::channel();
    let service = Service {
        stop: Arc::new(Mutex::new(Some(stop_tx))),
        ..Service::default()
    };
    let app = Router::new()
        .route("/", get(capabilities).post(open).delete(shutdown))
        .route("/streams/{id}", post(command).delete(close))
        .with_state(service);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("contract service on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = stop_rx.await;
        })
        .await?;
    Ok(())
}

async fn capabilities() -> Json<Value> {
    Json(json!({
        "capabilities": [
            "bom", "comments", "headers", "last-event-id", "post", "report",
            "read-timeout", "restart", "server-directed-shutdown-request"
        ]
    }))
}

async fn shutdown(State(service): State<Service>) -> StatusCode {
    if let Some(stop) = service.stop.lock().expect("not poisoned").take() {
        let _ = stop.send(());
    }
    StatusCode::NO_CONTENT
}

async fn open(
    State(service): State<Service>,
    Json(options): Json<StreamOptions>,
) -> Result<impl IntoResponse, (StatusCode, String)> {
    let source = build(&options).map_err(|err| (StatusCode::BAD_REQUEST, err.to_string()))?;
    let id = service.next_id.fetch_add(1, Ordering::SeqCst);
    let (commands, receiver) = mpsc::unbounded_channel();
    service
        .streams
        .lock()
        .expect("not poisoned")
        .insert(id, commands);
    tokio::spawn(run(source, options.callback_url, receiver));
    let mut headers = HeaderMap::new();
    let location = format!("/streams/{id}").parse().expect("a valid header");
    headers.insert(header::LOCATION, location);
    Ok((StatusCode::CREATED, headers))
}

async fn command(
    State(service): State<Service>,
    Path(id): Path<u64>,
    Json(body): Json<Value>,
) -> StatusCode {
    let streams = service.streams.lock().expect("not poisoned");
    match (streams.get(&id), body["command"].as_str()) {
        (Some(commands), Some("restart")) => {
            let _ = commands.send(());
            StatusCode::NO_CONTENT
        }
        (Some(_), _) => StatusCode::BAD_REQUEST,
        (None, _) => StatusCode::NOT_FOUND,
    }
}

async fn close(State(service): State<Service>, Path(id): Path<u64>) -> StatusCode {
    match service.streams.lock().expect("not poisoned").remove(&id) {
        Some(_) => StatusCode::NO_CONTENT,
        None => StatusCode::NOT_FOUND,
    }
}

fn build(options: &StreamOptions) -> sse_client::Result<EventSource> {
    let url = reqwest::Url::parse(&options.stream_url)
        .map_err(|err| sse_client::Error::Config(err.to_string()))?;
    let method = options.method.as_deref().unwrap_or("GET");
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|err| sse_client::Error::Config(err.to_string()))?;
    let mut request = Request::new(method, url);
    for (name, value) in &options.headers {
        request = request.header(name, value)?;
    }
    if let Some(body) = &options.body {
        request = request.body(body.clone());
    }
    let delay = Duration::from_millis(options.initial_delay_ms.unwrap_or(1000));
    let mut builder = EventSource::with_request(request)
        .reconnect(
            ReconnectOptions::default()
                .initial_delay(delay)
                .retry_floor(Duration::ZERO),
        )
        .read_timeout(options.read_timeout_ms.map(Duration::from_millis));
    if let Some(id) = &options.last_event_id {
        builder = builder.last_event_id(id.clone());
    }
    builder.build()
}

/// Reads the stream, POSTing each item to the callback, until the stream
/// ends or the harness closes it.
async fn run(mut source: EventSource, callback: String, mut commands: mpsc::UnboundedReceiver<()>) {
    let http = reqwest::Client::new();
    let mut n = 0_u64;
    loop {
        let item = tokio::select! {
            item = source.next() => item,
            command = commands.recv() => match command {
                Some(()) => {
                    source.restart();
                    continue;
                }
                None => return,
            },
        };
        let message = match item {
            None => return,
            Some(Ok(Item::Event(event))) => json!({
                "kind": "event",
                "event": {"type": event.event_type(), "data": event.data(), "id": event.id()},
            }),
            Some(Ok(Item::Comment(comment))) => json!({"kind": "comment", "comment": comment}),
            Some(Ok(Item::Reconnecting { error, .. })) => {
                json!({"kind": "error", "error": error.to_string()})
            }
            Some(Err(error)) => json!({"kind": "error", "error": error.to_string()}),
            Some(Ok(_)) => continue,
        };
        n += 1;
        let url = format!("{}/{n}", callback.trim_end_matches('/'));
        if let Err(err) = http.post(url).json(&message).send().await {
            eprintln!("callback failed: {err}");
        }
    }
}
