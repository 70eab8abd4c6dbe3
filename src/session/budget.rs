//! The process-wide budget for bytes held to assemble frames a filter must
//! see whole. A connection that needs more than its small free allowance
//! waits for budget instead of growing memory without bound; streamed
//! frames never draw on it.

use crate::metrics;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Frames up to this size are assembled without drawing on the budget
/// (per-connection memory is bounded by it and the read chunk).
pub const FREE_BYTES: usize = 64 * 1024;
const UNIT: usize = 1024;

#[derive(Clone)]
pub struct Budget {
    sem: Arc<Semaphore>,
    units: u32,
}

/// Budget held while a frame is buffered; given back on drop.
pub struct Held {
    _permit: Option<OwnedSemaphorePermit>,
    bytes: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        metrics::get().buffer_budget_used.fetch_sub(self.bytes, Relaxed);
    }
}

impl Budget {
    pub fn new(bytes: usize) -> Self {
        let units = (bytes / UNIT).clamp(1, u32::MAX as usize >> 4) as u32;
        Budget {
            sem: Arc::new(Semaphore::new(units as usize)),
            units,
        }
    }

    /// Waits until `bytes` may be held (at most the whole budget, so a
    /// frame larger than the budget still proceeds, alone).
    pub async fn hold(&self, bytes: usize) -> Held {
        if bytes <= FREE_BYTES {
            return Held {
                _permit: None,
                bytes: 0,
            };
        }
        let want = bytes.div_ceil(UNIT).min(self.units as usize) as u32;
        let m = metrics::get();
        let permit = match self.sem.clone().try_acquire_many_owned(want) {
            Ok(p) => p,
            Err(_) => {
                m.buffer_budget_waits.fetch_add(1, Relaxed);
                match self.sem.clone().acquire_many_owned(want).await {
                    Ok(p) => p,
                    // Never closed; if it were, proceed without budget.
                    Err(_) => {
                        return Held {
                            _permit: None,
                            bytes: 0,
                        }
                    }
                }
            }
        };
        let held = want as u64 * UNIT as u64;
        m.buffer_budget_used.fetch_add(held, Relaxed);
        Held {
            _permit: Some(permit),
            bytes: held,
        }
    }

    /// Bytes free right now (tests, metrics).
    pub fn available(&self) -> usize {
        self.sem.available_permits() * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn small_frames_are_free_and_large_ones_wait_for_budget() {
        let b = Budget::new(1 << 20);
        let _small = b.hold(1000).await;
        assert_eq!(b.available(), 1 << 20);
        let big = b.hold(700 * 1024).await;
        assert_eq!(b.available(), 324 * 1024);
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.hold(600 * 1024).await.bytes });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "second frame must wait for budget");
        drop(big);
        assert_eq!(waiter.await.unwrap(), 600 * 1024);
        // Larger than the whole budget: proceeds alone instead of hanging.
        let all = b.hold(10 << 20).await;
        assert_eq!(b.available(), 0);
        drop(all);
        assert_eq!(b.available(), 1 << 20);
    }
}
