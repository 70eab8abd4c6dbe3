//! Per-broker back-off after a broker throttled authentication (MSK's
//! "Too many connects"): the next connection to that broker waits it out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use tracing::warn;

#[derive(Default)]
pub struct Throttle {
    until: Mutex<HashMap<String, (Instant, Duration)>>,
}

impl Throttle {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Duration)>> {
        match self.until.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Waits out an active back-off for `broker`.
    pub async fn wait(&self, broker: &str) {
        let until = self.lock().get(broker).map(|(u, _)| *u);
        if let Some(u) = until.filter(|u| *u > Instant::now()) {
            tokio::time::sleep_until(u).await;
        }
    }

    /// Doubles the back-off for `broker` (0.5 s up to 10 s).
    pub fn hit(&self, broker: &str) {
        let mut m = self.lock();
        let next = m
            .get(broker)
            .map(|(_, d)| (*d * 2).min(Duration::from_secs(10)))
            .unwrap_or(Duration::from_millis(500));
        if let Some(suppressed) = crate::logs::allow(&format!("throttled:{broker}")) {
            warn!(
                broker,
                backoff_ms = next.as_millis() as u64,
                suppressed,
                "broker throttles new connections; backing off"
            );
        }
        m.insert(broker.to_string(), (Instant::now() + next, next));
    }

    pub fn clear(&self, broker: &str) {
        self.lock().remove(broker);
    }

    /// The active back-off for `broker`, if any (tests, metrics).
    pub fn backoff(&self, broker: &str) -> Option<Duration> {
        self.lock()
            .get(broker)
            .filter(|(u, _)| *u > Instant::now())
            .map(|(_, d)| *d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_and_clears() {
        let t = Throttle::default();
        assert_eq!(t.backoff("b:1"), None);
        t.hit("b:1");
        assert_eq!(t.backoff("b:1"), Some(Duration::from_millis(500)));
        t.hit("b:1");
        assert_eq!(t.backoff("b:1"), Some(Duration::from_secs(1)));
        let start = Instant::now();
        t.wait("b:1").await;
        assert!(start.elapsed() >= Duration::from_secs(1));
        assert_eq!(t.backoff("other:1"), None);
        t.clear("b:1");
        assert_eq!(t.backoff("b:1"), None);
    }
}
