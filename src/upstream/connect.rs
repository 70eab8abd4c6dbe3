//! kgate's own SASL exchange on a fresh upstream connection, before any
//! client byte is forwarded, and the per-broker back-off after MSK's
//! "Too many connects".

use super::stream::Stream;
use crate::protocol::frame::{frame_len, LEN_PREFIX};
use crate::upstream::sasl::{Authenticator, Outcome, SaslError, Transport, KGATE_CORRELATION_BASE};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tracing::warn;

/// SASL responses are small; anything larger is a lie.
const MAX_SASL_FRAME: usize = 1024 * 1024;

struct Direct<'a> {
    stream: &'a mut Stream,
    next: i32,
}

impl Transport for Direct<'_> {
    async fn round_trip(&mut self, request: Bytes, _correlation_id: i32) -> Result<Bytes, String> {
        self.stream.write_all(&request).await.map_err(|e| e.to_string())?;
        let mut len = [0u8; LEN_PREFIX];
        self.stream
            .read_exact(&mut len)
            .await
            .map_err(|e| e.to_string())?;
        let total = frame_len(len, 4, MAX_SASL_FRAME).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; total];
        buf[..LEN_PREFIX].copy_from_slice(&len);
        self.stream
            .read_exact(&mut buf[LEN_PREFIX..])
            .await
            .map_err(|e| e.to_string())?;
        Ok(Bytes::from(buf))
    }

    fn next_correlation(&mut self) -> i32 {
        self.next = self.next.wrapping_add(1);
        self.next
    }
}

/// Authenticates a fresh upstream connection.
pub async fn authenticate(
    a: &Authenticator,
    stream: &mut Stream,
    broker_host: &str,
) -> Result<Outcome, SaslError> {
    let mut t = Direct {
        stream,
        next: KGATE_CORRELATION_BASE,
    };
    a.authenticate(&mut t, broker_host).await
}

/// Back-off per broker after the broker throttled authentication.
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
        warn!(
            broker,
            backoff_ms = next.as_millis() as u64,
            "broker throttles new connections; backing off"
        );
        m.insert(broker.to_string(), (Instant::now() + next, next));
    }

    pub fn clear(&self, broker: &str) {
        self.lock().remove(broker);
    }
}
