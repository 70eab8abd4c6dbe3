//! The checks every broker address from the cluster passes before kgate
//! would dial it or give it a listener (a valid host, the upstream
//! allow-list, a port), and how a refused broker is reported: every
//! refusal is counted, but a WARN line is written only the first time a
//! broker, address and cause are seen, not each time a response repeats
//! them (and first sights are rate-limited per cause, so one response
//! naming thousands of brokers cannot flood the log).

use crate::config::{Config, HostPort};
use crate::logs::clip;
use crate::rewrite::MapError;
use crate::upstream::allow::UpstreamAllow;
use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Mutex, RwLock};
use tracing::{debug, warn};

/// Distinct refusals remembered. Beyond it (a hostile cluster naming
/// thousands of brokers), refusals are logged rate-limited per cause.
pub const MAX_SEEN: usize = 4096;

pub struct Hosts {
    allow: RwLock<UpstreamAllow>,
    seen: Mutex<HashSet<String>>,
}

/// Whether a refusal was seen before.
#[derive(Debug, PartialEq, Eq)]
pub enum Sight {
    First,
    Again,
    /// The set is full: not remembered.
    Unknown,
}

impl Hosts {
    pub fn new(config: &Config) -> Result<Self, String> {
        Ok(Hosts {
            allow: RwLock::new(UpstreamAllow::new(config)?),
            seen: Mutex::new(HashSet::new()),
        })
    }

    /// A cut-over: the allow-list follows the new cluster's settings.
    pub fn set_upstream(&self, config: &Config) -> Result<(), String> {
        let a = UpstreamAllow::new(config)?;
        match self.allow.write() {
            Ok(mut g) => *g = a,
            Err(p) => *p.into_inner() = a,
        }
        Ok(())
    }

    /// A valid host on the allow-list, and a port.
    pub fn check(&self, node_id: i32, host: &str, port: i32) -> Result<HostPort, MapError> {
        let at = format!("{}:{port}", clip(host));
        if !valid_host(host) {
            return Err(self.refused(
                "invalid-host",
                node_id,
                &at,
                format!(
                    "broker {node_id} has an invalid host {:?}; not dialled",
                    clip(host)
                ),
            ));
        }
        let allowed = match self.allow.read() {
            Ok(a) => a.check(host),
            Err(p) => p.into_inner().check(host),
        };
        if let Err(why) = allowed {
            return Err(self.refused(
                "allow-list",
                node_id,
                &at,
                format!("broker {node_id} at {at} is not dialled: {why}"),
            ));
        }
        let port16 = u16::try_from(port).ok().filter(|p| *p > 0).ok_or_else(|| {
            self.refused(
                "invalid-port",
                node_id,
                &at,
                format!("broker {node_id} has invalid port {port}"),
            )
        })?;
        Ok(HostPort::new(host, port16))
    }

    /// Counts a refused broker, and logs it the first time this broker,
    /// `detail` (its address, or the local failure) and cause are seen.
    pub fn refused(&self, cause: &str, node_id: i32, detail: &str, why: String) -> MapError {
        crate::metrics::get()
            .dynamic_listeners_refused
            .fetch_add(1, Relaxed);
        match self.sight(format!("{cause}\0{node_id}\0{detail}")) {
            Sight::Again => debug!(node_id, cause, "{why}"),
            // New (or beyond the set's bound). A response naming thousands
            // of new brokers at once still writes a few lines per cause and
            // second, and the rest as a "suppressed" count.
            Sight::First | Sight::Unknown => {
                if let Some(suppressed) = crate::logs::allow(&format!("refused:{cause}")) {
                    warn!(node_id, cause, suppressed, "{why}");
                }
            }
        }
        MapError(why)
    }

    fn sight(&self, key: String) -> Sight {
        let mut seen = match self.seen.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if seen.contains(&key) {
            Sight::Again
        } else if seen.len() >= MAX_SEEN {
            Sight::Unknown
        } else {
            seen.insert(key);
            Sight::First
        }
    }
}

/// Whether `host` can name a broker: an IP address, or a DNS name of at
/// most 253 bytes (a trailing dot aside) made of labels of at most 63
/// letters, digits, `-` and `_`, not starting with `-`.
pub fn valid_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let h = host.strip_suffix('.').unwrap_or(host);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name of exactly `len` bytes: 63-byte labels joined by dots.
    fn name_of(len: usize) -> String {
        let mut s = String::new();
        while s.len() < len {
            if !s.is_empty() {
                s.push('.');
            }
            let label = (len - s.len()).min(63);
            s.push_str(&"a".repeat(label));
        }
        assert_eq!(s.len(), len);
        s
    }

    #[test]
    fn valid_host_bounds() {
        assert!(!valid_host(""));
        assert!(!valid_host("."));
        assert!(valid_host(&name_of(253)));
        assert!(!valid_host(&name_of(254)));
        assert!(
            valid_host(&format!("{}.", name_of(253))),
            "a trailing dot is not counted"
        );
        assert!(valid_host(&format!("{}.example.com", "a".repeat(63))));
        assert!(!valid_host(&format!("{}.example.com", "a".repeat(64))));
        assert!(valid_host("b-1.kafka.us-east-1.amazonaws.com."));
        assert!(valid_host("::1") && valid_host("fd00:ec2::254") && valid_host("10.0.0.1"));
        assert!(!valid_host("[::1]"), "brackets are not part of an address");
        assert!(!valid_host("a..b") && !valid_host("-a.b") && !valid_host("a b") && !valid_host("a/b"));
        assert!(valid_host("under_score.local"));
    }

    fn hosts() -> Hosts {
        let mut c = Config::with_bootstrap(vec![HostPort::new("127.0.0.1", 9092)]);
        c.upstream_hosts = Some(vec!["127.0.0.1".into()]);
        Hosts::new(&c).unwrap()
    }

    #[test]
    fn a_refusal_is_logged_on_first_sight_only_and_counted_every_time() {
        let h = hosts();
        let m = &crate::metrics::get().dynamic_listeners_refused;
        let before = m.load(Relaxed);
        assert!(h.check(1, "127.0.0.1", 9092).is_ok());
        for _ in 0..3 {
            let e = h.check(2, "127.0.0.2", 9092).unwrap_err();
            assert!(e.0.contains("127.0.0.2:9092 is not dialled"), "{}", e.0);
        }
        assert!(m.load(Relaxed) >= before + 3, "each refusal is counted");
        assert_eq!(
            h.sight("allow-list\u{0}2\u{0}127.0.0.2:9092".into()),
            Sight::Again
        );
        assert_eq!(
            h.sight("allow-list\u{0}3\u{0}127.0.0.2:9092".into()),
            Sight::First
        );
        assert!(h.check(2, "127.0.0.1", 0).is_err());
        assert_eq!(h.sight("invalid-port\u{0}2\u{0}127.0.0.1:0".into()), Sight::Again);
    }

    #[test]
    fn the_set_of_seen_refusals_is_bounded() {
        let h = hosts();
        for i in 0..MAX_SEEN {
            assert_eq!(h.sight(format!("k{i}")), Sight::First);
        }
        assert_eq!(h.sight("one more".into()), Sight::Unknown);
        assert_eq!(h.sight("one more".into()), Sight::Unknown, "never remembered");
        assert_eq!(h.sight("k0".into()), Sight::Again);
        let e = h.refused("cap", 9, "", "broker 9 gets no listener".into());
        assert_eq!(e.0, "broker 9 gets no listener");
    }
}
