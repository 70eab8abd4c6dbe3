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

use crate::metrics::{Histogram, Metrics, API_SLOTS};
use kafka_protocol::messages::ApiKey;
use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

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

pub fn render(m: &Metrics, ready: bool, draining: bool) -> String {
    let mut o = String::with_capacity(16 * 1024);
    let listeners = m.listeners_snapshot();
    head(
        &mut o,
        "kgate_connections_open",
        "gauge",
        "Client connections open, per listener.",
    );
    for (l, s) in &listeners {
        let _ = writeln!(
            o,
            "kgate_connections_open{{listener=\"{}\"}} {}",
            esc(l),
            s.open.load(Relaxed)
        );
    }
    head(
        &mut o,
        "kgate_connections_total",
        "counter",
        "Client connections accepted, per listener.",
    );
    for (l, s) in &listeners {
        let _ = writeln!(
            o,
            "kgate_connections_total{{listener=\"{}\"}} {}",
            esc(l),
            s.total.load(Relaxed)
        );
    }
    head(
        &mut o,
        "kgate_connections_refused_total",
        "counter",
        "Client connections refused by a connection limit.",
    );
    for (l, s) in &listeners {
        let _ = writeln!(
            o,
            "kgate_connections_refused_total{{listener=\"{}\"}} {}",
            esc(l),
            s.refused.load(Relaxed)
        );
    }
    head(
        &mut o,
        "kgate_bytes_total",
        "counter",
        "Bytes forwarded, per listener and direction.",
    );
    for (l, s) in &listeners {
        let l = esc(l);
        let _ = writeln!(
            o,
            "kgate_bytes_total{{listener=\"{l}\",direction=\"client_to_broker\"}} {}",
            s.bytes_client_to_broker.load(Relaxed)
        );
        let _ = writeln!(
            o,
            "kgate_bytes_total{{listener=\"{l}\",direction=\"broker_to_client\"}} {}",
            s.bytes_broker_to_client.load(Relaxed)
        );
    }
    head(
        &mut o,
        "kgate_requests_total",
        "counter",
        "Client requests, by API key.",
    );
    for i in 0..API_SLOTS {
        let n = m.requests[i].load(Relaxed);
        if n > 0 {
            let _ = writeln!(o, "kgate_requests_total{{api_key=\"{}\"}} {n}", api_name(i));
        }
    }
    head(
        &mut o,
        "kgate_responses_total",
        "counter",
        "Responses sent to clients, by API key.",
    );
    for i in 0..API_SLOTS {
        let n = m.responses[i].load(Relaxed);
        if n > 0 {
            let _ = writeln!(o, "kgate_responses_total{{api_key=\"{}\"}} {n}", api_name(i));
        }
    }
    head(
        &mut o,
        "kgate_request_duration_seconds",
        "histogram",
        "Time from a client request to its response, by API key.",
    );
    for (i, h) in m.latency.iter().enumerate() {
        if h.count() > 0 {
            histogram(
                &mut o,
                "kgate_request_duration_seconds",
                &format!("api_key=\"{}\"", api_name(i)),
                h,
            );
        }
    }
    head(
        &mut o,
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
        &mut o,
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
    head(
        &mut o,
        "kgate_upstream_identity_assume_role_total",
        "counter",
        "STS AssumeRole calls for per-principal roles.",
    );
    for (role, n) in m.assume_role.snapshot() {
        let _ = writeln!(
            o,
            "kgate_upstream_identity_assume_role_total{{role=\"{}\"}} {n}",
            esc(&role)
        );
    }
    head(
        &mut o,
        "kgate_protocol_errors_total",
        "counter",
        "Frame and protocol errors, by kind.",
    );
    for (kind, n) in m.protocol_errors.snapshot() {
        let _ = writeln!(o, "kgate_protocol_errors_total{{kind=\"{kind}\"}} {n}");
    }
    head(
        &mut o,
        "kgate_proxy_protocol_total",
        "counter",
        "PROXY protocol headers on accepted connections, by result.",
    );
    for (result, n) in m.proxy_protocol.snapshot() {
        let _ = writeln!(o, "kgate_proxy_protocol_total{{result=\"{result}\"}} {n}");
    }
    head(
        &mut o,
        "kgate_sni_routes_total",
        "counter",
        "Connections on the SNI port, by where their server name routed them.",
    );
    for (result, n) in m.sni_routes.snapshot() {
        let _ = writeln!(o, "kgate_sni_routes_total{{result=\"{result}\"}} {n}");
    }
    head(
        &mut o,
        "kgate_reauth_total",
        "counter",
        "Successful KIP-368 re-authentications.",
    );
    let _ = writeln!(o, "kgate_reauth_total {}", m.reauth_total.load(Relaxed));
    head(
        &mut o,
        "kgate_reauth_failures_total",
        "counter",
        "Failed re-authentications.",
    );
    let _ = writeln!(
        o,
        "kgate_reauth_failures_total {}",
        m.reauth_failures_total.load(Relaxed)
    );
    head(
        &mut o,
        "kgate_reauth_pause_seconds",
        "histogram",
        "How long client requests were held during re-authentication.",
    );
    histogram(&mut o, "kgate_reauth_pause_seconds", "", &m.reauth_pause);
    head(
        &mut o,
        "kgate_listeners",
        "gauge",
        "Listeners bound (bootstrap, static and dynamic).",
    );
    let _ = writeln!(o, "kgate_listeners {}", m.listeners.load(Relaxed));
    head(
        &mut o,
        "kgate_dynamic_listeners_created_total",
        "counter",
        "Dynamic broker listeners created.",
    );
    let _ = writeln!(
        o,
        "kgate_dynamic_listeners_created_total {}",
        m.dynamic_listeners_created.load(Relaxed)
    );
    super::engine_metrics::render(m, &mut o);
    head(&mut o, "kgate_ready", "gauge", "1 when /readyz answers 200.");
    let _ = writeln!(o, "kgate_ready {}", u8::from(ready));
    head(&mut o, "kgate_draining", "gauge", "1 while shutting down.");
    let _ = writeln!(o, "kgate_draining {}", u8::from(draining));
    o
}
