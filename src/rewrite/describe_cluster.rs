//! DescribeCluster (v0–v2): the `brokers` array after the cluster id.

use super::{endpoint, BrokerMapper, RewriteError, Splice};
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
    let n = r.array_len(true, 11)?.unwrap_or(0);
    let mut sp = Splice::new(frame, n * 24);
    for _ in 0..n {
        let node_id = r.i32()?;
        endpoint(&mut r, &mut sp, true, node_id, mapper)?;
        r.compact_string()?; // rack
        if version >= 2 {
            r.i8()?; // is_fenced
        }
        r.skip_tagged_fields()?;
    }
    Ok(sp.finish())
}
