//! Listener modes: PROXY protocol per listener, and the `[sni]` section
//! (one TLS port for every broker, routed by the client's SNI name).

use super::HostPort;
use serde::Deserialize;

/// PROXY protocol on a listener: `off`, `optional` or `required`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyMode {
    #[default]
    Off,
    /// A header is used when present; a direct client works too.
    Optional,
    /// Connections without a valid header are closed.
    Required,
}

impl ProxyMode {
    pub fn parse(s: &str) -> Result<ProxyMode, String> {
        match s {
            "off" => Ok(ProxyMode::Off),
            "optional" => Ok(ProxyMode::Optional),
            "required" => Ok(ProxyMode::Required),
            o => Err(format!("`{o}`; expected `off`, `optional` or `required`")),
        }
    }
}

/// One TLS port for all brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniConfig {
    pub listen: HostPort,
    /// SNI name that reaches the bootstrap servers.
    pub bootstrap_name: String,
    pub pattern: BrokerPattern,
    /// Port advertised with every pattern name (the NLB's port).
    pub advertised_port: u16,
    pub proxy_protocol: ProxyMode,
}

/// `prefix{node_id}suffix`, lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerPattern {
    pub prefix: String,
    pub suffix: String,
}

impl BrokerPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        let (prefix, suffix) = s.split_once("{node_id}").ok_or_else(|| {
            format!("`{s}` has no `{{node_id}}`; expected e.g. b-{{node_id}}.kafka.example.internal")
        })?;
        if suffix.contains("{node_id}") {
            return Err(format!("`{s}` has `{{node_id}}` twice; expected it once"));
        }
        if !suffix.starts_with('.') && !suffix.is_empty() && prefix.is_empty() {
            return Err(format!("`{s}`: the node id must be part of a label"));
        }
        let sample = format!("{prefix}1{suffix}");
        if !crate::config::listeners::dns_name(&sample) {
            return Err(format!("`{s}` does not make DNS names (e.g. `{sample}`)"));
        }
        Ok(BrokerPattern {
            prefix: prefix.into(),
            suffix: suffix.into(),
        })
    }

    pub fn name(&self, node_id: i32) -> String {
        format!("{}{node_id}{}", self.prefix, self.suffix)
    }

    /// The node id a name stands for, if it fits the pattern.
    pub fn node_id(&self, name: &str) -> Option<i32> {
        let name = name.to_ascii_lowercase();
        let digits = name.strip_prefix(&self.prefix)?.strip_suffix(&self.suffix)?;
        if digits.is_empty() || digits.len() > 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if digits.len() > 1 && digits.starts_with('0') {
            return None;
        }
        digits.parse().ok()
    }
}

impl std::fmt::Display for BrokerPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{{node_id}}{}", self.prefix, self.suffix)
    }
}

/// A DNS name of labels of letters, digits and `-`.
pub fn dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct FileSni {
    pub listen: Option<String>,
    pub bootstrap_name: Option<String>,
    pub broker_pattern: Option<String>,
    pub advertised_port: Option<u16>,
    pub proxy_protocol: Option<String>,
}

/// Validates `[sni]`; `tls` says whether `[downstream_tls]` is enabled.
pub fn sni(f: FileSni, tls: bool) -> Result<Option<SniConfig>, String> {
    let Some(listen) = f.listen else {
        if f.bootstrap_name.is_some() || f.broker_pattern.is_some() {
            return Err(
                "key `sni.listen`: missing; expected host:port for the one SNI-routed TLS port".into(),
            );
        }
        return Ok(None);
    };
    let listen = HostPort::parse(&listen).map_err(|e| format!("key `sni.listen`: {e}"))?;
    if !tls {
        return Err("key `sni.listen`: SNI routing needs client TLS: plaintext carries no server name. Enable [downstream_tls] with cert_file and key_file".into());
    }
    let bootstrap_name = f
        .bootstrap_name
        .ok_or("key `sni.bootstrap_name`: missing; expected the DNS name clients bootstrap with")?
        .trim()
        .to_ascii_lowercase();
    if !dns_name(&bootstrap_name) {
        return Err(format!(
            "key `sni.bootstrap_name`: `{bootstrap_name}` is not a DNS name"
        ));
    }
    let pattern = BrokerPattern::parse(
        &f.broker_pattern
            .ok_or("key `sni.broker_pattern`: missing; expected e.g. b-{node_id}.kafka.example.internal")?,
    )
    .map_err(|e| format!("key `sni.broker_pattern`: {e}"))?;
    if pattern.node_id(&bootstrap_name).is_some() {
        return Err(format!(
            "keys `sni.bootstrap_name`/`sni.broker_pattern`: `{bootstrap_name}` matches the pattern `{pattern}`; pick a bootstrap name outside it"
        ));
    }
    let advertised_port = match f.advertised_port {
        Some(0) => return Err("key `sni.advertised_port`: 0 is not a port; expected 1-65535".into()),
        Some(p) => p,
        None => listen.port,
    };
    let proxy_protocol = match f.proxy_protocol {
        Some(m) => ProxyMode::parse(&m).map_err(|e| format!("key `sni.proxy_protocol`: {e}"))?,
        None => ProxyMode::Off,
    };
    Ok(Some(SniConfig {
        listen,
        bootstrap_name,
        pattern,
        advertised_port,
        proxy_protocol,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(listen: &str) -> FileSni {
        FileSni {
            listen: Some(listen.into()),
            bootstrap_name: Some("Bootstrap.kafka.example.internal".into()),
            broker_pattern: Some("b-{node_id}.kafka.example.internal".into()),
            advertised_port: None,
            proxy_protocol: None,
        }
    }

    #[test]
    fn pattern_round_trip_and_refusals() {
        let p = BrokerPattern::parse("b-{node_id}.kafka.example.internal").unwrap();
        assert_eq!(p.name(3), "b-3.kafka.example.internal");
        assert_eq!(p.node_id("B-3.Kafka.example.internal"), Some(3));
        assert_eq!(p.node_id("b-111.kafka.example.internal"), Some(111));
        for n in [
            "b-.kafka.example.internal",
            "b-03.kafka.example.internal",
            "b-x.kafka.example.internal",
            "b-1.kafka.example.internal.evil",
            "b-99999999999.kafka.example.internal",
            "b--1.kafka.example.internal",
        ] {
            assert_eq!(p.node_id(n), None, "{n}");
        }
        assert!(BrokerPattern::parse("b-1.kafka").is_err());
        assert!(BrokerPattern::parse("{node_id}{node_id}.x").is_err());
        assert!(BrokerPattern::parse("b {node_id}.x").is_err());
    }

    #[test]
    fn sni_needs_tls_and_names() {
        let e = sni(file("127.0.0.1:29092"), false).unwrap_err();
        assert!(e.contains("plaintext carries no server name"), "{e}");
        let c = sni(file("127.0.0.1:29092"), true).unwrap().unwrap();
        assert_eq!(c.bootstrap_name, "bootstrap.kafka.example.internal");
        assert_eq!(c.advertised_port, 29092);
        let mut f = file("127.0.0.1:29092");
        f.bootstrap_name = Some("b-7.kafka.example.internal".into());
        assert!(sni(f, true).unwrap_err().contains("matches the pattern"));
        let mut f = file("127.0.0.1:29092");
        f.proxy_protocol = Some("yes".into());
        assert!(sni(f, true).unwrap_err().contains("sni.proxy_protocol"));
        assert_eq!(sni(FileSni::default(), false), Ok(None));
    }
}
