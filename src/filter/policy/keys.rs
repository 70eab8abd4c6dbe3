//! What each API key carries and how a denial of it is answered.
//!
//! - Per entry (split when mixed): Produce, Fetch, ListOffsets, Metadata,
//!   OffsetCommit, OffsetFetch, FindCoordinator, DescribeGroups,
//!   DeleteGroups, CreateTopics, DeleteTopics, OffsetForLeaderEpoch,
//!   TxnOffsetCommit, DeleteRecords, CreatePartitions, DescribeConfigs,
//!   AlterConfigs, IncrementalAlterConfigs; all or nothing as Kafka does:
//!   AddPartitionsToTxn; DescribeProducers, DescribeTopicPartitions,
//!   ConsumerGroupDescribe,
//!   DescribeTransactions; decided whole by the API gate but answered per
//!   entry: CreateAcls, DeleteAcls, AlterReplicaLogDirs.
//! - One resource, top-level error: JoinGroup, SyncGroup, Heartbeat,
//!   LeaveGroup, ConsumerGroupHeartbeat, InitProducerId, AddOffsetsToTxn,
//!   EndTxn.
//! - ListGroups passes; its response keeps the describable groups only.
//! - Denied as a whole with a top-level error (31; 30 for group APIs): the
//!   keys in [`TOP_LEVEL`]. This is also what a key that carries a
//!   restricted resource kgate does not check per entry gets.
//! - Any other denied key closes the connection (its response has no
//!   error field for the whole request): the last resort, logged.

use super::frame::response_to;
use super::gate::{Gate, Outcome, CLUSTER_DENIED, GROUP_DENIED};
use super::{acls, admin, describe, groups, topics, txn};
use crate::config::policy::Rules;
use crate::protocol::header::RequestHeader;
use kafka_protocol::messages::*;
use std::sync::OnceLock;

/// Passed to the broker; its response lists only describable groups.
pub const LIST_GROUPS: i16 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Topic,
    Group,
    Txn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Read (whole) and answered per entry or per resource.
    Entries,
    /// Answered as a whole from the header.
    Whole,
}

const ENTRIES: &[i16] = &[
    0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 19, 20, 21, 22, 23, 24, 25, 26, 28, 30, 31, 32, 33, 34, 37, 42,
    44, 61, 65, 68, 69, 75,
];

/// Keys whose response has a top-level error code kgate can set.
pub const TOP_LEVEL: &[i16] = &[
    16, 29, 35, 38, 39, 40, 41, 43, 45, 46, 47, 48, 50, 55, 57, 60, 64, 66,
];

pub fn handling(k: i16) -> Handling {
    if ENTRIES.contains(&k) {
        Handling::Entries
    } else {
        Handling::Whole
    }
}

/// The resources a key names. Keys after the first group in each list
/// carry the resource but are not checked per entry (denied as a whole to
/// a principal whose rules restrict that resource).
pub fn resources(k: i16) -> &'static [Resource] {
    use Resource::*;
    match k {
        0 | 24 => &[Topic, Txn],
        28 => &[Topic, Txn, Group],
        1 | 2 | 3 | 19 | 20 | 21 | 23 | 32 | 33 | 37 | 44 => &[Topic],
        8 => &[Topic, Group],
        9 | 11 | 12 | 13 | 14 | 15 | 42 | 68 => &[Group],
        10 | 25 => &[Group, Txn],
        22 | 26 => &[Txn],
        // Not checked per entry.
        34 | 35 | 43 | 45 | 46 | 75 => &[Topic],
        16 | 69 => &[Group], // ListGroups: filtered in its response
        47 => &[Topic, Group],
        61 => &[Topic, Txn],
        65 | 66 => &[Txn],
        _ => &[],
    }
}

/// Whether `rules` restrict a resource that key `k` carries.
pub fn restricted(k: i16, rules: &Rules) -> bool {
    resources(k).iter().any(|r| match r {
        Resource::Topic => rules.topics.is_some(),
        Resource::Group => rules.groups.is_some(),
        Resource::Txn => rules.transactional_ids.is_some(),
    })
}

/// Runs the per-entry check of a key in [`ENTRIES`].
pub fn entries(g: &mut Gate, h: &RequestHeader, frame: &[u8]) -> Result<Outcome, String> {
    match h.api_key {
        0 => topics::produce(g, frame),
        1 => topics::fetch(g, frame),
        2 => topics::list_offsets(g, frame),
        8 => groups::offset_commit(g, frame),
        9 => groups::offset_fetch(g, frame),
        10 => groups::find_coordinator(g, frame),
        11..=14 | 68 => groups::single(g, h, frame),
        15 => groups::describe_groups(g, frame),
        19 => topics::create_topics(g, frame),
        20 => topics::delete_topics(g, frame),
        21 => admin::delete_records(g, frame),
        32 => admin::describe_configs(g, frame),
        33 => admin::alter_configs(g, frame),
        37 => admin::create_partitions(g, frame),
        44 => admin::incremental_alter_configs(g, frame),
        22 | 25 | 26 => txn::single(g, h, frame),
        23 => topics::offset_for_leader_epoch(g, frame),
        24 => txn::add_partitions(g, frame),
        28 => txn::txn_offset_commit(g, frame),
        30 => acls::create_acls(g, frame),
        31 => acls::delete_acls(g, frame),
        34 => describe::alter_replica_log_dirs(g, frame),
        61 => describe::describe_producers(g, frame),
        65 => describe::describe_transactions(g, frame),
        69 => describe::consumer_group_describe(g, frame),
        75 => describe::describe_topic_partitions(g, frame),
        42 => groups::delete_groups(g, frame),
        k => Err(format!("no per-entry check for api key {k}")),
    }
}

/// The answer to a key denied as a whole.
pub fn whole(g: &mut Gate, h: &RequestHeader) -> Outcome {
    g.api();
    let Ok(key) = ApiKey::try_from(h.api_key) else {
        return Outcome::Close("unknown api key denied by policy");
    };
    let code = if resources(h.api_key) == [Resource::Group] {
        GROUP_DENIED
    } else {
        CLUSTER_DENIED
    };
    let (v, c) = (h.api_version, h.correlation_id);
    macro_rules! top {
        ($t:ty) => {
            response_to(key, v, c, &<$t>::default().with_error_code(code))
        };
    }
    let b = match h.api_key {
        16 => top!(ListGroupsResponse),
        29 => top!(DescribeAclsResponse),
        35 => top!(DescribeLogDirsResponse),
        38 => top!(CreateDelegationTokenResponse),
        39 => top!(RenewDelegationTokenResponse),
        40 => top!(ExpireDelegationTokenResponse),
        41 => top!(DescribeDelegationTokenResponse),
        43 => top!(ElectLeadersResponse),
        45 => top!(AlterPartitionReassignmentsResponse),
        46 => top!(ListPartitionReassignmentsResponse),
        47 => top!(OffsetDeleteResponse),
        48 => top!(DescribeClientQuotasResponse),
        50 => top!(DescribeUserScramCredentialsResponse),
        55 => top!(DescribeQuorumResponse),
        57 => top!(UpdateFeaturesResponse),
        60 => top!(DescribeClusterResponse),
        64 => top!(UnregisterBrokerResponse),
        66 => top!(ListTransactionsResponse),
        _ => {
            return Outcome::Close("denied by policy; its response has no error field for the whole request")
        }
    };
    match b {
        Ok(b) => Outcome::Answer(b),
        Err(_) => Outcome::Close("denied by policy; this version's response has no top-level error field"),
    }
}

/// The key's Kafka name, for logs and metric labels (bounded: one per key).
pub fn name(k: i16) -> &'static str {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        (0..128i16)
            .map(|k| match ApiKey::try_from(k) {
                Ok(a) => &*Box::leak(format!("{a:?}").into_boxed_str()),
                Err(()) => "unknown",
            })
            .collect()
    });
    usize::try_from(k)
        .ok()
        .and_then(|i| names.get(i).copied())
        .unwrap_or("unknown")
}
