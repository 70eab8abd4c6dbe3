//! Metadata: a principal sees only the topics it may describe.
//!
//! - Request: explicitly named topics it may not describe are taken out
//!   (so the broker never auto-creates them) and come back with 29, as
//!   Kafka answers; `allow_auto_topic_creation` is forced false unless the
//!   principal may create every topic it names.
//! - Response: every topic id → name pair is learned (cluster-wide), and
//!   topics the principal may not describe are dropped.

use super::bounds;
use super::frame::{self, decode, split, take_denied};
use super::gate::{Gate, TOPIC_DENIED, UNKNOWN_TOPIC_ID};
use super::ids::TopicIds;
use crate::config::policy::{grants, op, Rules};
use bytes::BytesMut;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::*;

/// Topics taken out of a request, to be put back into its response.
pub type Denied = Vec<MetadataResponseTopic>;

/// `Replace` carries the request to forward and what to add back.
pub enum Request {
    Pass,
    Replace(bytes::Bytes, Denied),
}

pub fn request(g: &mut Gate, frame: &[u8]) -> Result<Request, String> {
    let (h, mut b) = split(frame, &bounds::METADATA)?;
    let mut req: MetadataRequest = decode(&mut b, h.version)?;
    let mut denied = Vec::new();
    if let Some(topics) = req.topics.as_mut() {
        let ids = g.ids;
        let gone = take_denied(topics, |t| match (&t.name, t.topic_id.is_nil()) {
            (Some(n), _) => !g.topic(n, op::DESCRIBE),
            (None, false) => g.topic_id(t.topic_id, op::DESCRIBE).is_err(),
            (None, true) => false,
        });
        for t in gone {
            let name = t.name.clone().or_else(|| ids.name(t.topic_id).map(TopicName));
            let code = if name.is_none() {
                UNKNOWN_TOPIC_ID
            } else {
                TOPIC_DENIED
            };
            denied.push(
                MetadataResponseTopic::default()
                    .with_error_code(code)
                    .with_name(name)
                    .with_topic_id(t.topic_id)
                    .with_topic_authorized_operations(i32::MIN),
            );
        }
    }
    let may_create = match &req.topics {
        None => true,
        Some(ts) => ts.iter().all(|t| {
            t.name
                .as_ref()
                .is_none_or(|n| g.api_ok && grants(&g.rules.topics, n, op::CREATE))
        }),
    };
    let flip = h.version >= 4 && req.allow_auto_topic_creation && !may_create;
    if flip {
        req.allow_auto_topic_creation = false;
    }
    if denied.is_empty() && !flip {
        return Ok(Request::Pass);
    }
    Ok(Request::Replace(frame::request(&h, &req)?, denied))
}

/// Learns the topic ids of a whole Metadata response (v10+ carry them);
/// returns how many topics it named.
pub fn learn(ids: &TopicIds, frame: &[u8], version: i16) -> Result<usize, String> {
    let mut body = frame::response_body(frame, ApiKey::Metadata, version)?;
    bounds::check_with(
        &bounds::METADATA_RESPONSE,
        version,
        &body,
        bounds::MAX_RESPONSE_ELEMENTS,
    )
    .map_err(|e| e.to_string())?;
    let r: MetadataResponse = decode(&mut body, version)?;
    for t in &r.topics {
        if let Some(n) = &t.name {
            ids.learn(t.topic_id, n);
        }
    }
    Ok(r.topics.len())
}

/// Learns ids, drops what `rules` may not describe, and appends `denied`.
/// `None`: unchanged.
pub fn response(
    rules: &Rules,
    ids: &TopicIds,
    frame: &[u8],
    version: i16,
    denied: Denied,
) -> Result<Option<BytesMut>, String> {
    let key = ApiKey::Metadata;
    let mut body = frame::response_body(frame, key, version)?;
    bounds::check_with(
        &bounds::METADATA_RESPONSE,
        version,
        &body,
        bounds::MAX_RESPONSE_ELEMENTS,
    )
    .map_err(|e| e.to_string())?;
    let mut r: MetadataResponse = decode(&mut body, version)?;
    for t in &r.topics {
        if let Some(n) = &t.name {
            ids.learn(t.topic_id, n);
        }
    }
    let api_ok = rules.api_allowed(key as i16);
    if rules.topics.is_none() && api_ok && denied.is_empty() {
        return Ok(None);
    }
    let before = r.topics.len();
    r.topics.retain(|t| {
        api_ok
            && t.name
                .as_ref()
                .is_some_and(|n| grants(&rules.topics, n, op::DESCRIBE))
    });
    if r.topics.len() == before && denied.is_empty() {
        return Ok(None);
    }
    r.topics.extend(denied);
    frame::rebuild(frame, key, version, &r).map(Some)
}
