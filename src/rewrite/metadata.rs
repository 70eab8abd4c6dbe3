//! Metadata (every version): `brokers` is the first array of the body, after
//! throttle_time_ms (v3+). Only that array is walked; topics pass unchanged.

use super::{broker_array, BrokerMapper, RewriteError, Splice};
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
    let mut sp = Splice::new(frame, 256);
    // node_id + smallest host + port
    broker_array(&mut r, &mut sp, compact, 9, mapper, |r| {
        if version >= 1 {
            r.any_string(compact)?; // rack
        }
        if compact {
            r.skip_tagged_fields()?;
        }
        Ok(())
    })?;
    Ok(sp.finish())
}
