//! Shared body of the rewriter fuzz targets: arbitrary broker bytes give an
//! error or a frame that itself rewrites cleanly to the same bytes, never a
//! panic, whether or not the mapper refuses some brokers.

use kgate::protocol::decision::RewriteKind;
use kgate::rewrite::{rewrite, Advertised, BrokerMapper, MapError};

/// Maps most brokers, and refuses every third node id, so leaving a broker
/// out of a response (a refused host, a failed listener) is fuzzed too.
struct Map;

impl BrokerMapper for Map {
    fn advertise(&self, node_id: i32, _host: &str, _port: i32) -> Result<Advertised, MapError> {
        if node_id % 3 == 0 {
            return Err(MapError(format!("broker {node_id} refused")));
        }
        Ok(Advertised { host: "kgate.local".into(), port: 20000 + (node_id % 1000) })
    }
}

/// The first byte picks a version in `min..=max`; the rest is the body.
pub fn check(kind: RewriteKind, api_key: i16, min: i16, max: i16, data: &[u8]) {
    let Some((&v, rest)) = data.split_first() else { return };
    let version = min + (v as i16) % (max - min + 1);
    let mut frame = ((rest.len() + 4) as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&[0, 0, 0, 1]);
    frame.extend_from_slice(rest);
    if let Ok(Some(out)) = rewrite(kind, &frame, api_key, version, &Map) {
        let again = rewrite(kind, &out, api_key, version, &Map).expect("rewritten frame re-parses");
        if let Some(again) = again {
            assert_eq!(again, out);
        }
    }
}
