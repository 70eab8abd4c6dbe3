//! Warnings that repeat are rate-limited: the same cause on the same
//! listener logs at most a few lines per second, and the first line after
//! that says how many were suppressed. A reconnecting client or a broker
//! outage then costs a few lines, not hundreds.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_secs(1);
/// Lines per key and interval before suppression starts.
const BURST: u32 = 5;
/// Distinct keys kept at most; beyond it, new keys share one limit.
const MAX_KEYS: usize = 1024;

struct Seen {
    start: Instant,
    count: u32,
    suppressed: u64,
}

fn table() -> &'static Mutex<HashMap<String, Seen>> {
    static T: OnceLock<Mutex<HashMap<String, Seen>>> = OnceLock::new();
    T.get_or_init(Default::default)
}

/// `Some(n)`: log now, and say `n` identical lines were suppressed before
/// this one. `None`: stay quiet (counted).
pub fn allow(key: &str) -> Option<u64> {
    allow_at(key, Instant::now())
}

fn fresh(now: Instant) -> Seen {
    Seen {
        start: now,
        count: 1,
        suppressed: 0,
    }
}

fn allow_at(key: &str, now: Instant) -> Option<u64> {
    let mut t = match table().lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if let Some(s) = t.get_mut(key) {
        if now.duration_since(s.start) >= INTERVAL {
            let n = s.suppressed;
            *s = fresh(now);
            return Some(n);
        }
        if s.count < BURST {
            s.count += 1;
            return Some(0);
        }
        s.suppressed += 1;
        return None;
    }
    if t.len() >= MAX_KEYS {
        t.retain(|_, s| now.duration_since(s.start) < 60 * INTERVAL);
    }
    if t.len() >= MAX_KEYS {
        // Too many distinct causes: they share one limit rather than each
        // getting a fresh one (which would let a flood of unique lines out).
        return allow_overflow(&mut t, now);
    }
    t.insert(key.to_string(), fresh(now));
    Some(0)
}

fn allow_overflow(t: &mut HashMap<String, Seen>, now: Instant) -> Option<u64> {
    const KEY: &str = "\0overflow";
    match t.get_mut(KEY) {
        Some(s) if now.duration_since(s.start) < INTERVAL && s.count >= BURST => {
            s.suppressed += 1;
            None
        }
        Some(s) if now.duration_since(s.start) < INTERVAL => {
            s.count += 1;
            Some(0)
        }
        Some(s) => {
            let n = s.suppressed;
            *s = fresh(now);
            Some(n)
        }
        None => {
            t.insert(KEY.to_string(), fresh(now));
            Some(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_suppressed_then_summarised() {
        let t0 = Instant::now();
        for i in 0..BURST {
            let at = t0 + Duration::from_millis(i as u64);
            assert_eq!(allow_at("test:a", at), Some(0), "burst line {i}");
        }
        for i in 1..=7 {
            assert_eq!(allow_at("test:a", t0 + Duration::from_millis(10 + i)), None);
        }
        assert_eq!(allow_at("test:b", t0), Some(0), "other keys are independent");
        assert_eq!(allow_at("test:a", t0 + INTERVAL), Some(7));
        assert_eq!(
            allow_at("test:a", t0 + INTERVAL + Duration::from_millis(1)),
            Some(0)
        );
    }

    #[test]
    fn thousands_of_distinct_causes_share_one_limit() {
        let t0 = Instant::now() + Duration::from_secs(3600);
        let logged = (0..5000)
            .filter(|i| allow_at(&format!("flood:{i}"), t0).is_some())
            .count();
        assert!(
            logged <= MAX_KEYS + BURST as usize,
            "{logged} lines for 5000 distinct keys"
        );
    }
}
