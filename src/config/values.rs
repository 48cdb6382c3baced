//! Value types that validate themselves while the TOML is deserialised, so a
//! bad value is reported with the file position of that value.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde::de::{self, Deserializer};

/// A duration written the human way: `"500ms"`, `"10s"`, `"15m"`, `"24h"`, `"90d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Dur).map_err(de::Error::custom)
    }
}

/// Parses `"15m"`-style durations; the error says how to write one.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("invalid duration {s:?} ({e}); write a number and a unit, e.g. \"500ms\", \"10s\", \"15m\", \"24h\", \"90d\"")
    })
}

/// A size in bytes: an integer, or a string such as `"64KiB"`, `"25MiB"`, `"1GB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(s) => parse_size(&s).map(ByteSize).map_err(de::Error::custom),
        }
    }
}

/// Parses a size with an optional unit (B, KB, KiB, MB, MiB, GB, GiB; case-insensitive).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let hint = || format!("invalid size {s:?}; write e.g. 65536, \"64KiB\", \"25MiB\" or \"1GB\"");
    let n: u64 = num.parse().map_err(|_| hint())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        _ => return Err(hint()),
    };
    n.checked_mul(mult).ok_or_else(hint)
}

/// A rate such as `"20/min"`, `"5/s"`, `"100/hour"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many.
    pub count: std::num::NonZeroU32,
    /// Per how long.
    pub per: Duration,
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, humantime::format_duration(self.per))
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_rate(&s).map_err(de::Error::custom)
    }
}

/// Parses `N/unit` with unit s, sec, second, m, min, minute, h, hour, d, day.
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let hint = || {
        format!(
            "invalid rate {s:?}; write a count per unit, e.g. \"20/min\", \"5/s\", \"100/hour\""
        )
    };
    let (n, unit) = s.trim().split_once('/').ok_or_else(hint)?;
    let count: u32 = n.trim().parse().map_err(|_| hint())?;
    let count = std::num::NonZeroU32::new(count).ok_or_else(hint)?;
    let secs = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        "d" | "day" => 86_400,
        _ => return Err(hint()),
    };
    Ok(Rate {
        count,
        per: Duration::from_secs(secs),
    })
}

/// Parses a network; a bare address becomes a /32 or /128. Host bits must be zero,
/// because `10.1.2.3/8` is almost always a typo for something narrower.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let t = s.trim();
    if let Ok(ip) = t.parse::<std::net::IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    let net = IpNet::from_str(t).map_err(|_| {
        format!("invalid network {s:?}; write an address or a CIDR such as \"10.20.0.0/16\" or \"2001:db8::/32\"")
    })?;
    if net.trunc() != net {
        return Err(format!(
            "network {s:?} has host bits set; did you mean \"{}\"?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// A listen address such as `"0.0.0.0:8443"` or `"[::]:8443"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr(pub SocketAddr);

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.trim().parse().map(Addr).map_err(|_| {
            de::Error::custom(format!(
                "invalid listen address {s:?}; write IP:PORT, e.g. \"0.0.0.0:8443\" or \"[::]:8443\""
            ))
        })
    }
}

/// An HTTP method name, upper-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MethodName(pub http::Method);

impl<'de> Deserialize<'de> for MethodName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let upper = s.trim().to_ascii_uppercase();
        let valid = !upper.is_empty() && upper.bytes().all(|b| b.is_ascii_uppercase());
        match (valid, http::Method::from_bytes(upper.as_bytes())) {
            (true, Ok(m)) => Ok(MethodName(m)),
            _ => Err(de::Error::custom(format!(
                "invalid HTTP method {s:?}; write e.g. \"GET\", \"POST\", \"PUT\", \"DELETE\""
            ))),
        }
    }
}

impl fmt::Display for MethodName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("25MiB"), Ok(25 << 20));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn cidrs_refuse_host_bits_and_garbage() {
        assert!(parse_cidr("10.0.0.0/8").is_ok());
        assert!(parse_cidr("192.0.2.7").is_ok());
        assert!(parse_cidr("::/0").is_ok());
        let err = parse_cidr("10.1.2.3/8").unwrap_err();
        assert!(err.contains("10.0.0.0/8"), "{err}");
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("ten").is_err());
    }

    #[test]
    fn rates_parse() {
        let r = parse_rate("20/min").unwrap();
        assert_eq!((r.count.get(), r.per), (20, Duration::from_secs(60)));
        assert!(parse_rate("0/min").is_err());
        assert!(parse_rate("20 per minute").is_err());
        assert!(parse_rate("5/fortnight").is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert!(parse_duration("soon").unwrap_err().contains("\"15m\""));
    }
}
