//! The streamed Fetch path on arbitrary broker bytes, fed in chunks whose
//! sizes come from the input: the scanner never panics, never forwards
//! past the frame, never asks for more once all of it is buffered, and a
//! tail it finds is either refused or rewritten to exactly its own length.
#![no_main]
use kgate::protocol::fetch_scan::{FetchScan, Step};
use kgate::rewrite::{rewrite_fetch_tail, Advertised, BrokerMapper, MapError};
use libfuzzer_sys::fuzz_target;

struct Map;

impl BrokerMapper for Map {
    fn advertise(&self, node_id: i32, host: &str, _port: i32) -> Result<Advertised, MapError> {
        if host.len() % 7 == 3 {
            return Err(MapError("refused".into()));
        }
        Ok(Advertised {
            host: if node_id % 2 == 0 { "k".into() } else { "kgate-long-name.local".into() },
            port: 20000,
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, body)) = data.split_first() else { return };
    let chunk = 1 + chunk as usize;
    let mut s = FetchScan::new();
    let (mut pos, mut have) = (0usize, chunk.min(body.len()));
    for _ in 0..100_000 {
        match s.step(&body[pos..have], body.len() - pos) {
            Err(_) => return,
            Ok(Step::Pass { head, records }) => {
                assert!(head + records <= body.len() - pos, "forwarded past the frame");
                pos += head + records;
                have = have.max(pos);
            }
            Ok(Step::NeedMore) => {
                assert!(have < body.len(), "asked for more with all of it buffered");
                have = (have + chunk).min(body.len());
            }
            Ok(Step::Tail) => {
                let tail = &body[pos..];
                if let Ok(Some(out)) = rewrite_fetch_tail(tail, &Map) {
                    assert_eq!(out.len(), tail.len(), "a streamed tail keeps its length");
                }
                return;
            }
        }
    }
});
