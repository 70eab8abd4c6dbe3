//! Requests about consumer groups. One-group requests (JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup, ConsumerGroupHeartbeat: read) are
//! read only as far as their group id and answered with a top-level 30;
//! DescribeGroups (describe), DeleteGroups (delete) and FindCoordinator
//! (describe on the group or transactional id) are split per entry;
//! OffsetCommit needs read on the group and each topic; OffsetFetch
//! describe on the group.

use super::bounds;
use super::frame::{decode, response_to, split, take_denied};
use super::gate::{finish, Gate, Outcome, GROUP_DENIED, TOPIC_DENIED, TXN_DENIED};
use crate::config::policy::op;
use crate::protocol::header::{request_body_offset, RequestHeader};
use crate::protocol::wire::Reader;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseGroup;
use kafka_protocol::messages::*;

/// The first string of the body (a group or transactional id) and the
/// reader after it.
pub fn first_string<'a>(
    frame: &'a [u8],
    h: &RequestHeader,
    flex_from: i16,
) -> Result<(Option<&'a str>, Reader<'a>), String> {
    let off = request_body_offset(frame, h).map_err(|e| e.to_string())?;
    let mut r = Reader::at(frame, off);
    let s = r
        .any_string(h.api_version >= flex_from)
        .map_err(|e| e.to_string())?;
    Ok((s, r))
}

/// JoinGroup, SyncGroup, Heartbeat, LeaveGroup, ConsumerGroupHeartbeat.
pub fn single(g: &mut Gate, h: &RequestHeader, frame: &[u8]) -> Result<Outcome, String> {
    let key = ApiKey::try_from(h.api_key).map_err(|_| "unknown api key".to_string())?;
    let flex = match key {
        ApiKey::JoinGroup => 6,
        ApiKey::ConsumerGroupHeartbeat => 0,
        _ => 4,
    };
    let (group, _) = first_string(frame, h, flex)?;
    if g.group(group.unwrap_or(""), op::READ) {
        return Ok(Outcome::Pass);
    }
    let (v, c) = (h.api_version, h.correlation_id);
    let e = GROUP_DENIED;
    let b = match key {
        ApiKey::JoinGroup => response_to(
            key,
            v,
            c,
            &JoinGroupResponse::default()
                .with_error_code(e)
                .with_generation_id(-1),
        ),
        ApiKey::SyncGroup => response_to(key, v, c, &SyncGroupResponse::default().with_error_code(e)),
        ApiKey::Heartbeat => response_to(key, v, c, &HeartbeatResponse::default().with_error_code(e)),
        ApiKey::LeaveGroup => response_to(key, v, c, &LeaveGroupResponse::default().with_error_code(e)),
        _ => response_to(
            key,
            v,
            c,
            &ConsumerGroupHeartbeatResponse::default()
                .with_error_code(e)
                .with_error_message(Some("Group authorization failed (kgate policy).".into())),
        ),
    }?;
    Ok(Outcome::Answer(b))
}

pub fn describe_groups(g: &mut Gate, frame: &[u8]) -> Result<Outcome, String> {
    let (h, mut b) = split(frame, &bounds::DESCRIBE_GROUPS)?;
    let mut req: DescribeGroupsRequest = decode(&mut b, h.version)?;
    let denied = take_denied(&mut req.groups, |n| !g.group(n, op::DESCRIBE));
    let resp = DescribeGroupsResponse::default().with_groups(
        denied
            .iter()
            .map(|n| {
                DescribedGroup::default()
                    .with_group_id(n.clone())
                    .with_error_code(GROUP_DENIED)
            })
            .collect(),
    );
    let all = req.groups.is_empty();
    finish(&h, !denied.is_empty(), all, &req, resp, |d| d.groups)
}

pub fn delete_groups(g: &mut Gate, frame: &[u8]) -> Result<Outcome, String> {
    let (h, mut b) = split(frame, &bounds::DELETE_GROUPS)?;
    let mut req: DeleteGroupsRequest = decode(&mut b, h.version)?;
    let denied = take_denied(&mut req.groups_names, |n| !g.group(n, op::DELETE));
    let resp = DeleteGroupsResponse::default().with_results(
        denied
            .iter()
            .map(|n| {
                DeletableGroupResult::default()
                    .with_group_id(n.clone())
                    .with_error_code(GROUP_DENIED)
            })
            .collect(),
    );
    let all = req.groups_names.is_empty();
    finish(&h, !denied.is_empty(), all, &req, resp, |d| d.results)
}

pub fn find_coordinator(g: &mut Gate, frame: &[u8]) -> Result<Outcome, String> {
    let (h, mut b) = split(frame, &bounds::FIND_COORDINATOR)?;
    let mut req: FindCoordinatorRequest = decode(&mut b, h.version)?;
    let txn = req.key_type == 1;
    let code = if txn { TXN_DENIED } else { GROUP_DENIED };
    let mut check = |k: &str| {
        if txn {
            g.txn(k, op::DESCRIBE)
        } else {
            g.group(k, op::DESCRIBE)
        }
    };
    if h.version <= 3 {
        if check(&req.key) {
            return Ok(Outcome::Pass);
        }
        let r = FindCoordinatorResponse::default()
            .with_error_code(code)
            .with_node_id(BrokerId(-1))
            .with_port(-1);
        return Ok(Outcome::Answer(super::frame::response(&h, &r)?));
    }
    let denied = take_denied(&mut req.coordinator_keys, |k| !check(k));
    let resp = FindCoordinatorResponse::default().with_coordinators(
        denied
            .iter()
            .map(|k| {
                Coordinator::default()
                    .with_key(k.clone())
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(code)
            })
            .collect(),
    );
    let all = req.coordinator_keys.is_empty();
    finish(&h, !denied.is_empty(), all, &req, resp, |d| d.coordinators)
}

pub fn offset_commit(g: &mut Gate, frame: &[u8]) -> Result<Outcome, String> {
    let (h, mut b) = split(frame, &bounds::OFFSET_COMMIT)?;
    let mut req: OffsetCommitRequest = decode(&mut b, h.version)?;
    let group_ok = g.group(&req.group_id, op::READ);
    let denied = take_denied(&mut req.topics, |t| !group_ok || !g.topic(&t.name, op::READ));
    let code = if group_ok { TOPIC_DENIED } else { GROUP_DENIED };
    let resp = OffsetCommitResponse::default().with_topics(
        denied
            .iter()
            .map(|t| {
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                OffsetCommitResponsePartition::default()
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

pub fn offset_fetch(g: &mut Gate, frame: &[u8]) -> Result<Outcome, String> {
    let (h, mut b) = split(frame, &bounds::OFFSET_FETCH)?;
    let mut req: OffsetFetchRequest = decode(&mut b, h.version)?;
    if h.version <= 7 {
        if g.group(&req.group_id, op::DESCRIBE) {
            return Ok(Outcome::Pass);
        }
        let mut r = OffsetFetchResponse::default();
        if h.version >= 2 {
            r = r.with_error_code(GROUP_DENIED);
        }
        return Ok(Outcome::Answer(super::frame::response(&h, &r)?));
    }
    let denied = take_denied(&mut req.groups, |x| !g.group(&x.group_id, op::DESCRIBE));
    let resp = OffsetFetchResponse::default().with_groups(
        denied
            .iter()
            .map(|x| {
                OffsetFetchResponseGroup::default()
                    .with_group_id(x.group_id.clone())
                    .with_error_code(GROUP_DENIED)
            })
            .collect(),
    );
    let all = req.groups.is_empty();
    finish(&h, !denied.is_empty(), all, &req, resp, |d| d.groups)
}
