//! Who the client really is.
//!
//! The client is the TCP peer unless the peer is a configured trusted proxy; only then is
//! `X-Forwarded-For` read, right to left, up to the first untrusted address. Anything
//! unreadable in the part of the chain that is walked is an error (the caller answers
//! 400): the gateway never guesses an address, and never believes an entry that an
//! untrusted party could have written.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::HeaderValue;
use http::header::GetAll;
use ipnet::{IpNet, Ipv4Net};

/// Most `X-Forwarded-For` entries walked before the request is refused.
pub const MAX_XFF_ENTRIES: usize = 64;

/// A set of trusted proxy networks (from config `client_ip.trusted_proxies`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Builds the set. IPv4-mapped IPv6 networks (`::ffff:10.0.0.0/104`) are stored as
    /// their IPv4 equivalent, because addresses are normalised the same way before lookup.
    pub fn new(nets: Vec<IpNet>) -> Self {
        let nets = nets.into_iter().map(normalize_net).collect();
        Self { nets }
    }

    /// True if `ip` (normalised with [`normalize_ip`]) lies in one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = normalize_ip(ip);
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// True if no network is configured (then no peer is trusted).
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

/// An IPv4-mapped IPv6 network with a prefix of at least 96 bits becomes IPv4.
fn normalize_net(net: IpNet) -> IpNet {
    let IpNet::V6(v6) = net else {
        return net;
    };
    match (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96)) {
        (Some(v4), Some(len)) => Ipv4Net::new(v4, len).map_or(net, |n| IpNet::V4(n.trunc())),
        _ => net,
    }
}

/// IPv4-mapped IPv6 (::ffff:a.b.c.d) becomes the IPv4 address; everything else unchanged.
pub fn normalize_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The resolved client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp {
    /// The client address, normalised with [`normalize_ip`].
    pub addr: IpAddr,
    /// True if the address was taken from `X-Forwarded-For` rather than the TCP peer.
    pub via_proxy: bool,
}

/// Why the client address could not be determined. The caller answers 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientIpError {
    /// An entry reached while walking `X-Forwarded-For` is not an IP address.
    #[error("unparsable X-Forwarded-For entry")]
    InvalidEntry,
    /// An `X-Forwarded-For` header value is not visible ASCII.
    #[error("X-Forwarded-For is not visible ASCII")]
    NotAscii,
    /// More than [`MAX_XFF_ENTRIES`] entries would have to be walked.
    #[error("too many X-Forwarded-For entries")]
    TooManyEntries,
}

/// The client address: the TCP peer, unless the peer is trusted; then walk every
/// X-Forwarded-For value (all header lines, in order, comma-split) right to left
/// and return the first address that is not trusted (or the leftmost, if all are trusted).
///
/// Promises: an untrusted peer's `X-Forwarded-For` is never parsed; every entry walked is
/// trimmed and must be an IP address (`1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:443`), else `Err`; at most [`MAX_XFF_ENTRIES`] entries
/// are walked; every address is normalised with [`normalize_ip`].
pub fn resolve(
    peer: IpAddr,
    xff: GetAll<'_, HeaderValue>,
    trusted: &TrustedProxies,
) -> Result<ClientIp, ClientIpError> {
    let peer = normalize_ip(peer);
    if !trusted.contains(peer) {
        return Ok(ClientIp {
            addr: peer,
            via_proxy: false,
        });
    }
    let mut leftmost = None;
    let mut walked = 0usize;
    // Last header line first, and within a line the last entry first: the right end
    // was written by the proxy closest to us, the only one we can vouch for.
    for value in xff.into_iter().rev() {
        let text = value.to_str().map_err(|_| ClientIpError::NotAscii)?;
        for entry in text.rsplit(',') {
            walked += 1;
            if walked > MAX_XFF_ENTRIES {
                return Err(ClientIpError::TooManyEntries);
            }
            let addr = normalize_ip(parse_entry(entry)?);
            if !trusted.contains(addr) {
                return Ok(ClientIp {
                    addr,
                    via_proxy: true,
                });
            }
            leftmost = Some(addr);
        }
    }
    Ok(match leftmost {
        Some(addr) => ClientIp {
            addr,
            via_proxy: true,
        },
        None => ClientIp {
            addr: peer,
            via_proxy: false,
        },
    })
}

/// Parses one trimmed entry: a bare IPv4/IPv6 address, `v4:port`, `[v6]` or `[v6]:port`.
fn parse_entry(entry: &str) -> Result<IpAddr, ClientIpError> {
    let entry = entry.trim_matches(|c| c == ' ' || c == '\t');
    if let Some(rest) = entry.strip_prefix('[') {
        let (literal, after) = rest.split_once(']').ok_or(ClientIpError::InvalidEntry)?;
        let addr: Ipv6Addr = literal.parse().map_err(|_| ClientIpError::InvalidEntry)?;
        if !after.is_empty() {
            let port = after.strip_prefix(':').ok_or(ClientIpError::InvalidEntry)?;
            check_port(port)?;
        }
        return Ok(IpAddr::V6(addr));
    }
    if let Ok(addr) = entry.parse::<IpAddr>() {
        return Ok(addr);
    }
    let (host, port) = entry.split_once(':').ok_or(ClientIpError::InvalidEntry)?;
    check_port(port)?;
    let addr: Ipv4Addr = host.parse().map_err(|_| ClientIpError::InvalidEntry)?;
    Ok(IpAddr::V4(addr))
}

/// A port is 1 to 5 ASCII digits within u16 (the value itself is not used).
fn check_port(port: &str) -> Result<(), ClientIpError> {
    let digits = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    if digits && port.parse::<u16>().is_ok() {
        Ok(())
    } else {
        Err(ClientIpError::InvalidEntry)
    }
}

/// The unit a client is counted by: an IPv4 address (IPv4-mapped IPv6
/// included), or an IPv6 /64. One host usually owns a whole /64, so counting
/// single IPv6 addresses would be free to dodge by rotating them.
pub fn client_group(ip: IpAddr) -> IpAddr {
    match normalize_ip(ip) {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(v6) & !(u128::MAX >> 64),
        )),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use http::HeaderMap;
    use http::header::HeaderName;

    const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn xff(lines: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for line in lines {
            map.append(X_FORWARDED_FOR, HeaderValue::from_str(line).unwrap());
        }
        map
    }

    fn run(peer: &str, lines: &[&str], nets: &[&str]) -> Result<ClientIp, ClientIpError> {
        let map = xff(lines);
        resolve(ip(peer), map.get_all(X_FORWARDED_FOR), &trusted(nets))
    }

    fn direct(addr: &str) -> Result<ClientIp, ClientIpError> {
        Ok(ClientIp {
            addr: ip(addr),
            via_proxy: false,
        })
    }

    fn proxied(addr: &str) -> Result<ClientIp, ClientIpError> {
        Ok(ClientIp {
            addr: ip(addr),
            via_proxy: true,
        })
    }

    #[test]
    fn untrusted_peer_ignores_xff() {
        assert_eq!(
            run("198.51.100.9", &["203.0.113.7"], &["10.0.0.0/8"]),
            direct("198.51.100.9")
        );
        // Not even parsed: garbage from an untrusted peer is not an error.
        assert_eq!(
            run("198.51.100.9", &["unknown, _x"], &["10.0.0.0/8"]),
            direct("198.51.100.9")
        );
        // No trusted proxies at all.
        assert_eq!(run("10.0.0.1", &["203.0.113.7"], &[]), direct("10.0.0.1"));
    }

    #[test]
    fn trusted_peer_without_xff_is_the_client() {
        assert_eq!(run("10.0.0.1", &[], &["10.0.0.0/8"]), direct("10.0.0.1"));
    }

    #[test]
    fn trusted_chain_is_walked() {
        let nets = ["10.0.0.0/8"];
        assert_eq!(
            run("10.0.0.1", &["203.0.113.7, 10.0.0.2"], &nets),
            proxied("203.0.113.7")
        );
        // The attacker's leftmost entry is never believed when `real` is untrusted.
        assert_eq!(
            run("10.0.0.1", &["1.1.1.1, 203.0.113.7"], &nets),
            proxied("203.0.113.7")
        );
        assert_eq!(
            run("10.0.0.1", &["127.0.0.1,198.51.100.1"], &nets),
            proxied("198.51.100.1")
        );
    }

    #[test]
    fn all_trusted_gives_leftmost() {
        let nets = ["10.0.0.0/8"];
        assert_eq!(
            run("10.0.0.1", &["10.0.0.5, 10.0.0.2"], &nets),
            proxied("10.0.0.5")
        );
    }

    #[test]
    fn multiple_header_lines_in_order() {
        let nets = ["10.0.0.0/8"];
        let lines = ["6.6.6.6, 203.0.113.7", "10.0.0.3", "10.0.0.2"];
        assert_eq!(run("10.0.0.1", &lines, &nets), proxied("203.0.113.7"));
        let lines = ["10.0.0.9", "10.0.0.3, 10.0.0.2"];
        assert_eq!(run("10.0.0.1", &lines, &nets), proxied("10.0.0.9"));
    }

    #[test]
    fn entry_forms() {
        let nets = ["10.0.0.0/8"];
        for (entry, want) in [
            ("203.0.113.7", "203.0.113.7"),
            (" 203.0.113.7:5678 ", "203.0.113.7"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("\t::ffff:203.0.113.7", "203.0.113.7"),
            ("[::ffff:203.0.113.7]:80", "203.0.113.7"),
        ] {
            assert_eq!(
                run("10.0.0.1", &[entry], &nets),
                proxied(want),
                "entry {entry:?}"
            );
        }
    }

    #[test]
    fn ipv6_and_mapped_peers() {
        assert_eq!(
            run("::ffff:10.0.0.1", &["203.0.113.7"], &["10.0.0.0/8"]),
            proxied("203.0.113.7")
        );
        assert_eq!(
            run("::ffff:198.51.100.9", &["203.0.113.7"], &["10.0.0.0/8"]),
            direct("198.51.100.9")
        );
        // A mapped trusted network in config matches the normalised IPv4 peer.
        assert_eq!(
            run("10.0.0.1", &["203.0.113.7"], &["::ffff:10.0.0.0/104"]),
            proxied("203.0.113.7")
        );
        let v6 = ["2001:db8:ffff::/48"];
        assert_eq!(
            run("2001:db8:ffff::1", &["2001:db8::7, 2001:db8:ffff::2"], &v6),
            proxied("2001:db8::7")
        );
        assert_eq!(normalize_ip(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(normalize_ip(ip("::1.2.3.4")), ip("::1.2.3.4"));
        assert_eq!(normalize_ip(ip("2001:db8::1")), ip("2001:db8::1"));
        assert!(trusted(&["::ffff:10.0.0.0/104"]).contains(ip("::ffff:10.1.2.3")));
        assert!(!trusted(&[]).contains(ip("10.0.0.1")));
        assert!(trusted(&[]).is_empty());
    }

    #[test]
    fn garbage_in_walked_part_is_an_error() {
        let nets = ["10.0.0.0/8"];
        for bad in [
            "unknown",
            "_hidden",
            "",
            " ",
            "203.0.113.7, ",
            "1.2.3",
            "01.2.3.4",
            "1.2.3.4:",
            "1.2.3.4:99999",
            "1.2.3.4:+1",
            "[2001:db8::1",
            "[2001:db8::1]x",
            "[1.2.3.4]",
            "fe80::1%eth0",
            "host.example:80",
            "1.2.3.4 5.6.7.8",
        ] {
            let got = run("10.0.0.1", &[bad], &nets);
            assert_eq!(got, Err(ClientIpError::InvalidEntry), "entry {bad:?}");
        }
        // Garbage left of the first untrusted entry is never reached.
        assert_eq!(
            run("10.0.0.1", &["unknown, 203.0.113.7"], &nets),
            proxied("203.0.113.7")
        );
        // Garbage between trusted hops is reached.
        assert_eq!(
            run("10.0.0.1", &["203.0.113.7, junk, 10.0.0.2"], &nets),
            Err(ClientIpError::InvalidEntry)
        );
    }

    #[test]
    fn non_visible_ascii_is_an_error() {
        let mut map = HeaderMap::new();
        map.append(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"203.0.113.7\xff").unwrap(),
        );
        let got = resolve(
            ip("10.0.0.1"),
            map.get_all(X_FORWARDED_FOR),
            &trusted(&["10.0.0.0/8"]),
        );
        assert_eq!(got, Err(ClientIpError::NotAscii));
    }

    #[test]
    fn entry_cap() {
        let nets = ["10.0.0.0/8"];
        let at_cap = vec!["10.0.0.2"; MAX_XFF_ENTRIES].join(",");
        assert_eq!(run("10.0.0.1", &[&at_cap], &nets), proxied("10.0.0.2"));
        let over = vec!["10.0.0.2"; MAX_XFF_ENTRIES + 1].join(",");
        assert_eq!(
            run("10.0.0.1", &[&over], &nets),
            Err(ClientIpError::TooManyEntries)
        );
        // The cap counts entries across header lines.
        let half = vec!["10.0.0.2"; 40].join(",");
        assert_eq!(
            run("10.0.0.1", &[&half, &half], &nets),
            Err(ClientIpError::TooManyEntries)
        );
    }

    #[test]
    fn other_header_is_not_read() {
        let mut map = HeaderMap::new();
        map.append(
            HeaderName::from_static("x-real-ip"),
            HeaderValue::from_static("203.0.113.7"),
        );
        let got = resolve(
            ip("10.0.0.1"),
            map.get_all(X_FORWARDED_FOR),
            &trusted(&["10.0.0.0/8"]),
        );
        assert_eq!(got, direct("10.0.0.1"));
    }
}
