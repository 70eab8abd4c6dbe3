//! Liveness and readiness state, and the background upstream probe that
//! keeps readiness honest and pre-creates broker listeners.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

type Check = Box<dyn Fn() -> Option<String> + Send + Sync>;

pub struct Health {
    draining: AtomicBool,
    /// Further conditions that make kgate not ready (a broker without a
    /// listener); each returns why.
    checks: std::sync::OnceLock<Vec<Check>>,
    /// Unix millis of the last successful upstream connect (+ auth).
    upstream_ok_ms: AtomicU64,
    window: Duration,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Health {
    pub fn new(window: Duration) -> Self {
        Health {
            draining: AtomicBool::new(false),
            checks: std::sync::OnceLock::new(),
            upstream_ok_ms: AtomicU64::new(0),
            window,
        }
    }

    /// Adds readiness conditions (set once, at start-up).
    pub fn set_checks(&self, checks: Vec<Check>) {
        let _ = self.checks.set(checks);
    }

    pub fn upstream_ok(&self) {
        self.upstream_ok_ms.store(now_ms(), Relaxed);
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Relaxed);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    pub fn ready(&self) -> Result<(), String> {
        if self.draining() {
            return Err("draining (shutting down)".into());
        }
        let last = self.upstream_ok_ms.load(Relaxed);
        if last == 0 {
            return Err("upstream cluster not reached yet".into());
        }
        let age = now_ms().saturating_sub(last);
        if age > self.window.as_millis() as u64 {
            return Err(format!("upstream cluster last reached {} s ago", age / 1000));
        }
        for check in self.checks.get().into_iter().flatten() {
            if let Some(why) = check() {
                return Err(why);
            }
        }
        Ok(())
    }
}
