//! Idempotent producers across cut-overs (see [`registry`]). On the first
//! cluster generation this filter only reads InitProducerId, to learn
//! which ids that cluster issued. On later generations (a separate chain,
//! so the first generation's Produce keeps streaming) it reads Produce
//! whole and rewrites the producer fields of batches whose id came from
//! another generation, and translates an idempotent producer's own epoch
//! bump (InitProducerId with its id) the same way.

pub mod batch;
pub mod registry;

use super::policy::bounds;
use super::policy::frame::{self, decode, split};
use super::{Conn, Filter, FilterError, Need, RequestVerdict, ResponseNeed};
use crate::protocol::header::{key, RequestHeader};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProducerId};
use registry::{Key, Lookup, Registry};
use std::sync::Arc;
use tracing::debug;

const INIT_PRODUCER_ID: i16 = ApiKey::InitProducerId as i16;
/// Retriable, and "not written" for every client: the producer resends
/// the same batch once kgate has the new cluster's id.
const NOT_ENOUGH_REPLICAS: i16 = 19;

/// Marks an idempotent (not transactional) InitProducerId in flight.
struct Idempotent;

pub struct ProducerIds {
    pub ids: Arc<Registry>,
    /// Rewrite (later generations) or only learn (the first).
    pub rewrite: bool,
}

impl Filter for ProducerIds {
    fn name(&self) -> &'static str {
        "producer_ids"
    }

    fn request_need(&self, api_key: i16, _version: i16) -> Need {
        match api_key {
            INIT_PRODUCER_ID => Need::Whole,
            key::PRODUCE if self.rewrite => Need::Whole,
            _ => Need::Skip,
        }
    }

    fn response_need(&self, api_key: i16, _version: i16) -> ResponseNeed {
        if api_key == INIT_PRODUCER_ID {
            ResponseNeed::Whole
        } else {
            ResponseNeed::Skip
        }
    }

    fn on_request(
        &self,
        conn: &dyn Conn,
        h: &RequestHeader,
        frame: &[u8],
    ) -> Result<RequestVerdict, FilterError> {
        let malformed = |cause: String| FilterError::MalformedRequest {
            api_key: h.api_key,
            cause,
        };
        let generation = conn.cluster_generation();
        match h.api_key {
            INIT_PRODUCER_ID => self.init_request(conn, generation, frame).map_err(malformed),
            key::PRODUCE if generation > 0 && !self.ids.is_quiet() => {
                self.produce(generation, frame).map_err(malformed)
            }
            _ => Ok(RequestVerdict::Pass),
        }
    }

    fn on_response(
        &self,
        conn: &dyn Conn,
        h: &RequestHeader,
        frame: &[u8],
    ) -> Result<Option<BytesMut>, FilterError> {
        if h.api_key != INIT_PRODUCER_ID {
            return Ok(None);
        }
        let idempotent = conn
            .unstash(h.correlation_id)
            .is_some_and(|s| s.is::<Idempotent>());
        if !idempotent {
            return Ok(None);
        }
        let malformed = |cause: String| FilterError::MalformedResponse {
            api_key: h.api_key,
            api_version: h.api_version,
            cause,
        };
        let key = ApiKey::InitProducerId;
        let mut body = frame::response_body(frame, key, h.api_version).map_err(malformed)?;
        let mut r: InitProducerIdResponse = decode(&mut body, h.api_version).map_err(malformed)?;
        if r.error_code != 0 {
            return Ok(None);
        }
        let Some(v) = self
            .ids
            .issued(r.producer_id.0, r.producer_epoch, conn.cluster_generation())
        else {
            return Ok(None);
        };
        debug!(
            cluster_id = r.producer_id.0,
            client_id = v,
            "producer id clashes with one held from an earlier cluster; handed out as a kgate id"
        );
        crate::metrics::get().producer_id_remaps_total.add("virtual", 1);
        r.producer_id = ProducerId(v);
        frame::rebuild(frame, key, h.api_version, &r)
            .map(Some)
            .map_err(malformed)
    }
}

impl ProducerIds {
    /// Remembers idempotent InitProducerId requests; on a later generation
    /// an epoch bump of a mapped id goes to the cluster as the mapped id,
    /// and one of an id from another cluster asks for a new id.
    fn init_request(&self, conn: &dyn Conn, generation: u64, frame: &[u8]) -> Result<RequestVerdict, String> {
        let (h, mut b) = split(frame, &bounds::INIT_PRODUCER_ID)?;
        let mut req: InitProducerIdRequest = decode(&mut b, h.version)?;
        if req.transactional_id.is_some() {
            return Ok(RequestVerdict::Pass);
        }
        conn.stash(h.header.correlation_id, Box::new(Idempotent));
        if !self.rewrite || req.producer_id.0 < 0 {
            return Ok(RequestVerdict::Pass);
        }
        let (pid, epoch) = match self.ids.lookup(req.producer_id.0, req.producer_epoch, generation) {
            Lookup::Pass => return Ok(RequestVerdict::Pass),
            Lookup::Map(m) => (m.pid, m.epoch),
            // Not worth a fetch: the cluster issues a new id instead.
            Lookup::Wait => (-1, -1),
        };
        req.producer_id = ProducerId(pid);
        req.producer_epoch = epoch;
        frame::request(&h, &req).map(RequestVerdict::Replace)
    }

    fn produce(&self, generation: u64, frame: &[u8]) -> Result<RequestVerdict, String> {
        let (h, mut b) = split(frame, &bounds::PRODUCE)?;
        let mut req: ProduceRequest = decode(&mut b, h.version)?;
        if req.acks == 0 || req.transactional_id.is_some() {
            return Ok(RequestVerdict::Pass);
        }
        let mut changed = false;
        let mut wait = false;
        for t in &mut req.topic_data {
            let topic = if h.version >= 13 {
                t.topic_id.to_string()
            } else {
                t.name.0.to_string()
            };
            for p in &mut t.partition_data {
                let Some(records) = &p.records else { continue };
                let Some(heads) = batch::heads(records) else {
                    continue;
                };
                let mut out: Option<BytesMut> = None;
                for hd in heads.iter().filter(|hd| !hd.transactional) {
                    let m = match self.ids.lookup(hd.pid, hd.epoch, generation) {
                        Lookup::Pass => continue,
                        Lookup::Wait => {
                            debug!(producer_id = hd.pid, epoch = hd.epoch, %topic, partition = p.index, sequence = hd.seq, "batch waits for a producer id from this cluster");
                            self.ids.waited(key(hd, generation), &topic, p.index, hd.seq);
                            wait = true;
                            continue;
                        }
                        Lookup::Map(m) => m,
                    };
                    let k = key(hd, generation);
                    let seq = self.ids.sequence(k, &topic, p.index, hd.seq);
                    debug!(producer_id = hd.pid, to = m.pid, %topic, partition = p.index, sequence = hd.seq, to_sequence = seq, "batch mapped");
                    let buf = out.get_or_insert_with(|| BytesMut::from(&records[..]));
                    batch::patch(buf, hd, m.pid, m.epoch, seq);
                }
                if let Some(buf) = out {
                    p.records = Some(buf.freeze());
                    changed = true;
                }
            }
        }
        if wait {
            return retry_later(&h, &req).map(RequestVerdict::Answer);
        }
        if !changed {
            return Ok(RequestVerdict::Pass);
        }
        frame::request(&h, &req).map(RequestVerdict::Replace)
    }
}

fn key(hd: &batch::Head, generation: u64) -> Key {
    Key {
        pid: hd.pid,
        epoch: hd.epoch,
        generation,
    }
}

/// Every partition of `req` gets NOT_ENOUGH_REPLICAS: nothing was written,
/// and the client resends the same batches.
fn retry_later(h: &frame::Head, req: &ProduceRequest) -> Result<Bytes, String> {
    let all = req.topic_data.iter().map(|t| (t, NOT_ENOUGH_REPLICAS));
    frame::response(h, &super::policy::topics::produce_errors(all))
}

#[cfg(test)]
mod tests;
