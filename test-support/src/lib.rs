//! The waits every test suite in this workspace shares, so that they all
//! bound their waits the same way and one setting loosens them all.
//!
//! - [`patience`]: how long any single wait may take, `TEST_PATIENCE_MS`
//!   (default 10 s: a wait that ends well ends in milliseconds, and a loaded
//!   CI machine is slow).
//! - [`within`] / [`within_named`]: await a future, failing the test after
//!   [`patience`] instead of hanging.
//! - [`eventually`] / [`eventually_async`]: poll a condition that a test can
//!   only observe from outside (a server noticing a closed socket).
//! - [`read_until_closed`] and [`read_response`]: raw-socket reads for the
//!   connection-limit tests (slowloris, idle hoarding, the connection cap).
//!
//! A dev-dependency only (`publish = false`); its one dependency is tokio.

use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;

/// The default of `TEST_PATIENCE_MS`.
const DEFAULT_PATIENCE: Duration = Duration::from_secs(10);

/// How often [`eventually`] checks again.
const POLL: Duration = Duration::from_millis(10);

static PATIENCE: LazyLock<Duration> = LazyLock::new(|| match std::env::var("TEST_PATIENCE_MS") {
    Ok(text) => Duration::from_millis(text.trim().parse().unwrap_or_else(|_| {
        panic!("TEST_PATIENCE_MS must be a whole number of milliseconds, got {text:?}")
    })),
    Err(_) => DEFAULT_PATIENCE,
});

/// How long any single wait may take: `TEST_PATIENCE_MS`, default 10 s.
///
/// # Panics
///
/// If `TEST_PATIENCE_MS` is set but not a whole number.
pub fn patience() -> Duration {
    *PATIENCE
}

/// Awaits `future`, failing the test if it takes longer than [`patience`].
///
/// # Panics
///
/// On timeout.
pub async fn within<F: Future>(future: F) -> F::Output {
    within_named("the awaited future", future).await
}

/// [`within`], naming what was awaited in the failure.
///
/// # Panics
///
/// On timeout, naming `what`.
pub async fn within_named<F: Future>(what: &str, future: F) -> F::Output {
    let patience = patience();
    tokio::time::timeout(patience, future)
        .await
        .unwrap_or_else(|_| {
            panic!("timed out after {patience:?} waiting for {what} (a slow machine may need a larger TEST_PATIENCE_MS)")
        })
}

/// Waits until `check` is true, checking every 10 ms.
///
/// # Panics
///
/// If `check` is still false after [`patience`], naming `what`.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    within_named(what, async {
        while !check() {
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
}

/// [`eventually`] for a check that has to await (an HTTP request, a lock).
///
/// # Panics
///
/// If `check` still yields false after [`patience`], naming `what`.
pub async fn eventually_async<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within_named(what, async {
        while !check().await {
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
}

/// Reads until the peer closes the connection (a reset counts as closed);
/// returns what arrived.
///
/// # Panics
///
/// If the connection is still open after [`patience`].
pub async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    within_named("the server to close the connection", async {
        let mut buf = [0_u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            received.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    received
}

/// Reads one HTTP/1.1 response with a `content-length` body (as hyper
/// writes it, in lower case) and returns it, head and body, as text.
///
/// # Panics
///
/// If the connection closes or fails mid-response, the response has no
/// `content-length`, is not UTF-8, or takes longer than [`patience`].
pub async fn read_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    within_named("a whole response", async {
        let mut buf = [0_u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.expect("the connection is open");
            assert_ne!(
                n,
                0,
                "closed mid-response: {:?}",
                String::from_utf8_lossy(&received)
            );
            received.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&received);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length: "))
                    .expect("a content-length")
                    .parse()
                    .expect("a whole number");
                if body.len() >= length {
                    break;
                }
            }
        }
    })
    .await;
    String::from_utf8(received).expect("a UTF-8 response")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::AsyncWriteExt as _;
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn patience_is_ten_seconds_unless_set() {
        // The test binaries run without TEST_PATIENCE_MS.
        if std::env::var_os("TEST_PATIENCE_MS").is_none() {
            assert_eq!(patience(), Duration::from_secs(10));
        }
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "timed out after 10s waiting for a reply that never comes")]
    async fn within_named_fails_after_the_patience_naming_the_wait() {
        within_named("a reply that never comes", std::future::pending::<()>()).await;
    }

    #[tokio::test(start_paused = true)]
    async fn eventually_returns_once_the_check_holds() {
        let calls = AtomicUsize::new(0);

        eventually("the third check", || {
            calls.fetch_add(1, Ordering::SeqCst) == 2
        })
        .await;

        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn eventually_async_awaits_each_check() {
        let calls = Arc::new(AtomicUsize::new(0));

        eventually_async("the second check", || {
            let calls = Arc::clone(&calls);
            async move { calls.fetch_add(1, Ordering::SeqCst) == 1 }
        })
        .await;

        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_response_is_read_to_the_end_of_its_body_and_a_close_is_seen() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (read, was_read) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhel")
                .await
                .unwrap();
            tokio::task::yield_now().await;
            socket.write_all(b"lo").await.unwrap();
            was_read.await.unwrap();
            socket.write_all(b"bye").await.unwrap();
        });
        let mut stream = TcpStream::connect(addr).await.unwrap();

        let response = read_response(&mut stream).await;
        read.send(()).unwrap();
        let rest = read_until_closed(&mut stream).await;
        server.await.unwrap();

        assert_eq!(
            response,
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
        );
        assert_eq!(rest, b"bye");
    }
}
