//! The producer-id filter on arbitrary Produce and InitProducerId frames,
//! on a later cluster generation where ids 0–255 of the first generation
//! are mapped (so record batches are read and rewritten): nothing may
//! panic, and a rewritten Produce must still hold whole magic-2 batches.
//! The record-batch reader also gets the raw bytes.
#![no_main]
use kgate::filter::producer_ids::{batch, registry::Registry, ProducerIds};
use kgate::filter::{Conn, Filter, RequestVerdict};
use kgate::protocol::header::peek_request_header;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, Mutex, OnceLock};

struct Fc(Mutex<Vec<(i32, Box<dyn std::any::Any + Send>)>>);

impl Conn for Fc {
    fn listener(&self) -> &str {
        "fuzz"
    }
    fn client(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], 1).into()
    }
    fn identity(&self) -> Option<&str> {
        None
    }
    fn broker(&self) -> Option<kgate::config::HostPort> {
        None
    }
    fn session_lifetime_ms(&self) -> i64 {
        0
    }
    fn set_session_lifetime_ms(&self, _: i64) {}
    fn reauth_due(&self) -> Option<tokio::time::Instant> {
        None
    }
    fn set_reauth_due(&self, _: Option<tokio::time::Instant>) {}
    fn cluster_generation(&self) -> u64 {
        2
    }
    fn stash(&self, c: i32, v: Box<dyn std::any::Any + Send>) {
        let mut s = self.0.lock().unwrap();
        if s.len() < 64 {
            s.push((c, v));
        }
    }
    fn unstash(&self, c: i32) -> Option<Box<dyn std::any::Any + Send>> {
        let mut s = self.0.lock().unwrap();
        let i = s.iter().position(|(x, _)| *x == c)?;
        Some(s.remove(i).1)
    }
}

fn filter() -> &'static ProducerIds {
    static F: OnceLock<ProducerIds> = OnceLock::new();
    F.get_or_init(|| {
        let ids = Arc::new(Registry::default());
        for pid in 0..256 {
            ids.issued(pid, 0, 1);
            ids.lookup(pid, 0, 2);
        }
        for (i, k) in ids.take_pending(2).into_iter().enumerate() {
            ids.fill(k, 10_000 + i as i64, 0);
        }
        ProducerIds { ids, rewrite: true }
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = batch::heads(data);
    let Some((&sel, rest)) = data.split_first() else { return };
    let key: i16 = if sel & 1 == 0 { 0 } else { 22 };
    let mut frame = vec![0u8; 4];
    frame.extend_from_slice(&key.to_be_bytes());
    frame.extend_from_slice(rest);
    let n = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&n.to_be_bytes());
    let Ok(h) = peek_request_header(&frame) else { return };
    let conn = Fc(Mutex::new(Vec::new()));
    let f = filter();
    if let Ok(RequestVerdict::Replace(out)) = f.on_request(&conn, &h, &frame) {
        assert!(peek_request_header(&out).is_ok(), "a replacement is a frame");
    }
    let _ = f.on_response(&conn, &h, &frame);
});
