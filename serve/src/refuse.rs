//! The answer to a connection accepted over the cap: a fixed HTTP/1.1 503
//! with Ably's error envelope and `Connection: close`, then the close.
//!
//! Closing a socket whose request has not been read makes the kernel send a
//! reset, which can destroy the 503 before the client reads it. So, while
//! few refusals are pending, each is written, followed by a FIN, and the
//! client's request is read and discarded (for at most
//! [`LINGER`]) before the close. Past [`LINGERING`] pending refusals (a flood),
//! the answer is written without waiting and the socket closed at once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shared::ErrorInfo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// The Ably error code of the refusal: 50000, as the servers' other 503s
/// that are not timeouts (not ready yet) use.
pub(crate) const CODE: u32 = shared::codes::INTERNAL_ERROR;

/// The refusal's message.
pub(crate) const MESSAGE: &str = "the server is at its connection limit; retry later";

/// How many refusals may linger (drain the request, then close) at once.
const LINGERING: usize = 16;

/// How long a lingering refusal waits for the client's request and FIN.
const LINGER: Duration = Duration::from_secs(1);

/// At most this much of the client's request is read and discarded.
const DRAIN_BYTES: usize = 16 * 1024;

/// Refuses connections over the cap.
#[derive(Debug, Clone)]
pub(crate) struct Refuser {
    response: Bytes,
    lingering: Arc<Semaphore>,
}

impl Refuser {
    pub(crate) fn new() -> Self {
        Self {
            response: Bytes::from(response()),
            lingering: Arc::new(Semaphore::new(LINGERING)),
        }
    }

    /// Answers `stream` with the 503 and closes it, without blocking the
    /// accept loop.
    pub(crate) fn refuse(&self, mut stream: TcpStream) {
        let Ok(permit) = Arc::clone(&self.lingering).try_acquire_owned() else {
            // A fresh socket's send buffer is empty: this write completes.
            let _ = stream.try_write(&self.response);
            return;
        };
        let response = self.response.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(LINGER, async {
                stream.write_all(&response).await?;
                stream.shutdown().await?;
                let mut sink = [0_u8; 1024];
                let mut drained = 0;
                while drained < DRAIN_BYTES {
                    match stream.read(&mut sink).await? {
                        0 => break,
                        n => drained += n,
                    }
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
        });
    }
}

/// The refusal's bytes, head and body.
fn response() -> Vec<u8> {
    let info = ErrorInfo::new(CODE, 503, MESSAGE);
    let header_message = info.header_message();
    let body = serde_json::to_string(&info.into_response())
        .unwrap_or_else(|_| format!(r#"{{"error":{{"code":{CODE},"statusCode":503}}}}"#));
    format!(
        "HTTP/1.1 503 Service Unavailable\r\n\
         content-type: application/json\r\n\
         content-length: {}\r\n\
         x-ably-errorcode: {CODE}\r\n\
         x-ably-errormessage: {header_message}\r\n\
         cache-control: no-store\r\n\
         retry-after: 1\r\n\
         connection: close\r\n\
         \r\n\
         {body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_503_with_the_ably_envelope() {
        let text = String::from_utf8(response()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();

        assert_eq!(
            body,
            r#"{"error":{"code":50000,"statusCode":503,"message":"the server is at its connection limit; retry later","href":"https://help.ably.io/error/50000"}}"#
        );
        assert_eq!(
            head,
            format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nx-ably-errorcode: 50000\r\n\
                 x-ably-errormessage: the server is at its connection limit; retry later\r\n\
                 cache-control: no-store\r\nretry-after: 1\r\nconnection: close",
                body.len()
            )
        );
    }
}
