//! Per-client-IP rate limits on login endpoints (governor's GCRA, keyed).
//! IPv6 clients are grouped by /64: one host usually owns a whole /64, so a
//! per-address limit would be free to dodge.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::client_ip::client_group;
use crate::config::values::Rate;

/// governor's quota for `rate.count` per `rate.per`, with a burst of `rate.count`.
pub fn quota(rate: Rate) -> Quota {
    let period = rate.per / rate.count.get();
    Quota::with_period(period.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(rate.count)
}

/// A keyed limiter for one rate.
pub struct IpLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

impl IpLimiter {
    /// `rate.count` per `rate.per`, with a burst of `rate.count`.
    pub fn new(rate: Rate) -> Self {
        IpLimiter {
            limiter: RateLimiter::keyed(quota(rate)),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one cell for `ip`; `Err(wait)` says how long until the next one.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.limiter
            .check_key(&client_group(ip))
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Drops state for clients that are back to a full bucket (bounded memory under a spray).
    pub fn trim(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// How many clients are tracked.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// Whether no client is tracked.
    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_share_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_group(a), client_group(b));
        assert_ne!(client_group(a), client_group(c));
    }

    #[test]
    fn the_burst_is_the_count_then_it_waits() {
        let rate = crate::config::values::parse_rate("3/min").unwrap();
        let l = IpLimiter::new(rate);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!((0..3).all(|_| l.check(ip).is_ok()));
        let wait = l.check(ip).unwrap_err();
        assert!(
            wait > Duration::from_secs(1) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(
            l.check("192.0.2.2".parse().unwrap()).is_ok(),
            "other clients are unaffected"
        );
    }
}
