//! Keys the policy used to deny only as a whole, now answered entry by
//! entry so a denial is never a disconnect:
//!
//! - DescribeProducers (`read` on each topic, as Kafka checks it),
//!   DescribeTopicPartitions (`describe` on each topic),
//!   ConsumerGroupDescribe (`describe` on each group) and
//!   DescribeTransactions (`describe` on each transactional id): denied
//!   entries get 29, 30 or 53, the rest go to the broker (split and merged).
//! - AlterReplicaLogDirs: Kafka checks ALTER on the cluster only, so the
//!   API-key gate decides it; a denial gives every partition 31.

use super::bounds;
use super::frame::{decode, response_to, split, take_denied};
use super::gate::{finish, Gate, Outcome, CLUSTER_DENIED, GROUP_DENIED, TOPIC_DENIED, TXN_DENIED};
use crate::config::policy::op;
use kafka_protocol::messages::alter_replica_log_dirs_response::{
    AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
};
use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
use kafka_protocol::messages::describe_producers_response::{PartitionResponse, TopicResponse};
use kafka_protocol::messages::describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic;
use kafka_protocol::messages::describe_transactions_response::TransactionState;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn message() -> Option<StrBytes> {
    Some(StrBytes::from_static_str("Authorization failed (kgate policy)."))
}

pub fn describe_producers(g: &mut Gate, frame: &[u8]) -> Result<Outcome, String> {
    let (h, mut b) = split(frame, &bounds::DESCRIBE_PRODUCERS)?;
    let mut req: DescribeProducersRequest = decode(&mut b, h.version)?;
    let denied = take_denied(&mut req.topics, |t| !g.topic(&t.name, op::READ));
    let resp = DescribeProducersResponse::default().with_topics(
        denied
            .iter()
            .map(|t| {
                let parts = t.partition_indexes.iter().map(|p| {
                    PartitionResponse::default()
                        .with_partition_index(*p)
                        .with_error_code(TOPIC_DENIED)
                        .with_error_message(message())
                });
                TopicResponse::default()
                    .with_name(t.name.clone())
                    .with_partitions(parts.collect())
            })
            .collect(),
    );
    let all = req.topics.is_empty();
    finish(&h, !denied.is_empty() || !g.api_ok, all, &req, resp, |d| d.topics)
}

pub fn describe_topic_partitions(g: &mut Gate, frame: &[u8]) -> Result<Outcome, String> {
    let (h, mut b) = split(frame, &bounds::DESCRIBE_TOPIC_PARTITIONS)?;
    let mut req: DescribeTopicPartitionsRequest = decode(&mut b, h.version)?;
    let denied = take_denied(&mut req.topics, |t| !g.topic(&t.name, op::DESCRIBE));
    let resp = DescribeTopicPartitionsResponse::default().with_topics(
        denied
            .iter()
            .map(|t| {
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(t.name.clone()))
                    .with_error_code(TOPIC_DENIED)
                    .with_topic_authorized_operations(i32::MIN)
            })
            .collect(),
    );
    let all = req.topics.is_empty();
    finish(&h, !denied.is_empty() || !g.api_ok, all, &req, resp, |d| d.topics)
}

pub fn consumer_group_describe(g: &mut Gate, frame: &[u8]) -> Result<Outcome, String> {
    let (h, mut b) = split(frame, &bounds::CONSUMER_GROUP_DESCRIBE)?;
    let mut req: ConsumerGroupDescribeRequest = decode(&mut b, h.version)?;
    let denied = take_denied(&mut req.group_ids, |id| !g.group(id, op::DESCRIBE));
    let resp = ConsumerGroupDescribeResponse::default().with_groups(
        denied
            .iter()
            .map(|id| {
                DescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_error_code(GROUP_DENIED)
                    .with_error_message(message())
            })
            .collect(),
    );
    let all = req.group_ids.is_empty();
    finish(&h, !denied.is_empty() || !g.api_ok, all, &req, resp, |d| d.groups)
}

pub fn describe_transactions(g: &mut Gate, frame: &[u8]) -> Result<Outcome, String> {
    let (h, mut b) = split(frame, &bounds::DESCRIBE_TRANSACTIONS)?;
    let mut req: DescribeTransactionsRequest = decode(&mut b, h.version)?;
    let denied = take_denied(&mut req.transactional_ids, |id| !g.txn(id, op::DESCRIBE));
    let resp = DescribeTransactionsResponse::default().with_transaction_states(
        denied
            .iter()
            .map(|id| {
                TransactionState::default()
                    .with_transactional_id(id.clone())
                    .with_error_code(TXN_DENIED)
            })
            .collect(),
    );
    let all = req.transactional_ids.is_empty();
    finish(&h, !denied.is_empty() || !g.api_ok, all, &req, resp, |d| {
        d.transaction_states
    })
}

pub fn alter_replica_log_dirs(g: &mut Gate, frame: &[u8]) -> Result<Outcome, String> {
    if g.api() {
        return Ok(Outcome::Pass);
    }
    let (h, mut b) = split(frame, &bounds::ALTER_REPLICA_LOG_DIRS)?;
    let req: AlterReplicaLogDirsRequest = decode(&mut b, h.version)?;
    let results = req
        .dirs
        .iter()
        .flat_map(|d| d.topics.iter())
        .map(|t| {
            let parts = t.partitions.iter().map(|p| {
                AlterReplicaLogDirPartitionResult::default()
                    .with_partition_index(*p)
                    .with_error_code(CLUSTER_DENIED)
            });
            AlterReplicaLogDirTopicResult::default()
                .with_topic_name(t.name.clone())
                .with_partitions(parts.collect())
        })
        .collect();
    let resp = AlterReplicaLogDirsResponse::default().with_results(results);
    response_to(h.key, h.version, h.header.correlation_id, &resp).map(Outcome::Answer)
}
