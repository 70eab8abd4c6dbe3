//! Metadata (every version): `brokers` is the first array of the body, after
//! throttle_time_ms (v3+). Only that array is walked; topics pass unchanged.

use super::{endpoint, BrokerMapper, RewriteError, Splice};
use crate::protocol::wire::Reader;
use bytes::BytesMut;

pub fn rewrite(
    frame: &[u8],
    body: usize,
    version: i16,
    mapper: &dyn BrokerMapper,
) -> Result<BytesMut, RewriteError> {
    let compact = version >= 9;
    let mut r = Reader::at(frame, body);
    if version >= 3 {
        r.i32()?;
    }
    // node_id + smallest host + port
    let n = r.array_len(compact, 9)?.unwrap_or(0);
    let mut sp = Splice::new(frame, n * 24);
    for _ in 0..n {
        let node_id = r.i32()?;
        endpoint(&mut r, &mut sp, compact, node_id, mapper)?;
        if version >= 1 {
            r.any_string(compact)?;
        }
        if compact {
            r.skip_tagged_fields()?;
        }
    }
    Ok(sp.finish())
}
