//! Does the client-facing certificate cover the SNI port's names? Checked
//! at start-up and by `check-config`, so a missing SAN is a clear message
//! instead of every client failing verification.

use super::material::load_certs;
use crate::config::SniConfig;
use std::path::Path;

/// RFC 6125 matching: exact (case-insensitive), or `*.rest` for exactly
/// one left-most label.
pub fn san_matches(san: &str, name: &str) -> bool {
    let (san, name) = (san.to_ascii_lowercase(), name.to_ascii_lowercase());
    match san.strip_prefix("*.") {
        Some(rest) => name
            .split_once('.')
            .is_some_and(|(first, r)| !first.is_empty() && r == rest),
        None => san == name,
    }
}

/// `Ok(warnings)` when the bootstrap name and the pattern are covered
/// (a wildcard SAN covers every node id; per-name SANs only those listed,
/// which is a warning); `Err` names what is not covered.
pub fn check_sni_names(cert_file: &Path, sni: &SniConfig) -> Result<Vec<String>, String> {
    let chain = load_certs(cert_file)?;
    let id = super::identity::identity(&chain[0])
        .ok_or_else(|| format!("{}: the certificate does not parse", cert_file.display()))?;
    let sans = &id.dns_names;
    let file = cert_file.display();
    let mut missing = Vec::new();
    if !sans.iter().any(|s| san_matches(s, &sni.bootstrap_name)) {
        missing.push(format!("the bootstrap name {}", sni.bootstrap_name));
    }
    let p = &sni.pattern;
    // A wildcard covers the pattern when the node id sits in the first
    // label: any id then matches the same `*.rest`.
    let wildcard = !p.prefix.contains('.')
        && [1, 2_000_000_000].iter().all(|n| {
            sans.iter()
                .any(|s| s.starts_with("*.") && san_matches(s, &p.name(*n)))
        });
    let mut warnings = Vec::new();
    if !wildcard {
        let mut ids: Vec<i32> = sans.iter().filter_map(|s| p.node_id(s)).collect();
        ids.sort();
        if ids.is_empty() {
            missing.push(format!("the broker pattern {p}"));
        } else {
            warnings.push(format!(
                "{file}: the broker pattern {p} is covered only for node ids {ids:?} (a SAN per name); brokers with other ids will fail certificate verification: add them or a wildcard SAN"
            ));
        }
    }
    if missing.is_empty() {
        return Ok(warnings);
    }
    Err(format!(
        "{file} does not cover {}; its DNS SANs are {:?}. Add a SAN for each (a wildcard like *.{} covers one label)",
        missing.join(" nor "),
        sans,
        sni.bootstrap_name.split_once('.').map(|x| x.1).unwrap_or(&sni.bootstrap_name)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(san_matches(
            "*.kafka.example.internal",
            "b-1.kafka.example.internal"
        ));
        assert!(san_matches(
            "*.Kafka.example.internal",
            "B-1.kafka.example.internal"
        ));
        assert!(!san_matches(
            "*.kafka.example.internal",
            "x.b-1.kafka.example.internal"
        ));
        assert!(!san_matches("*.kafka.example.internal", "kafka.example.internal"));
        assert!(san_matches(
            "bootstrap.kafka.example.internal",
            "bootstrap.kafka.example.internal"
        ));
        assert!(!san_matches(
            "bootstrap.kafka.example.internal",
            "b-1.kafka.example.internal"
        ));
    }
}
