//! DescribeCluster (v0–v2): the `brokers` array after the cluster id.

use super::{broker_array, BrokerMapper, RewriteError, Splice};
use crate::protocol::wire::Reader;
use bytes::BytesMut;

pub fn rewrite(
    frame: &[u8],
    body: usize,
    version: i16,
    mapper: &dyn BrokerMapper,
) -> Result<BytesMut, RewriteError> {
    let mut r = Reader::at(frame, body);
    r.i32()?; // throttle_time_ms
    r.i16()?; // error_code
    r.compact_string()?; // error_message
    if version >= 1 {
        r.i8()?; // endpoint_type
    }
    r.compact_string()?; // cluster_id
    r.i32()?; // controller_id
    let mut sp = Splice::new(frame, 256);
    broker_array(&mut r, &mut sp, true, 11, mapper, |r| {
        r.compact_string()?; // rack
        if version >= 2 {
            r.i8()?; // is_fenced
        }
        r.skip_tagged_fields()
    })?;
    Ok(sp.finish())
}
