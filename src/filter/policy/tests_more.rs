//! Denial answers of the group, transaction and offset paths.

use super::*;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};

fn alice() -> TestConn {
    TestConn::as_principal("alice")
}

#[test]
fn one_group_requests_get_30_with_their_correlation_id() {
    let p = policy(RULES);
    let c = alice();
    let g = |n: &str| GroupId(s(n));
    for v in [0, 5, 6, 9] {
        let b = answer(run(
            &p,
            &c,
            ApiKey::JoinGroup,
            v,
            11,
            &JoinGroupRequest::default().with_group_id(g("x")),
        ));
        let (corr, r): (i32, JoinGroupResponse) = read(ApiKey::JoinGroup, v, &b);
        assert_eq!(
            (corr, r.error_code, r.generation_id),
            (11, 30, -1),
            "JoinGroup v{v}"
        );
        let ok = JoinGroupRequest::default().with_group_id(g("orders-app"));
        assert!(matches!(
            run(&p, &c, ApiKey::JoinGroup, v, 11, &ok),
            RequestVerdict::Pass
        ));
    }
    for v in [0, 4, 5] {
        let b = answer(run(
            &p,
            &c,
            ApiKey::SyncGroup,
            v,
            12,
            &SyncGroupRequest::default().with_group_id(g("x")),
        ));
        let (corr, r): (i32, SyncGroupResponse) = read(ApiKey::SyncGroup, v, &b);
        assert_eq!((corr, r.error_code), (12, 30));
        let b = answer(run(
            &p,
            &c,
            ApiKey::LeaveGroup,
            v,
            13,
            &LeaveGroupRequest::default().with_group_id(g("x")),
        ));
        let (_, r): (i32, LeaveGroupResponse) = read(ApiKey::LeaveGroup, v, &b);
        assert_eq!(r.error_code, 30);
    }
    for v in [0, 3, 4] {
        let b = answer(run(
            &p,
            &c,
            ApiKey::Heartbeat,
            v,
            14,
            &HeartbeatRequest::default().with_group_id(g("x")),
        ));
        let (_, r): (i32, HeartbeatResponse) = read(ApiKey::Heartbeat, v, &b);
        assert_eq!(r.error_code, 30);
    }
    for v in [0, 1] {
        let req = ConsumerGroupHeartbeatRequest::default().with_group_id(g("x"));
        let b = answer(run(&p, &c, ApiKey::ConsumerGroupHeartbeat, v, 15, &req));
        let (corr, r): (i32, ConsumerGroupHeartbeatResponse) = read(ApiKey::ConsumerGroupHeartbeat, v, &b);
        assert_eq!((corr, r.error_code), (15, 30));
    }
}

#[test]
fn group_lists_are_split() {
    let p = policy(RULES);
    let c = alice();
    let groups = vec![GroupId(s("orders-app")), GroupId(s("payments-app"))];
    let out = replaced(run(
        &p,
        &c,
        ApiKey::DescribeGroups,
        5,
        3,
        &DescribeGroupsRequest::default().with_groups(groups.clone()),
    ));
    let fwd: DescribeGroupsRequest = read_req(ApiKey::DescribeGroups, 5, &out);
    assert_eq!(fwd.groups, groups[..1]);
    let merged = p
        .on_response(
            &c,
            &hdr(ApiKey::DescribeGroups, 5, 3),
            &resp(ApiKey::DescribeGroups, 5, 3, &DescribeGroupsResponse::default()),
        )
        .unwrap()
        .unwrap();
    let (_, r): (i32, DescribeGroupsResponse) = read(ApiKey::DescribeGroups, 5, &merged);
    assert_eq!(
        (&*r.groups[0].group_id.0, r.groups[0].error_code),
        ("payments-app", 30)
    );
    // alice may not delete groups at all: every entry 30, answered here.
    let b = answer(run(
        &p,
        &c,
        ApiKey::DeleteGroups,
        2,
        4,
        &DeleteGroupsRequest::default().with_groups_names(groups),
    ));
    let (_, r): (i32, DeleteGroupsResponse) = read(ApiKey::DeleteGroups, 2, &b);
    assert!(r.results.iter().all(|x| x.error_code == 30) && r.results.len() == 2);
}

#[test]
fn find_coordinator_old_and_batched() {
    let p = policy(RULES);
    let c = alice();
    let b = answer(run(
        &p,
        &c,
        ApiKey::FindCoordinator,
        2,
        5,
        &FindCoordinatorRequest::default().with_key(s("x")),
    ));
    let (_, r): (i32, FindCoordinatorResponse) = read(ApiKey::FindCoordinator, 2, &b);
    assert_eq!((r.error_code, r.node_id.0), (30, -1));
    let txn = FindCoordinatorRequest::default()
        .with_key_type(1)
        .with_key(s("bob-tx"));
    let b = answer(run(&p, &c, ApiKey::FindCoordinator, 3, 5, &txn));
    let (_, r): (i32, FindCoordinatorResponse) = read(ApiKey::FindCoordinator, 3, &b);
    assert_eq!(r.error_code, 53);
    let keys = FindCoordinatorRequest::default().with_coordinator_keys(vec![s("orders-app"), s("x")]);
    let out = replaced(run(&p, &c, ApiKey::FindCoordinator, 4, 6, &keys));
    let fwd: FindCoordinatorRequest = read_req(ApiKey::FindCoordinator, 4, &out);
    assert_eq!(fwd.coordinator_keys, [s("orders-app")]);
    let merged = p
        .on_response(
            &c,
            &hdr(ApiKey::FindCoordinator, 4, 6),
            &resp(ApiKey::FindCoordinator, 4, 6, &FindCoordinatorResponse::default()),
        )
        .unwrap()
        .unwrap();
    let (_, r): (i32, FindCoordinatorResponse) = read(ApiKey::FindCoordinator, 4, &merged);
    assert_eq!((&*r.coordinators[0].key, r.coordinators[0].error_code), ("x", 30));
}

#[test]
fn offsets_commit_fetch_list_and_leader_epochs() {
    let p = policy(RULES);
    let c = alice();
    let topic = |n: &str| {
        OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(n)))
            .with_partitions(vec![
                OffsetCommitRequestPartition::default().with_partition_index(1)
            ])
    };
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("x")))
        .with_topics(vec![topic("orders.eu")]);
    let b = answer(run(&p, &c, ApiKey::OffsetCommit, 8, 7, &req));
    let (_, r): (i32, OffsetCommitResponse) = read(ApiKey::OffsetCommit, 8, &b);
    assert_eq!(r.topics[0].partitions[0].error_code, 30, "group denied");
    let req = req
        .with_group_id(GroupId(s("orders-app")))
        .with_topics(vec![topic("payments")]);
    let b = answer(run(&p, &c, ApiKey::OffsetCommit, 2, 7, &req));
    let (_, r): (i32, OffsetCommitResponse) = read(ApiKey::OffsetCommit, 2, &b);
    assert_eq!(
        (
            r.topics[0].partitions[0].error_code,
            r.topics[0].partitions[0].partition_index
        ),
        (29, 1)
    );
    let b = answer(run(
        &p,
        &c,
        ApiKey::OffsetFetch,
        5,
        8,
        &OffsetFetchRequest::default().with_group_id(GroupId(s("x"))),
    ));
    let (_, r): (i32, OffsetFetchResponse) = read(ApiKey::OffsetFetch, 5, &b);
    assert_eq!(r.error_code, 30);
    let two = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default().with_group_id(GroupId(s("orders-app"))),
        OffsetFetchRequestGroup::default().with_group_id(GroupId(s("x"))),
    ]);
    let out = replaced(run(&p, &c, ApiKey::OffsetFetch, 8, 8, &two));
    assert_eq!(
        read_req::<OffsetFetchRequest>(ApiKey::OffsetFetch, 8, &out)
            .groups
            .len(),
        1
    );
    let lo = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
        .with_name(TopicName(s("payments")))
        .with_partitions(vec![ListOffsetsPartition::default()])]);
    for v in [1, 6, 9] {
        let b = answer(run(&p, &c, ApiKey::ListOffsets, v, 9, &lo));
        let (corr, r): (i32, ListOffsetsResponse) = read(ApiKey::ListOffsets, v, &b);
        assert_eq!((corr, r.topics[0].partitions[0].error_code), (9, 29));
    }
    let ofle = OffsetForLeaderEpochRequest::default().with_topics(vec![OffsetForLeaderTopic::default()
        .with_topic(TopicName(s("payments")))
        .with_partitions(vec![OffsetForLeaderPartition::default()])]);
    let b = answer(run(&p, &c, ApiKey::OffsetForLeaderEpoch, 4, 10, &ofle));
    let (_, r): (i32, OffsetForLeaderEpochResponse) = read(ApiKey::OffsetForLeaderEpoch, 4, &b);
    assert_eq!(r.topics[0].partitions[0].error_code, 29);
}

#[test]
fn transactions() {
    let p = policy(RULES);
    let c = alice();
    let tx = |n: &str| TransactionalId(s(n));
    let b = answer(run(
        &p,
        &c,
        ApiKey::InitProducerId,
        4,
        1,
        &InitProducerIdRequest::default().with_transactional_id(Some(tx("bob-1"))),
    ));
    let (_, r): (i32, InitProducerIdResponse) = read(ApiKey::InitProducerId, 4, &b);
    assert_eq!((r.error_code, r.producer_id.0), (53, -1));
    let idempotent = InitProducerIdRequest::default().with_transactional_id(None);
    assert!(matches!(
        run(&p, &c, ApiKey::InitProducerId, 4, 1, &idempotent),
        RequestVerdict::Pass
    ));
    let b = answer(run(
        &p,
        &c,
        ApiKey::EndTxn,
        3,
        2,
        &EndTxnRequest::default().with_transactional_id(tx("bob-1")),
    ));
    assert_eq!(read::<EndTxnResponse>(ApiKey::EndTxn, 3, &b).1.error_code, 53);
    let aot = AddOffsetsToTxnRequest::default()
        .with_transactional_id(tx("alice-1"))
        .with_group_id(GroupId(s("x")));
    for v in [0, 3] {
        let b = answer(run(&p, &c, ApiKey::AddOffsetsToTxn, v, 3, &aot));
        assert_eq!(
            read::<AddOffsetsToTxnResponse>(ApiKey::AddOffsetsToTxn, v, &b)
                .1
                .error_code,
            30
        );
    }
    let topics = vec![
        AddPartitionsToTxnTopic::default()
            .with_name(TopicName(s("orders.eu")))
            .with_partitions(vec![0]),
        AddPartitionsToTxnTopic::default()
            .with_name(TopicName(s("payments")))
            .with_partitions(vec![0]),
    ];
    let old = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(tx("alice-1"))
        .with_v3_and_below_topics(topics.clone());
    let b = answer(run(&p, &c, ApiKey::AddPartitionsToTxn, 3, 4, &old));
    let (_, r): (i32, AddPartitionsToTxnResponse) = read(ApiKey::AddPartitionsToTxn, 3, &b);
    let codes: Vec<i16> = r
        .results_by_topic_v3_and_below
        .iter()
        .map(|t| t.results_by_partition[0].partition_error_code)
        .collect();
    assert_eq!(
        codes,
        [55, 29],
        "as Kafka: the denied one 29, the rest not attempted"
    );
    let new =
        AddPartitionsToTxnRequest::default()
            .with_transactions(vec![AddPartitionsToTxnTransaction::default()
                .with_transactional_id(tx("bob-1"))
                .with_topics(topics)]);
    let b = answer(run(&p, &c, ApiKey::AddPartitionsToTxn, 4, 4, &new));
    let (_, r): (i32, AddPartitionsToTxnResponse) = read(ApiKey::AddPartitionsToTxn, 4, &b);
    assert!(r.results_by_transaction[0]
        .topic_results
        .iter()
        .all(|t| t.results_by_partition[0].partition_error_code == 53));
    let toc = TxnOffsetCommitRequest::default()
        .with_transactional_id(tx("alice-1"))
        .with_group_id(GroupId(s("orders-app")))
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(TopicName(s("payments")))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()])]);
    let b = answer(run(&p, &c, ApiKey::TxnOffsetCommit, 3, 5, &toc));
    let (_, r): (i32, TxnOffsetCommitResponse) = read(ApiKey::TxnOffsetCommit, 3, &b);
    assert_eq!(r.topics[0].partitions[0].error_code, 29);
}

#[path = "tests_admin.rs"]
mod admin;

#[path = "tests_describe.rs"]
mod describe;
