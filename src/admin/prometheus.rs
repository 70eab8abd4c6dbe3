//! Renders the metrics in Prometheus text format (version 0.0.4).
//!
//! Decision (issue 15, 2026-12): kgate keeps this hand-written exposition
//! and `crate::metrics` instead of adopting the `prometheus-client` crate.
//! - Hot path. Per request kgate does one `fetch_add` on a fixed
//!   per-API-key slot and one histogram observation made of three relaxed
//!   atomic adds: no lock, no hashing, no allocation. In prometheus-client
//!   (src/metrics/histogram.rs) `Histogram::observe` takes a `Mutex` around
//!   the sum, count and buckets, and a labelled metric goes through
//!   `Family::get_or_create`, a read lock on an `RwLock<HashMap>` plus a
//!   hash of the label set, on every call. Its `Counter` is atomic, but the
//!   per-API-key latency histograms are exactly where kgate needs labels,
//!   so adopting it would put a lock on every request; keeping the
//!   lock-free arrays and encoding them through the crate's collector API
//!   would keep only its text encoder, for more code than this file.
//! - Output. This file is small and the format is checked end to end:
//!   tests/e2e/test_ops.py parses /metrics with the Python prometheus_client
//!   parser before, during and after traffic.
//! - The locks that remain (`Family` for failure causes, the per-listener
//!   map) are taken on failures and on connection accept, not per request.

use crate::metrics::{Histogram, ListenerStats, Metrics, API_SLOTS};
use kafka_protocol::messages::ApiKey;
use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

fn api_name(slot: usize) -> String {
    if slot == API_SLOTS - 1 {
        return "unknown".into();
    }
    match ApiKey::try_from(slot as i16) {
        Ok(k) => format!("{k:?}"),
        Err(()) => "unknown".into(),
    }
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let (buckets, count, sum) = h.snapshot();
    let sep = if labels.is_empty() { "" } else { "," };
    for (le, c) in buckets {
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {c}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {sum}");
    let _ = writeln!(out, "{name}_count{braces} {count}");
}

/// One counter or gauge per listener.
fn per_listener(
    o: &mut String,
    listeners: &[(String, Arc<ListenerStats>)],
    (name, kind, help): (&str, &str, &str),
    value: impl Fn(&ListenerStats) -> u64,
) {
    head(o, name, kind, help);
    for (l, s) in listeners {
        let _ = writeln!(o, "{name}{{listener=\"{}\"}} {}", esc(l), value(s));
    }
}

/// One series per label value, for families with a single label.
fn labelled<K: std::fmt::Display>(
    o: &mut String,
    (name, label, help): (&str, &str, &str),
    values: Vec<(K, u64)>,
) {
    head(o, name, "counter", help);
    for (k, n) in values {
        let _ = writeln!(o, "{name}{{{label}=\"{}\"}} {n}", esc(&k.to_string()));
    }
}

fn scalar(o: &mut String, (name, kind, help): (&str, &str, &str), v: u64) {
    head(o, name, kind, help);
    let _ = writeln!(o, "{name} {v}");
}

fn connections(o: &mut String, m: &Metrics) {
    let listeners = m.listeners_snapshot();
    let l = &listeners;
    let open = (
        "kgate_connections_open",
        "gauge",
        "Client connections open, per listener.",
    );
    per_listener(o, l, open, |s| s.open.load(Relaxed));
    let total = (
        "kgate_connections_total",
        "counter",
        "Client connections accepted, per listener.",
    );
    per_listener(o, l, total, |s| s.total.load(Relaxed));
    let refused = (
        "kgate_connections_refused_total",
        "counter",
        "Client connections refused by a connection limit.",
    );
    per_listener(o, l, refused, |s| s.refused.load(Relaxed));
    head(
        o,
        "kgate_bytes_total",
        "counter",
        "Bytes forwarded, per listener and direction.",
    );
    for (l, s) in l {
        let l = esc(l);
        for (dir, n) in [
            ("client_to_broker", &s.bytes_client_to_broker),
            ("broker_to_client", &s.bytes_broker_to_client),
        ] {
            let _ = writeln!(
                o,
                "kgate_bytes_total{{listener=\"{l}\",direction=\"{dir}\"}} {}",
                n.load(Relaxed)
            );
        }
    }
}

fn per_api(o: &mut String, m: &Metrics) {
    for (name, help, counts) in [
        (
            "kgate_requests_total",
            "Client requests, by API key.",
            &m.requests,
        ),
        (
            "kgate_responses_total",
            "Responses sent to clients, by API key.",
            &m.responses,
        ),
    ] {
        head(o, name, "counter", help);
        for (i, n) in counts.iter().enumerate() {
            let n = n.load(Relaxed);
            if n > 0 {
                let _ = writeln!(o, "{name}{{api_key=\"{}\"}} {n}", api_name(i));
            }
        }
    }
    let name = "kgate_request_duration_seconds";
    head(
        o,
        name,
        "histogram",
        "Time from a client request to its response, by API key.",
    );
    for (i, h) in m.latency.iter().enumerate() {
        if h.count() > 0 {
            histogram(o, name, &format!("api_key=\"{}\"", api_name(i)), h);
        }
    }
}

fn upstream(o: &mut String, m: &Metrics) {
    head(
        o,
        "kgate_upstream_failures_total",
        "counter",
        "Failures toward brokers, by stage and cause.",
    );
    for ((stage, cause), n) in m.upstream_failures.snapshot() {
        let _ = writeln!(
            o,
            "kgate_upstream_failures_total{{stage=\"{stage}\",cause=\"{}\"}} {n}",
            esc(&cause)
        );
    }
    head(
        o,
        "kgate_upstream_identity_connections_total",
        "counter",
        "Upstream connections by the identity they authenticate as (role, user, default, refused).",
    );
    for ((kind, id), n) in m.upstream_identity.snapshot() {
        let _ = writeln!(
            o,
            "kgate_upstream_identity_connections_total{{kind=\"{kind}\",identity=\"{}\"}} {n}",
            esc(&id)
        );
    }
    let roles = (
        "kgate_upstream_identity_assume_role_total",
        "role",
        "STS AssumeRole calls for per-principal roles.",
    );
    labelled(o, roles, m.assume_role.snapshot());
}

fn protocol(o: &mut String, m: &Metrics) {
    let errors = (
        "kgate_protocol_errors_total",
        "kind",
        "Frame and protocol errors, by kind.",
    );
    labelled(o, errors, m.protocol_errors.snapshot());
    let proxy = (
        "kgate_proxy_protocol_total",
        "result",
        "PROXY protocol headers on accepted connections, by result.",
    );
    labelled(o, proxy, m.proxy_protocol.snapshot());
    let sni = (
        "kgate_sni_routes_total",
        "result",
        "Connections on the SNI port, by where their server name routed them.",
    );
    labelled(o, sni, m.sni_routes.snapshot());
}

fn reauth_and_listeners(o: &mut String, m: &Metrics) {
    let ok = (
        "kgate_reauth_total",
        "counter",
        "Successful KIP-368 re-authentications.",
    );
    scalar(o, ok, m.reauth_total.load(Relaxed));
    let failed = (
        "kgate_reauth_failures_total",
        "counter",
        "Failed re-authentications.",
    );
    scalar(o, failed, m.reauth_failures_total.load(Relaxed));
    head(
        o,
        "kgate_reauth_pause_seconds",
        "histogram",
        "How long client requests were held during re-authentication.",
    );
    histogram(o, "kgate_reauth_pause_seconds", "", &m.reauth_pause);
    let bound = (
        "kgate_listeners",
        "gauge",
        "Listeners bound (bootstrap, static and dynamic).",
    );
    scalar(o, bound, m.listeners.load(Relaxed));
    let created = (
        "kgate_dynamic_listeners_created_total",
        "counter",
        "Dynamic broker listeners created.",
    );
    scalar(o, created, m.dynamic_listeners_created.load(Relaxed));
}

pub fn render(m: &Metrics, ready: bool, draining: bool) -> String {
    let mut o = String::with_capacity(16 * 1024);
    connections(&mut o, m);
    per_api(&mut o, m);
    upstream(&mut o, m);
    protocol(&mut o, m);
    reauth_and_listeners(&mut o, m);
    super::engine_metrics::render(m, &mut o);
    scalar(
        &mut o,
        ("kgate_ready", "gauge", "1 when /readyz answers 200."),
        u64::from(ready),
    );
    scalar(
        &mut o,
        ("kgate_draining", "gauge", "1 while shutting down."),
        u64::from(draining),
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Metrics with a value in every family.
    fn sample() -> Metrics {
        let m = Metrics::default();
        let l = m.listener("127.0.0.1:9092");
        l.open.store(2, Relaxed);
        l.total.store(5, Relaxed);
        l.refused.store(1, Relaxed);
        l.bytes_client_to_broker.store(100, Relaxed);
        l.bytes_broker_to_client.store(200, Relaxed);
        m.requests[3].store(4, Relaxed);
        m.responses[3].store(4, Relaxed);
        m.latency[3].observe(Duration::from_millis(3));
        m.upstream_failures.add(("connect", "refused \"x\"".into()), 1);
        m.upstream_identity.add(("role", "arn:x".into()), 1);
        m.assume_role.add("arn:r".into(), 2);
        m.protocol_errors.add("bad_first_request", 3);
        m.proxy_protocol.add("ok", 1);
        m.sni_routes.add("broker", 1);
        m.reauth_total.store(6, Relaxed);
        m.reauth_failures_total.store(1, Relaxed);
        m.reauth_pause.observe(Duration::from_millis(20));
        m.listeners.store(4, Relaxed);
        m.dynamic_listeners_created.store(3, Relaxed);
        m
    }

    #[test]
    fn every_family_is_declared_once_before_its_samples() {
        let out = render(&sample(), true, false);
        let mut declared = std::collections::HashSet::new();
        for line in out.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(declared.insert(name.to_string()), "{name} declared twice");
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| declared.contains(*b)))
                .unwrap_or(name);
            assert!(declared.contains(base), "{name} has no TYPE before it");
        }
        assert!(declared.len() >= 30, "{} families", declared.len());
    }

    #[test]
    fn samples_carry_their_values_and_escaped_labels() {
        let out = render(&sample(), true, false);
        for want in [
            "kgate_connections_open{listener=\"127.0.0.1:9092\"} 2",
            "kgate_connections_refused_total{listener=\"127.0.0.1:9092\"} 1",
            "kgate_bytes_total{listener=\"127.0.0.1:9092\",direction=\"broker_to_client\"} 200",
            "kgate_requests_total{api_key=\"Metadata\"} 4",
            "kgate_request_duration_seconds_count{api_key=\"Metadata\"} 1",
            "kgate_upstream_failures_total{stage=\"connect\",cause=\"refused \\\"x\\\"\"} 1",
            "kgate_upstream_identity_assume_role_total{role=\"arn:r\"} 2",
            "kgate_protocol_errors_total{kind=\"bad_first_request\"} 3",
            "kgate_reauth_total 6",
            "kgate_reauth_pause_seconds_count 1",
            "kgate_dynamic_listeners_created_total 3",
            "kgate_ready 1",
            "kgate_draining 0",
        ] {
            assert!(out.lines().any(|l| l == want), "missing {want:?} in:\n{out}");
        }
        assert!(
            !out.contains("kgate_requests_total{api_key=\"Produce\"}"),
            "zero counts are left out"
        );
    }
}
