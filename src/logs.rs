//! Warnings that repeat are rate-limited: the same cause on the same
//! listener logs at most a few lines per second, and the first line after
//! that says how many were suppressed. A reconnecting client or a broker
//! outage then costs a few lines, not hundreds. A warning that stops
//! repeating does not take its count with it: [`flush_task`] reports, a
//! few seconds later, what each quiet key suppressed since its last line.
//!
//! Peer-supplied strings (host names, certificate subjects, messages,
//! errors that quote them) are cut with [`clip`] before they reach a line.

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

fn table() -> &'static Mutex<Table> {
    static T: OnceLock<Mutex<Table>> = OnceLock::new();
    T.get_or_init(Default::default)
}

/// `Some(n)`: log now, and say `n` identical lines were suppressed before
/// this one. `None`: stay quiet (counted).
pub fn allow(key: &str) -> Option<u64> {
    allow_at(&mut lock(), key, Instant::now())
}

type Table = HashMap<String, Seen>;

fn lock() -> std::sync::MutexGuard<'static, Table> {
    match table().lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn fresh(now: Instant) -> Seen {
    Seen {
        start: now,
        count: 1,
        suppressed: 0,
    }
}

fn allow_at(t: &mut Table, key: &str, now: Instant) -> Option<u64> {
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
        return allow_overflow(t, now);
    }
    t.insert(key.to_string(), fresh(now));
    Some(0)
}

fn allow_overflow(t: &mut Table, now: Instant) -> Option<u64> {
    const KEY: &str = OVERFLOW;
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

/// The name under which keys beyond [`MAX_KEYS`] share one limit.
const OVERFLOW: &str = "\0overflow";

/// Takes the suppressed counts of keys whose window has ended, so none is
/// lost when a warning stops repeating: `(key, count)` for each.
pub fn flush() -> Vec<(String, u64)> {
    flush_at(&mut lock(), Instant::now())
}

fn flush_at(t: &mut Table, now: Instant) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for (k, s) in t.iter_mut() {
        if s.suppressed > 0 && now.duration_since(s.start) >= INTERVAL {
            let key = match k.as_str() {
                OVERFLOW => "(other causes)".to_string(),
                k => clip(k),
            };
            out.push((key, std::mem::take(&mut s.suppressed)));
        }
    }
    out.sort();
    out
}

/// Every few seconds, one WARN line per key that suppressed lines and has
/// been quiet since: its count would otherwise wait for its next line.
pub async fn flush_task() {
    let mut tick = tokio::time::interval(5 * INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (key, suppressed) in flush() {
            tracing::warn!(key = %key, suppressed, "identical warnings were suppressed");
        }
    }
}

/// At most this many characters of a peer-supplied string reach a log line.
pub const LOG_CHARS: usize = 80;

/// A peer-supplied string cut for logging, to [`LOG_CHARS`] characters.
pub fn clip(s: &str) -> String {
    clip_to(s, LOG_CHARS)
}

/// A string cut to `max` characters for logging, saying how long it was.
pub fn clip_to(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}… ({} bytes)", &s[..i], s.len()),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_that_stops_repeating_keeps_its_count() {
        let mut t = Table::new();
        let t0 = Instant::now();
        for i in 0..BURST + 4 {
            allow_at(&mut t, "test:quiet", t0 + Duration::from_millis(i as u64));
        }
        let mine = |v: Vec<(String, u64)>| v.into_iter().find(|(k, _)| k == "test:quiet");
        assert_eq!(mine(flush_at(&mut t, t0)), None, "not before the window ends");
        assert_eq!(
            mine(flush_at(&mut t, t0 + INTERVAL)),
            Some(("test:quiet".into(), 4))
        );
        assert_eq!(mine(flush_at(&mut t, t0 + 2 * INTERVAL)), None, "reported once");
        assert_eq!(
            allow_at(&mut t, "test:quiet", t0 + 3 * INTERVAL),
            Some(0),
            "the next line does not count them again"
        );
    }

    #[test]
    fn clip_cuts_long_strings_and_says_how_long() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(100);
        let c = clip(&long);
        assert!(c.starts_with(&"é".repeat(LOG_CHARS)), "{c}");
        assert!(c.ends_with("… (200 bytes)"), "{c}");
        assert_eq!(clip_to("abcdef", 3), "abc… (6 bytes)");
    }

    #[test]
    fn repeats_are_suppressed_then_summarised() {
        let mut t = Table::new();
        let t0 = Instant::now();
        for i in 0..BURST {
            let at = t0 + Duration::from_millis(i as u64);
            assert_eq!(allow_at(&mut t, "test:a", at), Some(0), "burst line {i}");
        }
        for i in 1..=7 {
            assert_eq!(
                allow_at(&mut t, "test:a", t0 + Duration::from_millis(10 + i)),
                None
            );
        }
        assert_eq!(
            allow_at(&mut t, "test:b", t0),
            Some(0),
            "other keys are independent"
        );
        assert_eq!(allow_at(&mut t, "test:a", t0 + INTERVAL), Some(7));
        assert_eq!(
            allow_at(&mut t, "test:a", t0 + INTERVAL + Duration::from_millis(1)),
            Some(0)
        );
    }

    #[test]
    fn thousands_of_distinct_causes_share_one_limit() {
        let mut t = Table::new();
        let t0 = Instant::now();
        let logged = (0..5000)
            .filter(|i| allow_at(&mut t, &format!("flood:{i}"), t0).is_some())
            .count();
        assert!(
            logged <= MAX_KEYS + BURST as usize,
            "{logged} lines for 5000 distinct keys"
        );
    }
}
