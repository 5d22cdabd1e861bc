//! Which browser origins may reach the development-only surfaces: the
//! mock's `/_mock/*` controls and auth-server dev mode's `/dev/*`.
//!
//! Both change state (expire every credential, make requests fail, move the
//! clock, hand out app tokens) without credentials, because they are meant
//! for the developer's own tools on the developer's own machine. A page on
//! any web site the developer visits could otherwise call them from the
//! browser, which sends an `Origin` header naming that site. So such a
//! request is answered only when its origin is a loopback one:
//! `http(s)://localhost`, `127.0.0.0/8` or `[::1]`, any port. A request
//! without `Origin` (curl, a test, a server) is not a browser's
//! cross-origin request and is answered as before.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Whether `origin` (an `Origin` header value, `scheme://host[:port]`) is
/// `http://` or `https://` on `localhost`, an address in `127.0.0.0/8` or
/// `[::1]`, with any port or none. Anything else (`null`, a path, user
/// info, another host, another scheme) is not.
///
/// ```
/// assert!(mock_ably::is_loopback_origin("http://localhost:5173"));
/// assert!(mock_ably::is_loopback_origin("https://127.0.0.1"));
/// assert!(mock_ably::is_loopback_origin("http://[::1]:8080"));
/// assert!(!mock_ably::is_loopback_origin("https://evil.example"));
/// assert!(!mock_ably::is_loopback_origin("http://localhost.evil.example"));
/// assert!(!mock_ably::is_loopback_origin("null"));
/// ```
pub fn is_loopback_origin(origin: &str) -> bool {
    let Some(authority) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let (host_is_loopback, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let Some((host, port)) = bracketed.split_once(']') else {
                return false;
            };
            (
                host.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback()),
                port,
            )
        }
        None => {
            let (host, port) = authority.split_at(authority.find(':').unwrap_or(authority.len()));
            (
                host.eq_ignore_ascii_case("localhost")
                    || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback()),
                port,
            )
        }
    };
    host_is_loopback
        && (port.is_empty()
            || port.strip_prefix(':').is_some_and(|port| {
                !port.is_empty()
                    && port.bytes().all(|byte| byte.is_ascii_digit())
                    && port.parse::<u16>().is_ok()
            }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_over_http_or_https_are_loopback_origins() {
        for origin in [
            "http://localhost",
            "http://localhost:3000",
            "https://LOCALHOST:8443",
            "http://127.0.0.1:8080",
            "http://127.45.6.7",
            "https://[::1]",
            "http://[::1]:65535",
        ] {
            assert!(is_loopback_origin(origin), "{origin}");
        }
        for origin in [
            "",
            "null",
            "https://evil.example",
            "http://localhost.evil.example",
            "http://localhost@evil.example",
            "http://evil.example#@localhost",
            "http://127.0.0.1.nip.io",
            "http://128.0.0.1",
            "http://0.0.0.0:8080",
            "http://[::]:8080",
            "http://[::ffff:127.0.0.1]",
            "http://localhost/",
            "http://localhost:",
            "http://localhost:65536",
            "http://localhost:80/path",
            "http://[::1",
            "file://localhost",
            "ws://localhost",
            "localhost:3000",
        ] {
            assert!(!is_loopback_origin(origin), "{origin}");
        }
    }
}
