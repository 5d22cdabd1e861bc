//! Which address a request comes from, for the per-IP rate limit, and the
//! key it is limited under ([`IpKey`]: IPv4 per address, IPv6 per /64).
//!
//! Normally the TCP peer. Behind a load balancer the peer is the balancer,
//! so `AUTH_TRUSTED_PROXIES` lists the proxies whose `X-Forwarded-For` is
//! believed: when the peer is one of them, the client is the right-most
//! `X-Forwarded-For` address that is not itself a trusted proxy. Addresses
//! further left were written by the client and could be anything, so they
//! are never used unless every hop to their right is trusted.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// An address range: an IP address and a prefix length (`10.0.0.0/8`,
/// `fd00::/8`); a bare address is a range of one. An IPv4-mapped IPv6 range
/// (`::ffff:10.0.0.0/104`) is read as the IPv4 range it maps
/// (`10.0.0.0/8`), as peers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange(IpNet);

impl IpRange {
    /// Whether `ip` is in the range. IPv4 and IPv6 ranges only hold
    /// addresses of their own family; an IPv4-mapped IPv6 peer
    /// (`::ffff:10.0.0.1`) is read as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl FromStr for IpRange {
    type Err = String;

    /// Parses `ADDR` or `ADDR/PREFIX`.
    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        // The last 32 bits of an IPv4-mapped address are the IPv4 address:
        // a prefix that reaches into them is an IPv4 range.
        let net = match addr.to_canonical() {
            IpAddr::V4(v4) if addr.is_ipv6() && prefix >= 96 => IpNet::new(v4.into(), prefix - 96),
            _ => IpNet::new(addr, prefix),
        };
        net.map(Self)
            .map_err(|_| format!("{text:?}: the prefix length must be 0 to {max}"))
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What the per-IP limit counts a client address as: an IPv4 address on
/// its own, an IPv6 address by its /64. A /64 is what one subscriber gets
/// (RFC 6177; SLAAC picks the low 64 bits at will), so keying per /128 would
/// give every such client 2^64 fresh buckets. An IPv4-mapped IPv6 address
/// (`::ffff:198.51.100.7`, as a dual-stack socket reports IPv4 peers) counts
/// as its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum IpKey {
    /// An IPv4 address.
    V4(u32),
    /// The first 64 bits of an IPv6 address.
    V6Net(u64),
}

impl IpKey {
    /// The key `ip` is limited under.
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(ip) => Self::V4(ip.to_bits()),
            // The high half of the 128 bits: the truncation is the point.
            IpAddr::V6(ip) => Self::V6Net((ip.to_bits() >> 64) as u64),
        }
    }
}

/// The client address of a request from `peer` with `headers`, trusting
/// `X-Forwarded-For` only from `trusted` proxies (see the module docs).
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpRange]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|range| range.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    // Several X-Forwarded-For headers form one list, in order (RFC 9110 §5.3).
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip.to_canonical();
                if !is_trusted(client) {
                    break;
                }
            }
            // Garbage from here on leftwards: stop at the last good hop.
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ranges(list: &[&str]) -> Vec<IpRange> {
        list.iter().map(|r| r.parse().unwrap()).collect()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn ranges_parse_and_match_by_prefix() {
        let cases = [
            ("10.0.0.0/8", "10.200.3.4", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("192.168.1.0/25", "192.168.1.127", true),
            ("192.168.1.0/25", "192.168.1.128", false),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            ("10.0.0.0/8", "fd00::1", false),
        ];
        for (range, addr, expected) in cases {
            let range: IpRange = range.parse().unwrap();

            assert_eq!(range.contains(ip(addr)), expected, "{range} {addr}");
        }
    }

    #[test]
    fn an_ipv4_mapped_range_is_the_ipv4_range_it_maps() {
        let cases = [
            ("::ffff:10.0.0.0/104", "10.1.2.3", true),
            ("::ffff:10.0.0.0/104", "::ffff:10.1.2.3", true),
            ("::ffff:10.0.0.0/104", "11.0.0.1", false),
            ("::ffff:10.0.0.1", "10.0.0.1", true),
            ("::ffff:10.0.0.1", "10.0.0.2", false),
            ("::ffff:0.0.0.0/64", "10.0.0.1", false),
            ("::ffff:0.0.0.0/64", "::1", true),
        ];
        for (range, addr, expected) in cases {
            let range: IpRange = range.parse().unwrap();

            assert_eq!(range.contains(ip(addr)), expected, "{range} {addr}");
        }
        assert_eq!(
            "::ffff:10.0.0.0/104"
                .parse::<IpRange>()
                .unwrap()
                .to_string(),
            "10.0.0.0/8"
        );
    }

    #[test]
    fn ipv6_addresses_share_a_key_per_64_and_mapped_ipv4_counts_as_ipv4() {
        let key = |text| IpKey::of(ip(text));

        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:198.51.100.7"), key("198.51.100.7"));
        assert_ne!(key("198.51.100.7"), key("198.51.100.8"));
        // 0.0.0.1 and ::1 do not collide: the families are kept apart.
        assert_ne!(key("0.0.0.1"), key("::1"));
    }

    #[test]
    fn malformed_ranges_are_refused() {
        for bad in [
            "",
            "10.0.0",
            "10.0.0.0/33",
            "::/129",
            "host.example",
            "1.2.3.4/x",
        ] {
            assert!(bad.parse::<IpRange>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let headers = forwarded(&["1.1.1.1"]);

        assert_eq!(
            client_ip(ip("203.0.113.9"), &headers, &ranges(&["10.0.0.0/8"])),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_trusted_proxy_names_the_rightmost_untrusted_hop() {
        let trusted = ranges(&["10.0.0.0/8"]);
        // Client-written junk, the real client, then an inner proxy.
        let headers = forwarded(&["6.6.6.6, 198.51.100.7", "10.0.0.5"]);

        assert_eq!(
            client_ip(ip("10.0.0.1"), &headers, &trusted),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn without_a_usable_header_the_peer_is_the_client() {
        let trusted = ranges(&["10.0.0.0/8"]);

        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), &forwarded(&["not-an-ip"]), &trusted),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_ip(
                ip("10.0.0.1"),
                &forwarded(&["junk, 198.51.100.7"]),
                &trusted
            ),
            ip("198.51.100.7")
        );
    }
}
