//! Which hosts kgate may dial. A broker learned from the cluster gets a
//! listener only if its host matches: the configured bootstrap, static and
//! dial entries always do, and so does anything `upstream_hosts` names.
//! Without `upstream_hosts` the patterns come from the bootstrap servers:
//! MSK's `*.kafka.<region>.amazonaws.com`, another name's domain
//! (`*.corp.example.com`), or an IP address's /24 (IPv4) or /64 (IPv6),
//! plus loopback when the bootstrap is loopback. Link-local addresses,
//! where cloud metadata services live (169.254.0.0/16, fd00:ec2::254,
//! fe80::/10), are refused unless `allow_link_local` is set, and no
//! pattern can let them in otherwise.

use crate::config::Config;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Any,
    Exact(String),
    /// `*.suffix`: any name ending in `.suffix`.
    Suffix(String),
    Net(IpAddr, u8),
}

#[derive(Debug, Clone)]
pub struct UpstreamAllow {
    patterns: Vec<Pattern>,
    allow_link_local: bool,
}

fn parse(p: &str) -> Result<Pattern, String> {
    let p = p.trim().to_ascii_lowercase();
    if p == "*" {
        return Ok(Pattern::Any);
    }
    if let Some(rest) = p.strip_prefix("*.") {
        if rest.is_empty() || rest.contains('*') {
            return Err(format!("`{p}`: expected `*.domain`"));
        }
        return Ok(Pattern::Suffix(rest.to_string()));
    }
    if let Some((ip, bits)) = p.split_once('/') {
        let ip: IpAddr = ip.parse().map_err(|_| format!("`{p}`: not an address/prefix"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let bits: u8 = bits
            .parse()
            .ok()
            .filter(|b| *b <= max)
            .ok_or(format!("`{p}`: prefix over {max}"))?;
        return Ok(Pattern::Net(ip, bits));
    }
    if p.contains('*') {
        return Err(format!("`{p}`: `*` only as `*` or a leading `*.`"));
    }
    Ok(Pattern::Exact(p))
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Link-local ranges: where instance metadata services answer.
pub fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.octets()[0] == 169 && a.octets()[1] == 254,
        IpAddr::V6(a) => {
            (a.segments()[0] & 0xffc0) == 0xfe80
                || a == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        }
    }
}

/// The default patterns one bootstrap host stands for.
fn derived(host: &str) -> Vec<Pattern> {
    let h = host.to_ascii_lowercase();
    if let Ok(ip) = h.parse::<IpAddr>() {
        let mut v = vec![match ip {
            IpAddr::V4(_) => Pattern::Net(ip, 24),
            IpAddr::V6(_) => Pattern::Net(ip, 64),
        }];
        if ip.is_loopback() {
            v.push(Pattern::Exact("localhost".into()));
            v.push(Pattern::Net(IpAddr::from([127, 0, 0, 0]), 8));
        }
        return v;
    }
    if h == "localhost" {
        return vec![Pattern::Exact(h), Pattern::Net(IpAddr::from([127, 0, 0, 0]), 8)];
    }
    let labels: Vec<&str> = h.split('.').collect();
    // b-1.cluster.abc.c2.kafka.us-east-1.amazonaws.com
    if let Some(i) = labels.iter().position(|l| *l == "kafka") {
        if h.ends_with(".amazonaws.com") && i + 1 < labels.len() {
            return vec![Pattern::Suffix(labels[i..].join("."))];
        }
    }
    match h.split_once('.') {
        Some((_, domain)) if domain.contains('.') => vec![Pattern::Suffix(domain.to_string())],
        _ => vec![Pattern::Exact(h)],
    }
}

impl UpstreamAllow {
    pub fn new(c: &Config) -> Result<Self, String> {
        let mut patterns = Vec::new();
        match &c.upstream_hosts {
            Some(list) => {
                for p in list {
                    patterns.push(parse(p).map_err(|e| format!("key `upstream_hosts`: {e}"))?);
                }
            }
            None => c.bootstrap.iter().for_each(|b| patterns.extend(derived(&b.host))),
        }
        for h in c.bootstrap.iter().map(|b| &b.host) {
            patterns.push(Pattern::Exact(h.to_ascii_lowercase()));
        }
        for s in &c.static_listeners {
            patterns.push(Pattern::Exact(s.upstream.host.to_ascii_lowercase()));
        }
        for d in &c.dial {
            patterns.push(Pattern::Exact(d.broker.host.to_ascii_lowercase()));
        }
        Ok(UpstreamAllow {
            patterns,
            allow_link_local: c.allow_link_local,
        })
    }

    /// `Err(reason)` when kgate must not dial `host`.
    pub fn check(&self, host: &str) -> Result<(), String> {
        let h = host.trim_end_matches('.').to_ascii_lowercase();
        let ip = h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok();
        if let Some(ip) = ip.filter(|ip| is_link_local(*ip)) {
            if !self.allow_link_local {
                return Err(format!(
                    "{ip} is link-local (cloud metadata lives there); set allow_link_local to permit it"
                ));
            }
        }
        let ok = self.patterns.iter().any(|p| match p {
            Pattern::Any => true,
            Pattern::Exact(e) => *e == h,
            Pattern::Suffix(s) => {
                h.len() > s.len() + 1
                    && h.ends_with(s.as_str())
                    && h.as_bytes()[h.len() - s.len() - 1] == b'.'
            }
            Pattern::Net(n, bits) => ip.is_some_and(|ip| in_net(ip, *n, *bits)),
        });
        if ok {
            Ok(())
        } else {
            Err("it matches no bootstrap, static or dial entry nor upstream_hosts".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, HostPort};

    fn allow(bootstrap: &str, hosts: Option<&[&str]>) -> UpstreamAllow {
        let mut c = Config::with_bootstrap(vec![HostPort::parse(bootstrap).unwrap()]);
        c.upstream_hosts = hosts.map(|h| h.iter().map(|s| s.to_string()).collect());
        UpstreamAllow::new(&c).unwrap()
    }

    #[test]
    fn msk_names_allow_their_cluster_region_only() {
        let a = allow("b-1.c1.abc.c2.kafka.us-east-1.amazonaws.com:9098", None);
        assert!(a.check("b-3.c1.abc.c2.kafka.us-east-1.amazonaws.com").is_ok());
        assert!(a.check("b-1.other.kafka.us-east-1.amazonaws.com").is_ok());
        assert!(a.check("b-1.c1.abc.c2.kafka.eu-west-1.amazonaws.com").is_err());
        assert!(a.check("evil.amazonaws.com").is_err());
        assert!(a.check("127.0.0.1").is_err());
    }

    #[test]
    fn other_names_allow_their_domain_and_ips_their_subnet() {
        let a = allow("kafka1.corp.example.com:9092", None);
        assert!(a.check("kafka7.corp.example.com").is_ok());
        assert!(a.check("corp.example.com.evil.net").is_err());
        assert!(a.check("xcorp.example.com").is_err());
        let a = allow("10.1.2.3:9092", None);
        assert!(a.check("10.1.2.200").is_ok());
        assert!(a.check("10.1.3.1").is_err());
        let a = allow("127.0.0.1:9092", None);
        assert!(a.check("localhost").is_ok());
        assert!(a.check("127.0.0.2").is_ok());
        assert!(a.check("192.168.1.1").is_err());
    }

    #[test]
    fn metadata_addresses_are_refused_even_with_a_wildcard() {
        let a = allow("127.0.0.1:9092", Some(&["*"]));
        assert!(a.check("any.where").is_ok());
        assert!(a.check("169.254.169.254").is_err());
        assert!(a.check("fd00:ec2::254").is_err());
        assert!(a.check("fe80::1").is_err());
        let mut c = Config::with_bootstrap(vec![HostPort::parse("127.0.0.1:1").unwrap()]);
        c.upstream_hosts = Some(vec!["169.254.0.0/16".into()]);
        c.allow_link_local = true;
        assert!(UpstreamAllow::new(&c).unwrap().check("169.254.169.254").is_ok());
    }

    #[test]
    fn patterns_are_checked() {
        for bad in ["a*b", "*.", "10.0.0.0/33", "x/8"] {
            let mut c = Config::with_bootstrap(vec![HostPort::parse("127.0.0.1:1").unwrap()]);
            c.upstream_hosts = Some(vec![bad.into()]);
            assert!(UpstreamAllow::new(&c).is_err(), "{bad}");
        }
        let a = allow("127.0.0.1:9092", Some(&["*.kafka.internal", "10.0.0.0/8"]));
        assert!(a.check("b-1.kafka.internal").is_ok());
        assert!(a.check("10.9.9.9").is_ok());
        assert!(a.check("kafka.internal").is_err());
        assert!(a.check("127.0.0.1").is_ok(), "the bootstrap itself");
    }
}
