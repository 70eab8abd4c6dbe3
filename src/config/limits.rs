//! The numeric and engine keys of the merged configuration: frame and
//! in-flight limits, timeouts, logging, the buffer budget, the listener
//! cap, the upstream allow-list, splice and worker threads. Each value is
//! checked with its key's name in the message.

use super::file::{FileConfig, Overrides};
use super::{Config, LogFormat};
use std::time::Duration;

/// Frame and in-flight limits, connect timeout, logging, TLS reload.
pub(super) fn limits(c: &mut Config, file: &mut FileConfig, o: &mut Overrides) -> Result<(), String> {
    if let Some(m) = o.max_frame_bytes.or(file.max_frame_bytes) {
        if !(1024..=1024 * 1024 * 1024).contains(&m) {
            return Err(format!(
                "key `max_frame_bytes`: {m} is out of range; expected 1024 to 1073741824"
            ));
        }
        c.max_frame_bytes = m;
    }
    if let Some(m) = o.max_in_flight.or(file.max_in_flight) {
        if !(1..=100_000).contains(&m) {
            return Err(format!(
                "key `max_in_flight`: {m} is out of range; expected 1 to 100000"
            ));
        }
        c.max_in_flight = m;
    }
    if let Some(ms) = o.connect_timeout_ms.or(file.connect_timeout_ms) {
        if ms == 0 {
            return Err("key `connect_timeout_ms`: expected a positive number of milliseconds".into());
        }
        c.connect_timeout = Duration::from_millis(ms);
    }
    if let Some(f) = o.log_format.take().or(file.log_format.take()) {
        c.log_format = match f.as_str() {
            "human" | "text" => LogFormat::Human,
            "json" => LogFormat::Json,
            other => return Err(format!("key `log_format`: `{other}`; expected `human` or `json`")),
        };
    }
    c.log_level = o.log_level.take().or(file.log_level.take());
    if let Some(ms) = file.tls_reload_interval_ms {
        if ms < 100 {
            return Err("key `tls_reload_interval_ms`: expected at least 100".into());
        }
        c.tls_reload_interval = Duration::from_millis(ms);
    }
    Ok(())
}

/// The engine: buffer budget, listener cap, upstream allow-list, splice,
/// worker threads.
pub(super) fn engine(c: &mut Config, file: &mut FileConfig, o: &mut Overrides) -> Result<(), String> {
    if let Some(m) = o.buffer_budget_bytes.or(file.buffer_budget_bytes) {
        if !(1 << 20..=1 << 40).contains(&m) {
            return Err(format!(
                "key `buffer_budget_bytes`: {m} is out of range; expected 1048576 to 1099511627776"
            ));
        }
        c.buffer_budget_bytes = m;
    }
    if let Some(m) = o.max_dynamic_listeners.or(file.max_dynamic_listeners) {
        if m > 60_000 {
            return Err(format!(
                "key `max_dynamic_listeners`: {m} is out of range; expected 0 to 60000"
            ));
        }
        c.max_dynamic_listeners = m;
    }
    if let Some(h) = o.upstream_hosts.take().or(file.upstream_hosts.take()) {
        c.upstream_hosts = Some(h);
    }
    if let Some(a) = o.allow_link_local.or(file.allow_link_local) {
        c.allow_link_local = a;
    }
    if let Some(v) = o.splice.or(file.splice) {
        c.splice = v;
    }
    if let Some(n) = o.worker_threads.or(file.worker_threads) {
        if !(1..=256).contains(&n) {
            return Err(format!(
                "key `worker_threads`: {n} is out of range; expected 1 to 256"
            ));
        }
        c.worker_threads = n;
    }
    Ok(())
}
