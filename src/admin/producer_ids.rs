//! Fresh producer ids for the current cluster. When a producer whose id
//! came from another cluster generation produces after a cut-over, the
//! producer-id filter answers "retry" and wakes this task, which asks the
//! current cluster for one new idempotent id per waiting producer, as
//! kgate, on one connection. The producer's retry then goes out under the
//! new id (`filter::producer_ids`).

use crate::filter::policy::frame::response_body;
use crate::filter::producer_ids::registry::{Key, Registry};
use crate::upstream::dial::Route;
use crate::Shared;
use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::protocol::Decodable;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

const CORRELATION: i32 = 0x6b67_7069;
/// How long a failed fetch waits before the next.
const BACK_OFF: Duration = Duration::from_secs(1);
/// InitProducerId responses are a few dozen bytes.
const MAX_RESPONSE: usize = 4096;

/// The version to ask with: the broker's highest up to 4 (tansu answers
/// v0–v2 wrongly; every broker that offers v3 takes it).
fn version(shared: &Shared) -> i16 {
    let key = ApiKey::InitProducerId as i16;
    shared
        .versions
        .get()
        .and_then(|l| l.iter().find(|(k, _, _)| *k == key).map(|(_, _, hi)| *hi))
        .unwrap_or(4)
        .clamp(0, 4)
}

fn request(version: i16, correlation: i32) -> Result<BytesMut, String> {
    let body = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    super::own_request::frame(ApiKey::InitProducerId, version, correlation, &body)
}

fn parse(frame: &[u8], version: i16) -> Result<(i64, i16), String> {
    let mut body = response_body(frame, ApiKey::InitProducerId, version)?;
    let r = InitProducerIdResponse::decode(&mut body, version).map_err(|e| e.to_string())?;
    if r.error_code != 0 {
        return Err(format!("InitProducerId answered error {}", r.error_code));
    }
    Ok((r.producer_id.0, r.producer_epoch))
}

/// One fresh id per key, from the current cluster, if it is still `generation`.
async fn fetch(shared: &Shared, ids: &Registry, generation: u64, keys: &[Key]) -> Result<(), String> {
    let mut up = shared
        .connector
        .connect(&Route::Bootstrap)
        .await
        .map_err(|e| e.to_string())?;
    if up.cluster.0.generation != generation {
        return Err("the cluster moved again".into());
    }
    let v = version(shared);
    for (i, k) in keys.iter().enumerate() {
        let req = request(v, CORRELATION.wrapping_add(i as i32))?;
        let frame =
            super::probe::round_trip_max(&mut up.stream, &req, "InitProducerId", MAX_RESPONSE).await?;
        let (pid, epoch) = parse(&frame, v)?;
        ids.fill(*k, pid, epoch);
        crate::metrics::get().producer_id_remaps_total.add("fetched", 1);
        info!(
            client_producer_id = k.pid,
            client_epoch = k.epoch,
            producer_id = pid,
            cluster = %up.cluster.0.name,
            generation,
            "producer id from another cluster generation mapped to a fresh one"
        );
    }
    Ok(())
}

pub async fn run(shared: Arc<Shared>, ids: Arc<Registry>) {
    loop {
        ids.wanted().await;
        let generation = shared.connector.clusters.current().generation;
        let keys = ids.take_pending(generation);
        if keys.is_empty() {
            continue;
        }
        if let Err(e) = fetch(&shared, &ids, generation, &keys).await {
            ids.unfetch(&keys);
            if let Some(suppressed) = crate::logs::allow("producer_ids") {
                warn!(error = %e, suppressed, "cannot get a producer id from the current cluster; producers from an earlier cluster generation retry");
            }
            tokio::time::sleep(BACK_OFF).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{RequestHeader, ResponseHeader};
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn the_request_decodes_and_a_response_parses() {
        for v in [3i16, 4] {
            let mut b = request(v, 9).expect("request").freeze();
            let _len = b.split_to(4);
            let key = ApiKey::InitProducerId;
            let h = RequestHeader::decode(&mut b, key.request_header_version(v)).expect("header");
            assert_eq!((h.request_api_key, h.correlation_id), (22, 9));
            let r = InitProducerIdRequest::decode(&mut b, v).expect("body");
            assert!(r.transactional_id.is_none());
            assert_eq!(r.producer_id.0, -1);

            let mut out = BytesMut::new();
            out.extend_from_slice(&[0; 4]);
            ResponseHeader::default()
                .with_correlation_id(9)
                .encode(&mut out, key.response_header_version(v))
                .expect("header");
            let mut resp = InitProducerIdResponse::default()
                .with_producer_id(ProducerId(77))
                .with_producer_epoch(3);
            resp.encode(&mut out, v).expect("body");
            assert_eq!(parse(&out, v), Ok((77, 3)));
            resp.error_code = 15;
            out.truncate(4);
            ResponseHeader::default()
                .with_correlation_id(9)
                .encode(&mut out, key.response_header_version(v))
                .expect("header");
            resp.encode(&mut out, v).expect("body");
            assert!(parse(&out, v).is_err());
        }
    }
}
