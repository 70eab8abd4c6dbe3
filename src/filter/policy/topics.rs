//! Requests whose entries are topics: Produce (write), Fetch (read),
//! ListOffsets and OffsetForLeaderEpoch (describe), CreateTopics (create),
//! DeleteTopics (delete). Denied topics get 29 in every partition entry.

use super::bounds;
use super::frame::{decode, split, take_denied};
use super::gate::{finish, Gate, Outcome, TOPIC_DENIED, TXN_DENIED};
use crate::config::policy::op;
use bytes::Bytes;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::produce_request::TopicProduceData;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;

/// Per-topic error codes of a Produce or Fetch (29, 53, or 100 per entry).
fn topic_code(g: &mut Gate, name: &TopicName, id: uuid::Uuid, by_id: bool, o: u8) -> i16 {
    if by_id {
        g.topic_id(id, o).err().unwrap_or(0)
    } else if g.topic(name, o) {
        0
    } else {
        TOPIC_DENIED
    }
}

/// A Produce response in which every partition of each topic gets that
/// topic's error code (nothing written).
pub fn produce_errors<'a>(topics: impl Iterator<Item = (&'a TopicProduceData, i16)>) -> ProduceResponse {
    ProduceResponse::default().with_responses(
        topics
            .map(|(t, code)| {
                TopicProduceResponse::default()
                    .with_name(t.name.clone())
                    .with_topic_id(t.topic_id)
                    .with_partition_responses(
                        t.partition_data
                            .iter()
                            .map(|p| {
                                PartitionProduceResponse::default()
                                    .with_index(p.index)
                                    .with_error_code(code)
                                    .with_base_offset(-1)
                                    .with_log_append_time_ms(-1)
                                    .with_log_start_offset(-1)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

pub fn produce(g: &mut Gate, frame: &[u8]) -> Result<Outcome, String> {
    let (h, mut b) = split(frame, &bounds::PRODUCE)?;
    let mut req: ProduceRequest = decode(&mut b, h.version)?;
    let txn_ok = match &req.transactional_id {
        Some(t) => g.txn(t, op::WRITE),
        None => true,
    };
    let by_id = h.version >= 13;
    let mut codes = Vec::new();
    let denied = take_denied(&mut req.topic_data, |t| {
        let c = if txn_ok {
            topic_code(g, &t.name, t.topic_id, by_id, op::WRITE)
        } else {
            TXN_DENIED
        };
        if c != 0 {
            codes.push(c);
        }
        c != 0
    });
    if !denied.is_empty() && req.acks == 0 {
        return Ok(Outcome::Close("acks=0 Produce to a denied topic"));
    }
    let resp = produce_errors(denied.iter().zip(codes));
    let all = req.topic_data.is_empty();
    finish(&h, !denied.is_empty(), all, &req, resp, |d| d.responses)
}

pub fn fetch(g: &mut Gate, frame: &[u8]) -> Result<Outcome, String> {
    let (h, mut b) = split(frame, &bounds::FETCH)?;
    let mut req: FetchRequest = decode(&mut b, h.version)?;
    let by_id = h.version >= 13;
    let mut codes = Vec::new();
    let denied = take_denied(&mut req.topics, |t| {
        let c = topic_code(g, &t.topic, t.topic_id, by_id, op::READ);
        if c != 0 {
            codes.push(c);
        }
        c != 0
    });
    let resp = FetchResponse::default()
        .with_session_id(req.session_id)
        .with_responses(
            denied
                .iter()
                .zip(codes)
                .map(|(t, code)| {
                    FetchableTopicResponse::default()
                        .with_topic(t.topic.clone())
                        .with_topic_id(t.topic_id)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    PartitionData::default()
                                        .with_partition_index(p.partition)
                                        .with_error_code(code)
                                        .with_high_watermark(-1)
                                        .with_last_stable_offset(-1)
                                        .with_log_start_offset(-1)
                                        .with_preferred_read_replica(BrokerId(-1))
                                        .with_records(Some(Bytes::new()))
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let all = req.topics.is_empty() && req.forgotten_topics_data.is_empty();
    finish(&h, !denied.is_empty(), all, &req, resp, |d| d.responses)
}

pub fn list_offsets(g: &mut Gate, frame: &[u8]) -> Result<Outcome, String> {
    let (h, mut b) = split(frame, &bounds::LIST_OFFSETS)?;
    let mut req: ListOffsetsRequest = decode(&mut b, h.version)?;
    let denied = take_denied(&mut req.topics, |t| !g.topic(&t.name, op::DESCRIBE));
    let resp = ListOffsetsResponse::default().with_topics(
        denied
            .iter()
            .map(|t| {
                ListOffsetsTopicResponse::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                ListOffsetsPartitionResponse::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(TOPIC_DENIED)
                                    .with_timestamp(-1)
                                    .with_offset(-1)
                            })
                            .collect(),
                    )
            })
            .collect(),
    );
    let all = req.topics.is_empty();
    finish(&h, !denied.is_empty(), all, &req, resp, |d| d.topics)
}

pub fn offset_for_leader_epoch(g: &mut Gate, frame: &[u8]) -> Result<Outcome, String> {
    let (h, mut b) = split(frame, &bounds::OFFSET_FOR_LEADER_EPOCH)?;
    let mut req: OffsetForLeaderEpochRequest = decode(&mut b, h.version)?;
    let denied = take_denied(&mut req.topics, |t| !g.topic(&t.topic, op::DESCRIBE));
    let resp = OffsetForLeaderEpochResponse::default().with_topics(
        denied
            .iter()
            .map(|t| {
                OffsetForLeaderTopicResult::default()
                    .with_topic(t.topic.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                EpochEndOffset::default()
                                    .with_partition(p.partition)
                                    .with_error_code(TOPIC_DENIED)
                                    .with_leader_epoch(-1)
                                    .with_end_offset(-1)
                            })
                            .collect(),
                    )
            })
            .collect(),
    );
    let all = req.topics.is_empty();
    finish(&h, !denied.is_empty(), all, &req, resp, |d| d.topics)
}

pub fn create_topics(g: &mut Gate, frame: &[u8]) -> Result<Outcome, String> {
    let (h, mut b) = split(frame, &bounds::CREATE_TOPICS)?;
    let mut req: CreateTopicsRequest = decode(&mut b, h.version)?;
    let denied = take_denied(&mut req.topics, |t| !g.topic(&t.name, op::CREATE));
    let resp = CreateTopicsResponse::default().with_topics(
        denied
            .iter()
            .map(|t| {
                CreatableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_error_code(TOPIC_DENIED)
                    .with_error_message(Some("Authorization failed (kgate policy).".into()))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
            })
            .collect(),
    );
    let all = req.topics.is_empty();
    finish(&h, !denied.is_empty(), all, &req, resp, |d| d.topics)
}

pub fn delete_topics(g: &mut Gate, frame: &[u8]) -> Result<Outcome, String> {
    let (h, mut b) = split(frame, &bounds::DELETE_TOPICS)?;
    let mut req: DeleteTopicsRequest = decode(&mut b, h.version)?;
    let mut out = Vec::new();
    for t in take_denied(&mut req.topic_names, |n| !g.topic(n, op::DELETE)) {
        out.push(DeletableTopicResult::default().with_name(Some(t)));
    }
    let ids = g.ids;
    for t in take_denied(&mut req.topics, |t| match &t.name {
        Some(n) => !g.topic(n, op::DELETE),
        None => g.topic_id(t.topic_id, op::DELETE).is_err(),
    }) {
        let name = t.name.or_else(|| ids.name(t.topic_id).map(TopicName));
        out.push(
            DeletableTopicResult::default()
                .with_name(name)
                .with_topic_id(t.topic_id),
        );
    }
    let any = !out.is_empty();
    let resp = DeleteTopicsResponse::default()
        .with_responses(out.into_iter().map(|r| r.with_error_code(TOPIC_DENIED)).collect());
    let all = req.topic_names.is_empty() && req.topics.is_empty();
    finish(&h, any, all, &req, resp, |d| d.responses)
}
