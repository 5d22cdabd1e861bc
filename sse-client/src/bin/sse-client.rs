//! `sse-client`: subscribe to Ably channels over SSE, or follow any event
//! stream, printing one JSON object per message on stdout.
//!
//! Run with `cargo run -p sse-client -- subscribe --channel NAME --auth-url URL`
//! or `cargo run -p sse-client -- raw URL`. `--help` lists every flag.
//!
//! Exit codes: 0 after `--limit` messages, 1 on a fatal error (printed as
//! `error: <code> <message>` on stderr), 2 on bad usage.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use base64::Engine as _;
use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use reqwest::header::{HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::{Map, Value};
use sse_client::Error;
use sse_client::ably::{
    ApiKey, Auth, AuthMethod, AuthUrl, ChannelMessage, Client, Payload, Rewind, StateChange,
    SubscribeOptions, Update,
};
use sse_client::sse::{EventSource, Item, Request};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Subscribe to Ably channels over SSE, or follow any event stream"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Pretty-print each JSON object over several lines, for humans.
    #[arg(long, global = true)]
    pretty: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Subscribe to Ably channels: one JSON object per message.
    Subscribe(SubscribeArgs),
    /// Follow any event stream with browser semantics: one JSON object per
    /// event, `{"type","data","id"}`.
    Raw(RawArgs),
}

#[derive(Debug, Args)]
struct SubscribeArgs {
    /// A channel to subscribe to (repeatable). May carry a qualifier such as
    /// `[?rewind=1]name`.
    #[arg(long = "channel", value_name = "NAME", required = true)]
    channels: Vec<String>,
    /// The Ably endpoint serving /sse.
    #[arg(long, env = "ABLY_ENDPOINT", default_value = sse_client::ably::DEFAULT_ENDPOINT, value_parser = parse_url)]
    endpoint: String,
    /// Where to fetch tokens (JWT, TokenDetails or TokenRequest).
    #[arg(long, env = "ABLY_AUTH_URL", value_name = "URL", value_parser = parse_url)]
    auth_url: Option<String>,
    /// A header for the auth URL request, `"Name: value"` (repeatable).
    #[arg(long = "auth-header", value_name = "NAME: VALUE", value_parser = Quiet(parse_header))]
    auth_headers: Vec<(String, String)>,
    /// GET (default) or POST for the auth URL.
    #[arg(long, value_enum, default_value_t = Method::Get)]
    auth_method: Method,
    /// A parameter for the auth URL request, `k=v` (repeatable).
    #[arg(long = "auth-param", value_name = "K=V", value_parser = Quiet(parse_param))]
    auth_params: Vec<(String, String)>,
    /// A fixed token or Ably JWT (cannot be renewed). Takes precedence over
    /// --auth-url and --key.
    #[arg(long, value_name = "T")]
    token: Option<String>,
    /// An Ably API key `appId.keyId:secret`, sent as Basic auth (for servers).
    /// Used when neither --token nor --auth-url is given.
    #[arg(long, env = "ABLY_API_KEY", value_name = "KEY", hide_env_values = true, value_parser = Quiet(parse_key))]
    key: Option<String>,
    /// Backlog on start: a message count (`10`) or a duration (`30s`, `2m`).
    #[arg(long, value_name = "N|DURATION")]
    rewind: Option<Rewind>,
    /// Ask for vcdiff deltas.
    #[arg(long)]
    delta: bool,
    /// Ask for bare payloads instead of message envelopes.
    #[arg(long)]
    unenveloped: bool,
    /// Resume after this SSE event id.
    #[arg(long, value_name = "ID")]
    last_event: Option<String>,
    /// Exit 0 after this many messages.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
}

#[derive(Debug, Args)]
struct RawArgs {
    /// The event stream's URL.
    #[arg(value_parser = parse_url)]
    url: String,
    /// A request header, `"Name: value"` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = Quiet(parse_header))]
    headers: Vec<(String, String)>,
    /// The last event ID to start from.
    #[arg(long, value_name = "ID")]
    last_event_id: Option<String>,
    /// Exit 0 after this many events.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Method {
    Get,
    Post,
}

/// A value parser whose errors never show the value, unlike clap's own
/// `invalid value '…'` (headers, keys and parameters may carry secrets).
/// Bad usage all the same: exit 2.
#[derive(Clone)]
struct Quiet<T>(fn(&str) -> Result<T, String>);

impl<T: Clone + Send + Sync + 'static> TypedValueParser for Quiet<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let flag = arg.map_or_else(String::new, |arg| format!("{arg}: "));
        value
            .to_str()
            .ok_or_else(|| "not valid UTF-8".to_owned())
            .and_then(self.0)
            .map_err(|message| {
                clap::Error::raw(ErrorKind::ValueValidation, format!("{flag}{message}\n"))
                    .with_cmd(cmd)
            })
    }
}

/// `"Name: value"`, both valid HTTP: a bad header is bad usage (exit 2),
/// not a failure of the stream. The value is never echoed.
fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| "expected \"Name: value\"".to_owned())?;
    let (name, value) = (name.trim(), value.trim());
    if name.is_empty() {
        return Err("header name is empty".to_owned());
    }
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("invalid header name {name:?}"))?;
    HeaderValue::from_str(value).map_err(|_| format!("invalid value for header {name}"))?;
    Ok((name.to_owned(), value.to_owned()))
}

fn parse_url(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|err| format!("invalid URL {text:?}: {err}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("expected an http or https URL, got {text:?}"));
    }
    Ok(text.to_owned())
}

/// Checks the key's shape; the error never echoes the secret.
fn parse_key(text: &str) -> Result<String, String> {
    ApiKey::parse(text).map_err(|err| err.to_string())?;
    Ok(text.to_owned())
}

/// `k=v`; the error never echoes it (the value may be a secret).
fn parse_param(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .filter(|(name, _)| !name.is_empty())
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .ok_or_else(|| "expected k=v".to_owned())
}

/// Why the program stops with exit code 1.
enum Failure {
    /// The stream or subscription ended with this error.
    Stream(Error),
    /// Anything else (stdout closed, a configuration mistake).
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        Failure::Other(err)
    }
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        Failure::Stream(err)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // clap exits 2 on bad usage.
    let cli = Cli::parse();
    if let Command::Subscribe(args) = &cli.command
        && args.token.is_none()
        && args.auth_url.is_none()
        && args.key.is_none()
    {
        Cli::command()
            .error(
                ErrorKind::MissingRequiredArgument,
                "no credentials: give --auth-url, --token or --key (or ABLY_AUTH_URL, ABLY_API_KEY)",
            )
            .exit();
    }
    if let Command::Subscribe(args) = &cli.command
        && let Err(err) = subscribe_options(args).validate()
    {
        Cli::command()
            .error(ErrorKind::ArgumentConflict, err)
            .exit();
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut out = Output {
        stdout: std::io::stdout().lock(),
        pretty: cli.pretty,
    };
    let result = match cli.command {
        Command::Subscribe(args) => subscribe(args, &mut out).await,
        Command::Raw(args) => raw(args, &mut out).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Other(err)) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(Failure::Stream(err)) => {
            let (code, message) = describe(&err);
            eprintln!("error: {code} {message}");
            ExitCode::from(1)
        }
        Err(Failure::Other(err)) => {
            eprintln!("error: 0 {err:#}");
            ExitCode::from(1)
        }
    }
}

/// `<code> <message>` for an error: Ably's own code when there is one, else
/// the HTTP status, else 0.
fn describe(err: &Error) -> (u32, String) {
    if let Some(info) = err.error_info() {
        return (info.code, info.message.clone());
    }
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    (err.status().map_or(0, u32::from), message)
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    let kind = err
        .downcast_ref::<std::io::Error>()
        .map(std::io::Error::kind)
        .or_else(|| {
            err.downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
        });
    kind == Some(std::io::ErrorKind::BrokenPipe)
}

struct Output {
    stdout: std::io::StdoutLock<'static>,
    pretty: bool,
}

impl Output {
    /// One JSON object, then a newline, flushed so pipes see it at once.
    fn line(&mut self, value: &impl Serialize) -> anyhow::Result<()> {
        if self.pretty {
            serde_json::to_writer_pretty(&mut self.stdout, value)?;
        } else {
            serde_json::to_writer(&mut self.stdout, value)?;
        }
        self.stdout.write_all(b"\n")?;
        self.stdout.flush()?;
        Ok(())
    }
}

async fn subscribe(args: SubscribeArgs, out: &mut Output) -> Result<(), Failure> {
    let auth = auth(&args)?;
    let client = Client::builder()
        .endpoint(args.endpoint.clone())
        .auth(auth)
        .build()?;
    let mut subscription = client.subscribe(subscribe_options(&args));
    let mut printed = 0;
    if args.limit == Some(0) {
        return Ok(());
    }
    while let Some(update) = subscription.next().await {
        match update? {
            Update::Message(message) => {
                out.line(&message_json(&message))?;
                printed += 1;
                if args.limit == Some(printed) {
                    return Ok(());
                }
            }
            Update::State(state) => eprintln!("{}", state_line(&state)),
            _ => {}
        }
    }
    Ok(())
}

fn subscribe_options(args: &SubscribeArgs) -> SubscribeOptions {
    let mut options = SubscribeOptions::new(args.channels.iter().cloned())
        .delta(args.delta)
        .enveloped(!args.unenveloped);
    if let Some(rewind) = &args.rewind {
        options = options.rewind(*rewind);
    }
    if let Some(last_event) = &args.last_event {
        options = options.last_event(last_event.clone());
    }
    options
}

fn auth(args: &SubscribeArgs) -> anyhow::Result<Auth> {
    if let Some(token) = &args.token {
        return Ok(Auth::token(token.clone()));
    }
    if let Some(url) = &args.auth_url {
        let mut auth_url = AuthUrl::new(url)?.method(match args.auth_method {
            Method::Get => AuthMethod::Get,
            Method::Post => AuthMethod::Post,
        });
        for (name, value) in &args.auth_headers {
            auth_url = auth_url.header(name, value)?;
        }
        for (name, value) in &args.auth_params {
            auth_url = auth_url.param(name.clone(), value.clone());
        }
        return Ok(Auth::auth_url(auth_url));
    }
    if let Some(key) = &args.key {
        let key = ApiKey::parse(key).context("invalid --key / ABLY_API_KEY")?;
        return Ok(Auth::key(key));
    }
    anyhow::bail!("no credentials: give --auth-url, --token or --key")
}

fn state_line(state: &StateChange) -> String {
    match state {
        StateChange::Connected => "connected".to_owned(),
        StateChange::Disconnected { reason, retry_in } => {
            let (code, message) = describe(reason);
            format!(
                "disconnected: {code} {message}; reconnecting in {} ms",
                retry_in.as_millis()
            )
        }
        StateChange::TokenRenewed { proactive: true } => "token renewed before expiry".to_owned(),
        StateChange::TokenRenewed { proactive: false } => {
            "token renewed after the server rejected it".to_owned()
        }
        StateChange::ContinuityLost => {
            "continuity lost: messages sent while disconnected may be missing".to_owned()
        }
        other => format!("{other:?}"),
    }
}

/// The printed form of a message; absent fields are left out.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageLine<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extras: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "str::is_empty")]
    event_id: &'a str,
}

fn message_json(message: &ChannelMessage) -> MessageLine<'_> {
    let wire = &message.message;
    let (data, encoding) = match &message.payload {
        None => (None, message.encoding.clone()),
        Some(Payload::Json(value)) => (Some(value.clone()), message.encoding.clone()),
        Some(Payload::Text(text)) => (Some(Value::String(text.clone())), message.encoding.clone()),
        Some(Payload::Binary(bytes)) => (
            Some(Value::String(
                base64::engine::general_purpose::STANDARD.encode(bytes),
            )),
            Some(match &message.encoding {
                Some(rest) => format!("{rest}/base64"),
                None => "base64".to_owned(),
            }),
        ),
    };
    MessageLine {
        channel: message.channel.as_deref(),
        id: wire.id.as_deref(),
        name: wire.name.as_deref(),
        data,
        encoding,
        timestamp: wire.timestamp,
        client_id: wire.client_id.as_deref(),
        extras: wire.extras.as_ref(),
        event_id: &message.event_id,
    }
}

/// The printed form of a raw event.
#[derive(Serialize)]
struct EventLine<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    data: &'a str,
    id: &'a str,
}

async fn raw(args: RawArgs, out: &mut Output) -> Result<(), Failure> {
    let mut request = Request::get(&args.url)?;
    for (name, value) in &args.headers {
        request = request.header(name, value)?;
    }
    let mut builder = EventSource::with_request(request);
    if let Some(id) = &args.last_event_id {
        builder = builder.last_event_id(id.clone());
    }
    let mut source = builder.build()?;
    let mut printed = 0;
    if args.limit == Some(0) {
        return Ok(());
    }
    while let Some(item) = source.next().await {
        match item? {
            Item::Event(event) => {
                out.line(&EventLine {
                    event_type: event.event_type(),
                    data: event.data(),
                    id: event.id(),
                })?;
                printed += 1;
                if args.limit == Some(printed) {
                    return Ok(());
                }
            }
            Item::Open(_) => eprintln!("connected"),
            Item::Reconnecting { error, delay } => {
                let (code, message) = describe(&error);
                eprintln!(
                    "disconnected: {code} {message}; reconnecting in {} ms",
                    delay.as_millis()
                );
            }
            _ => {}
        }
    }
    Ok(())
}
