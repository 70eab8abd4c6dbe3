//! The FetchEndpoints rewriter on arbitrary broker bytes: an error or a frame
//! that itself rewrites cleanly, never a panic.
#![no_main]
use kgate::protocol::decision::RewriteKind;
use kgate::rewrite::{rewrite, Advertised, BrokerMapper, MapError};
use libfuzzer_sys::fuzz_target;

struct Map;
impl BrokerMapper for Map {
    fn advertise(&self, node_id: i32, _host: &str, _port: i32) -> Result<Advertised, MapError> {
        Ok(Advertised { host: "kgate.local".into(), port: 20000 + (node_id % 1000) })
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&v, rest)) = data.split_first() else { return };
    let version = 16 + (v as i16) % (18 - 16 + 1);
    let mut frame = ((rest.len() + 4) as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&[0, 0, 0, 1]);
    frame.extend_from_slice(rest);
    if let Ok(Some(out)) = rewrite(RewriteKind::FetchEndpoints, &frame, 1, version, &Map) {
        // What kgate sends on must parse again, to the same bytes.
        let again = rewrite(RewriteKind::FetchEndpoints, &out, 1, version, &Map).expect("rewritten frame re-parses");
        if let Some(again) = again {
            assert_eq!(again, out);
        }
    }
});
