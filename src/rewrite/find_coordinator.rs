//! FindCoordinator: one coordinator in v0–v3, a batch in v4+.

use super::{endpoint, BrokerMapper, RewriteError, Splice};
use crate::protocol::wire::Reader;
use bytes::BytesMut;

pub fn rewrite(
    frame: &[u8],
    body: usize,
    version: i16,
    mapper: &dyn BrokerMapper,
) -> Result<BytesMut, RewriteError> {
    let compact = version >= 3;
    let mut r = Reader::at(frame, body);
    let mut sp = Splice::new(frame, 64);
    if version >= 1 {
        r.i32()?;
    }
    if version <= 3 {
        let error_code = r.i16()?;
        if version >= 1 {
            r.any_string(compact)?;
        }
        let node_id = r.i32()?;
        let node_id = if error_code == 0 { node_id } else { -1 };
        endpoint(&mut r, &mut sp, compact, node_id, mapper)?;
    } else {
        // key + node_id + host + port + error_code + error_message + tags
        let n = r.array_len(true, 14)?.unwrap_or(0);
        for _ in 0..n {
            r.compact_string()?;
            let node_id = r.i32()?;
            // The error code follows the endpoint: look ahead for it.
            let mut ahead = r.clone();
            ahead.compact_string()?;
            ahead.i32()?;
            let error_code = ahead.i16()?;
            let node_id = if error_code == 0 { node_id } else { -1 };
            endpoint(&mut r, &mut sp, true, node_id, mapper)?;
            r.i16()?;
            r.compact_string()?;
            r.skip_tagged_fields()?;
        }
    }
    if compact {
        r.skip_tagged_fields()?;
    }
    Ok(sp.finish())
}
