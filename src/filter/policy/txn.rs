//! Transactions: InitProducerId, EndTxn (write on the transactional id),
//! AddOffsetsToTxn (write on it, read on the group), AddPartitionsToTxn
//! (write on it and on each topic; all or nothing, as Kafka does: denied
//! entries get their error, the others OPERATION_NOT_ATTEMPTED), and
//! TxnOffsetCommit (write on it, read on the group and each topic).

use super::bounds;
use super::frame::{decode, response, response_to, split, take_denied};
use super::gate::{finish, Gate, Outcome, CLUSTER_DENIED, GROUP_DENIED, TOPIC_DENIED, TXN_DENIED};
use super::groups::first_string;
use crate::config::policy::op;
use crate::protocol::header::RequestHeader;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::*;

const NOT_ATTEMPTED: i16 = 55;

/// InitProducerId, EndTxn, AddOffsetsToTxn: one transactional id first.
pub fn single(g: &mut Gate, h: &RequestHeader, frame: &[u8]) -> Result<Outcome, String> {
    let key = ApiKey::try_from(h.api_key).map_err(|_| "unknown api key".to_string())?;
    let flex = if key == ApiKey::InitProducerId { 2 } else { 3 };
    let (txn, mut r) = first_string(frame, h, flex)?;
    let (v, c) = (h.api_version, h.correlation_id);
    let code = match txn {
        // Idempotent producers without a transactional id.
        None if key == ApiKey::InitProducerId => {
            if g.api() {
                return Ok(Outcome::Pass);
            }
            CLUSTER_DENIED
        }
        t if !g.txn(t.unwrap_or(""), op::WRITE) => TXN_DENIED,
        _ if key == ApiKey::AddOffsetsToTxn => {
            r.skip(10).map_err(|e| e.to_string())?;
            let group = r.any_string(v >= flex).map_err(|e| e.to_string())?;
            if g.group(group.unwrap_or(""), op::READ) {
                return Ok(Outcome::Pass);
            }
            GROUP_DENIED
        }
        _ => return Ok(Outcome::Pass),
    };
    let b = match key {
        ApiKey::InitProducerId => response_to(
            key,
            v,
            c,
            &InitProducerIdResponse::default()
                .with_error_code(code)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        ),
        ApiKey::EndTxn => response_to(key, v, c, &EndTxnResponse::default().with_error_code(code)),
        _ => response_to(
            key,
            v,
            c,
            &AddOffsetsToTxnResponse::default().with_error_code(code),
        ),
    }?;
    Ok(Outcome::Answer(b))
}

fn topic_results(
    topics: &[AddPartitionsToTxnTopic],
    code: impl Fn(&TopicName) -> i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    topics
        .iter()
        .map(|t| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|&p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(p)
                                .with_partition_error_code(code(&t.name))
                        })
                        .collect(),
                )
        })
        .collect()
}

pub fn add_partitions(g: &mut Gate, frame: &[u8]) -> Result<Outcome, String> {
    let (h, mut b) = split(frame, &bounds::ADD_PARTITIONS_TO_TXN)?;
    let req: AddPartitionsToTxnRequest = decode(&mut b, h.version)?;
    // The code each topic gets when anything in its transaction is denied.
    let mut check = |txn: &str, topics: &[AddPartitionsToTxnTopic]| -> Option<Vec<(TopicName, i16)>> {
        let txn_ok = g.txn(txn, op::WRITE);
        let codes: Vec<(TopicName, i16)> = topics
            .iter()
            .map(|t| {
                let c = match (txn_ok, g.topic(&t.name, op::WRITE)) {
                    (false, _) => TXN_DENIED,
                    (true, false) => TOPIC_DENIED,
                    (true, true) => NOT_ATTEMPTED,
                };
                (t.name.clone(), c)
            })
            .collect();
        (!txn_ok || codes.iter().any(|(_, c)| *c != NOT_ATTEMPTED)).then_some(codes)
    };
    let lookup = |codes: &[(TopicName, i16)], n: &TopicName| {
        codes
            .iter()
            .find(|(x, _)| x == n)
            .map(|(_, c)| *c)
            .unwrap_or(TXN_DENIED)
    };
    if h.version <= 3 {
        let Some(codes) = check(&req.v3_and_below_transactional_id, &req.v3_and_below_topics) else {
            return Ok(Outcome::Pass);
        };
        let r = AddPartitionsToTxnResponse::default()
            .with_results_by_topic_v3_and_below(topic_results(&req.v3_and_below_topics, |n| {
                lookup(&codes, n)
            }));
        return Ok(Outcome::Answer(response(&h, &r)?));
    }
    let mut results = Vec::new();
    for t in &req.transactions {
        if let Some(codes) = check(&t.transactional_id, &t.topics) {
            results.push(
                AddPartitionsToTxnResult::default()
                    .with_transactional_id(t.transactional_id.clone())
                    .with_topic_results(topic_results(&t.topics, |n| lookup(&codes, n))),
            );
        }
    }
    if results.is_empty() {
        return Ok(Outcome::Pass);
    }
    let r = AddPartitionsToTxnResponse::default().with_results_by_transaction(results);
    Ok(Outcome::Answer(response(&h, &r)?))
}

pub fn txn_offset_commit(g: &mut Gate, frame: &[u8]) -> Result<Outcome, String> {
    let (h, mut b) = split(frame, &bounds::TXN_OFFSET_COMMIT)?;
    let mut req: TxnOffsetCommitRequest = decode(&mut b, h.version)?;
    let code = if !g.txn(&req.transactional_id, op::WRITE) {
        TXN_DENIED
    } else if !g.group(&req.group_id, op::READ) {
        GROUP_DENIED
    } else {
        TOPIC_DENIED
    };
    let denied = take_denied(&mut req.topics, |t| {
        code != TOPIC_DENIED || !g.topic(&t.name, op::READ)
    });
    let resp = TxnOffsetCommitResponse::default().with_topics(
        denied
            .iter()
            .map(|t| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    );
    let all = req.topics.is_empty();
    finish(&h, !denied.is_empty(), all, &req, resp, |d| d.topics)
}
