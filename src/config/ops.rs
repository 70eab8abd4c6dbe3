//! Operational settings: the admin listener, readiness, drain and limits.

use super::{Config, HostPort};
use std::time::Duration;

#[derive(Debug, Default, Clone)]
pub struct OpsOverrides {
    pub admin_listen: Option<String>,
    pub admin_max_connections: Option<usize>,
    pub admin_header_timeout_ms: Option<u64>,
    pub admin_request_timeout_ms: Option<u64>,
    pub ready_window_ms: Option<u64>,
    pub drain_timeout_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_connections_per_listener: Option<usize>,
    pub idle_timeout_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub first_request_timeout_ms: Option<u64>,
    pub max_connections_per_client: Option<usize>,
    pub upstream_connect_rate: Option<u32>,
    pub upstream_connect_burst: Option<u32>,
    pub upstream_max_connections_per_broker: Option<usize>,
    pub upstream_connect_wait_ms: Option<u64>,
    pub upstream_hold: Option<bool>,
}

impl OpsOverrides {
    pub fn overlay(mut self, o: OpsOverrides) -> Self {
        macro_rules! take {
            ($($f:ident),*) => { $( if o.$f.is_some() { self.$f = o.$f; } )* };
        }
        take!(
            admin_listen,
            admin_max_connections,
            admin_header_timeout_ms,
            admin_request_timeout_ms,
            ready_window_ms,
            drain_timeout_ms,
            max_connections,
            max_connections_per_listener,
            idle_timeout_ms,
            request_timeout_ms,
            first_request_timeout_ms,
            max_connections_per_client,
            upstream_connect_rate,
            upstream_connect_burst,
            upstream_max_connections_per_broker,
            upstream_connect_wait_ms,
            upstream_hold
        );
        self
    }

    pub fn apply(self, c: &mut Config) -> Result<(), String> {
        self.apply_storm(c)?;
        if let Some(a) = self.admin_listen {
            c.admin_listen = match a.trim() {
                "off" | "false" | "" => None,
                s => Some(HostPort::parse(s).map_err(|e| format!("key `admin_listen`: {e} (or `off`)"))?),
            };
        }
        let positive = |key: &str, v: u64| {
            if v == 0 {
                Err(format!("key `{key}`: expected a positive number of milliseconds"))
            } else {
                Ok(Duration::from_millis(v))
            }
        };
        if let Some(v) = self.admin_max_connections {
            if v == 0 {
                return Err("key `admin_max_connections`: expected at least 1".into());
            }
            c.admin_max_connections = v;
        }
        if let Some(v) = self.admin_header_timeout_ms {
            c.admin_header_timeout = positive("admin_header_timeout_ms", v)?;
        }
        if let Some(v) = self.admin_request_timeout_ms {
            c.admin_request_timeout = positive("admin_request_timeout_ms", v)?;
        }
        if let Some(v) = self.ready_window_ms {
            c.ready_window = positive("ready_window_ms", v)?;
        }
        if let Some(v) = self.drain_timeout_ms {
            c.drain_timeout = Duration::from_millis(v);
        }
        if let Some(v) = self.request_timeout_ms {
            c.request_timeout = positive("request_timeout_ms", v)?;
        }
        if let Some(v) = self.first_request_timeout_ms {
            c.first_request_timeout = positive("first_request_timeout_ms", v)?;
        }
        if let Some(v) = self.max_connections_per_client {
            if v == 0 {
                return Err("key `max_connections_per_client`: expected at least 1".into());
            }
            c.max_connections_per_client = Some(v);
        }
        if let Some(v) = self.idle_timeout_ms {
            c.idle_timeout = (v > 0).then(|| Duration::from_millis(v));
        }
        if let Some(v) = self.max_connections {
            if v == 0 {
                return Err("key `max_connections`: expected at least 1".into());
            }
            c.max_connections = v;
        }
        if let Some(v) = self.max_connections_per_listener {
            if v == 0 {
                return Err("key `max_connections_per_listener`: expected at least 1".into());
            }
            c.max_connections_per_listener = Some(v);
        }
        Ok(())
    }

    fn apply_storm(&self, c: &mut Config) -> Result<(), String> {
        if let Some(v) = self.upstream_connect_rate {
            if !(1..=100_000).contains(&v) {
                return Err(format!(
                    "key `upstream_connect_rate`: {v} is out of range; expected 1 to 100000 new connections per second per broker"
                ));
            }
            c.storm.rate = v;
        }
        if let Some(v) = self.upstream_connect_burst {
            if !(1..=100_000).contains(&v) {
                return Err(format!(
                    "key `upstream_connect_burst`: {v} is out of range; expected 1 to 100000"
                ));
            }
            c.storm.burst = v;
        }
        if let Some(v) = self.upstream_max_connections_per_broker {
            if v == 0 {
                return Err("key `upstream_max_connections_per_broker`: expected at least 1".into());
            }
            c.storm.max_per_broker = v;
        }
        if let Some(v) = self.upstream_connect_wait_ms {
            c.storm.wait = Duration::from_millis(v);
        }
        if let Some(v) = self.upstream_hold {
            c.upstream_hold = v;
        }
        Ok(())
    }
}

/// `cutover_order` and `cutover_consumer_delay_ms`.
pub fn cutover_order(order: Option<String>, delay_ms: Option<u64>) -> Result<super::CutoverOrder, String> {
    use super::CutoverOrder::*;
    match order.as_deref() {
        None | Some("all_at_once") => match delay_ms {
            Some(_) => Err(
                "key `cutover_consumer_delay_ms`: only used with cutover_order = \"producers_first\"".into(),
            ),
            None => Ok(AllAtOnce),
        },
        Some("producers_first") => Ok(ProducersFirst {
            consumer_delay: Duration::from_millis(delay_ms.unwrap_or(60_000)),
        }),
        Some(other) => Err(format!(
            "key `cutover_order`: {other:?} is not one of \"all_at_once\", \"producers_first\""
        )),
    }
}
