//! Prints every event of an event stream as it arrives, reconnecting as a
//! browser would: the generic [`EventSource`], nothing of Ably (compare
//! LaunchDarkly's eventsource-client `tail` example).
//!
//! ```sh
//! cargo run -p sse-client --example tail -- URL ["Name: value"]...
//! ```
//!
//! Each extra argument is a request header, such as
//! `"Authorization: Bearer token"`.

use std::process::ExitCode;

use sse_client::sse::{EventSource, Item, Request};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(url) = args.next() else {
        eprintln!("usage: tail URL [\"Name: value\"]...");
        return ExitCode::from(2);
    };
    match tail(&url, args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn tail(url: &str, headers: impl Iterator<Item = String>) -> sse_client::Result<()> {
    let mut request = Request::get(url)?;
    for header in headers {
        let Some((name, value)) = header.split_once(':') else {
            return Err(sse_client::Error::Config(format!(
                "expected \"Name: value\", got {header:?}"
            )));
        };
        request = request.header(name.trim(), value.trim())?;
    }
    let mut events = EventSource::with_request(request).build()?;
    // `None` once the server says stop (204) or the retries run out; an
    // `Err` is always the last item.
    while let Some(item) = events.next().await {
        match item? {
            Item::Event(event) => {
                println!(
                    "{}: {} (id {:?})",
                    event.event_type(),
                    event.data(),
                    event.id()
                );
            }
            Item::Comment(text) => println!(":{text}"),
            Item::Reconnecting { error, delay } => {
                eprintln!("disconnected ({error}); reconnecting in {delay:?}");
            }
            Item::Open(_) => eprintln!("connected"),
            _ => {}
        }
    }
    Ok(())
}
