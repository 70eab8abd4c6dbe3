//! Connection-storm control toward each broker: a token bucket of new
//! connections and a cap on concurrent ones, per broker.
//!
//! - **Over the rate, a connection waits.** Each admission reserves the
//!   next token; when the bucket is empty the reservation lies in the
//!   future and the connection sleeps until then (first come, first
//!   served, no thundering herd). A reservation further out than
//!   `upstream_connect_wait_ms` is refused instead.
//! - **Over the maximum, a connection is refused** at once: a cap of
//!   concurrent connections (waiting ones included) protects the broker's
//!   own limit (MSK: about 3,000 per broker).
//! - **"Too many connects" halves the rate** for that broker (at most once
//!   a second, never below 1/s); it recovers additively, a twentieth of
//!   the configured rate per second, up to the configured rate.
//!
//! A [`Slot`] stands for one connection counted against its broker; it
//! gives the place back when dropped.

use crate::config::StormLimits;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;
use tracing::warn;

/// The lowest rate adaptation goes to, in new connections per second.
const MIN_RATE: f64 = 1.0;
/// Halve at most this often, however many refusals arrive together.
const CUT_EVERY: Duration = Duration::from_secs(1);
/// Brokers tracked at most (they are bounded by the listener cap anyway).
const MAX_BROKERS: usize = 4096;

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("upstream_max_connections_per_broker ({max}) reached for this broker; connection refused")]
    Max { max: usize },
    #[error("upstream_connect_rate: the wait for this broker would exceed upstream_connect_wait_ms ({wait_ms} ms); connection refused")]
    Rate { wait_ms: u64 },
}

impl Refused {
    pub fn label(&self) -> &'static str {
        match self {
            Refused::Max { .. } => "max_connections",
            Refused::Rate { .. } => "rate_wait",
        }
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
    /// Current rate (configured, or lower after "Too many connects").
    rate: f64,
    open: usize,
    last_cut: Option<Instant>,
}

/// One broker's limiter and counters.
pub struct Broker {
    state: Mutex<Bucket>,
    pub waits: AtomicU64,
    pub refused_max: AtomicU64,
    pub refused_rate: AtomicU64,
    pub slowdowns: AtomicU64,
}

/// One broker's figures, for /metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerStats {
    pub broker: String,
    pub rate: f64,
    pub open: usize,
    pub waits: u64,
    pub refused_max: u64,
    pub refused_rate: u64,
    pub slowdowns: u64,
}

/// A connection counted against its broker's maximum until dropped.
pub struct Slot {
    broker: Arc<Broker>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut b = lock(&self.broker.state);
        b.open = b.open.saturating_sub(1);
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Slot")
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Bucket {
    /// Adds the tokens earned since `last`, and lets a cut rate recover.
    fn refill(&mut self, now: Instant, l: &StormLimits) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(l.burst as f64);
        let full = l.rate as f64;
        if self.rate < full {
            self.rate = (self.rate + dt * (full / 20.0).max(0.5)).min(full);
        } else {
            self.rate = full;
        }
    }
}

/// Limits per broker, keyed by the broker's real name (`host:port`).
pub struct Storm {
    limits: StormLimits,
    brokers: Mutex<HashMap<String, Arc<Broker>>>,
}

impl Storm {
    pub fn new(limits: StormLimits) -> Self {
        Storm {
            limits,
            brokers: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> StormLimits {
        self.limits
    }

    fn broker(&self, key: &str) -> Arc<Broker> {
        let mut m = lock(&self.brokers);
        if let Some(b) = m.get(key) {
            return b.clone();
        }
        if m.len() >= MAX_BROKERS {
            m.retain(|_, b| lock(&b.state).open > 0);
        }
        let b = Arc::new(Broker {
            state: Mutex::new(Bucket {
                tokens: self.limits.burst as f64,
                last: Instant::now(),
                rate: self.limits.rate as f64,
                open: 0,
                last_cut: None,
            }),
            waits: AtomicU64::new(0),
            refused_max: AtomicU64::new(0),
            refused_rate: AtomicU64::new(0),
            slowdowns: AtomicU64::new(0),
        });
        m.insert(key.to_string(), b.clone());
        b
    }

    /// Admits one new connection to `key`: waits for its token when the
    /// rate is used up, or refuses when the maximum is reached or the wait
    /// would be longer than allowed. Dropping the future gives the place
    /// back (the reserved token stays spent).
    pub async fn admit(&self, key: &str) -> Result<Slot, Refused> {
        let broker = self.broker(key);
        let l = &self.limits;
        let wait = {
            let mut b = lock(&broker.state);
            if b.open >= l.max_per_broker {
                drop(b);
                broker.refused_max.fetch_add(1, Relaxed);
                return Err(Refused::Max {
                    max: l.max_per_broker,
                });
            }
            let now = Instant::now();
            b.refill(now, l);
            b.tokens -= 1.0;
            let wait = if b.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-b.tokens / b.rate)
            };
            if wait > l.wait {
                b.tokens += 1.0;
                drop(b);
                broker.refused_rate.fetch_add(1, Relaxed);
                return Err(Refused::Rate {
                    wait_ms: l.wait.as_millis() as u64,
                });
            }
            b.open += 1;
            wait
        };
        let slot = Slot { broker };
        if !wait.is_zero() {
            slot.broker.waits.fetch_add(1, Relaxed);
            tokio::time::sleep(wait).await;
        }
        Ok(slot)
    }

    /// The broker refused a connection with "Too many connects": halve its
    /// rate (at most once a second) and drop any saved-up burst.
    pub fn slow_down(&self, key: &str) {
        let broker = self.broker(key);
        let mut b = lock(&broker.state);
        let now = Instant::now();
        b.refill(now, &self.limits);
        if b.last_cut.is_some_and(|t| now.duration_since(t) < CUT_EVERY) {
            return;
        }
        b.last_cut = Some(now);
        b.rate = (b.rate / 2.0).max(MIN_RATE);
        b.tokens = b.tokens.min(0.0);
        let rate = b.rate;
        drop(b);
        broker.slowdowns.fetch_add(1, Relaxed);
        if let Some(suppressed) = crate::logs::allow(&format!("storm:{key}")) {
            warn!(
                broker = key,
                rate_per_s = rate,
                suppressed,
                "broker said \"Too many connects\"; halving the new-connection rate toward it (recovers gradually)"
            );
        }
    }

    /// The current rate toward `key` (tests, metrics).
    pub fn rate(&self, key: &str) -> f64 {
        let broker = self.broker(key);
        let mut b = lock(&broker.state);
        b.refill(Instant::now(), &self.limits);
        b.rate
    }

    pub fn snapshot(&self) -> Vec<BrokerStats> {
        let all: Vec<(String, Arc<Broker>)> = lock(&self.brokers)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let now = Instant::now();
        let mut out: Vec<BrokerStats> = all
            .into_iter()
            .map(|(broker, b)| {
                let (rate, open) = {
                    let mut s = lock(&b.state);
                    s.refill(now, &self.limits);
                    (s.rate, s.open)
                };
                BrokerStats {
                    broker,
                    rate,
                    open,
                    waits: b.waits.load(Relaxed),
                    refused_max: b.refused_max.load(Relaxed),
                    refused_rate: b.refused_rate.load(Relaxed),
                    slowdowns: b.slowdowns.load(Relaxed),
                }
            })
            .collect();
        out.sort_by(|a, b| a.broker.cmp(&b.broker));
        out
    }
}

#[cfg(test)]
#[path = "storm_tests.rs"]
mod tests;
