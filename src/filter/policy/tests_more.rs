//! Denial answers of the group, transaction, admin and whole-key paths,
//! and the decode-or-pass plan with and without a policy.

use super::*;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
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

#[test]
fn admin_topics_and_whole_keys() {
    let p = policy(RULES);
    let c = alice();
    let ct = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default().with_name(TopicName(s("orders.x")))]);
    for v in [2, 5, 7] {
        let b = answer(run(&p, &c, ApiKey::CreateTopics, v, 6, &ct));
        let (_, r): (i32, CreateTopicsResponse) = read(ApiKey::CreateTopics, v, &b);
        assert_eq!(r.topics[0].error_code, 29, "admin keys are not alice's");
    }
    let dt = DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s("orders.eu"))]);
    let b = answer(run(&p, &c, ApiKey::DeleteTopics, 4, 7, &dt));
    assert_eq!(
        read::<DeleteTopicsResponse>(ApiKey::DeleteTopics, 4, &b)
            .1
            .responses[0]
            .error_code,
        29
    );
    let admin = TestConn::as_principal("admin");
    assert!(matches!(
        run(&p, &admin, ApiKey::CreateTopics, 7, 6, &ct),
        RequestVerdict::Pass
    ));
    // ListGroups carries groups alice's rules restrict: denied whole, 30.
    let b = answer(run(
        &p,
        &c,
        ApiKey::ListGroups,
        4,
        8,
        &ListGroupsRequest::default(),
    ));
    assert_eq!(
        read::<ListGroupsResponse>(ApiKey::ListGroups, 4, &b).1.error_code,
        30
    );
    // An admin key with a top-level error: 31.
    let b = answer(run(
        &p,
        &c,
        ApiKey::DescribeAcls,
        3,
        9,
        &DescribeAclsRequest::default(),
    ));
    let (corr, r): (i32, DescribeAclsResponse) = read(ApiKey::DescribeAcls, 3, &b);
    assert_eq!((corr, r.error_code), (9, 31));
    // No error field for the whole request: closed, the last resort.
    let h = hdr(ApiKey::CreateAcls, 3, 10);
    assert!(p
        .on_request(
            &c,
            &h,
            &req(ApiKey::CreateAcls, 3, 10, &CreateAclsRequest::default())
        )
        .is_err());
}

#[test]
fn lying_request_counts_close_instead_of_allocating() {
    let p = policy(RULES);
    let mut f = req(ApiKey::Produce, 9, 1, &ProduceRequest::default());
    // Replace the (empty) topic array count with u32::MAX - 1 as a varint.
    let at = f.len() - 2;
    f.truncate(at);
    f.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0x0f, 0]);
    let n = (f.len() - 4) as i32;
    f[..4].copy_from_slice(&n.to_be_bytes());
    let e = p
        .on_request(&alice(), &hdr(ApiKey::Produce, 9, 1), &f)
        .unwrap_err();
    assert!(e.to_string().contains("policy cannot read"), "{e}");
}

struct Nowhere;
impl crate::rewrite::BrokerMapper for Nowhere {
    fn advertise(
        &self,
        _: i32,
        _: &str,
        _: i32,
    ) -> Result<crate::rewrite::Advertised, crate::rewrite::MapError> {
        Err(crate::rewrite::MapError("unused".into()))
    }
}

#[test]
fn plan_without_policy_is_unchanged_and_needs_follow_the_rules() {
    use crate::filter::chain::Chain;
    use crate::filter::{acks, allow_list, api_versions, broker_address, sasl_refusal, standard_chain};
    let mapper: Arc<dyn crate::rewrite::BrokerMapper> = Arc::new(Nowhere);
    let gen = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let today = Chain::new(vec![
        Arc::new(sasl_refusal::SaslRefusal),
        Arc::new(allow_list::AllowList),
        Arc::new(acks::Acks),
        Arc::new(api_versions::ApiVersions),
        Arc::new(broker_address::BrokerAddress {
            mapper: mapper.clone(),
            generation: Some(gen.clone()),
        }),
    ]);
    let none = standard_chain(mapper.clone(), None, gen.clone(), None);
    assert!(!none.names().contains(&"policy"));
    for k in 0..128 {
        for v in 0..32 {
            assert_eq!(none.plan(k, v), today.plan(k, v), "key {k} v{v}");
        }
    }
    // Unmatched principals are denied everything by default, which needs
    // every key; with `unmatched = "allow"` only what the rules name.
    let header_only =
        policy("unmatched = \"allow\"\n[[principal]]\nnames = [\"x\"]\napis_deny = [\"ListGroups\"]");
    assert_eq!(header_only.request_need(16, 4), Need::Header);
    assert_eq!(header_only.request_need(0, 9), Need::Skip);
    assert_eq!(header_only.request_need(1, 12), Need::Skip);
    let topics = policy("unmatched = \"allow\"\n[[principal]]\nnames = [\"x\"]\ntopics = []");
    assert_eq!(topics.request_need(0, 9), Need::Whole);
    assert_eq!(topics.request_need(1, 12), Need::Whole);
    assert_eq!(
        topics.request_need(11, 5),
        Need::Skip,
        "groups are not restricted"
    );
    assert_eq!(topics.request_need(18, 3), Need::Skip);
    assert_eq!(
        topics.response_need(1, 16),
        ResponseNeed::Skip,
        "Fetch responses still stream"
    );
    assert_eq!(topics.response_need(3, 12), ResponseNeed::Whole);
    let strict = policy("[[principal]]\nnames = [\"x\"]\napis_deny = [\"ListGroups\"]");
    assert_eq!(strict.request_need(11, 5), Need::Whole);
    assert_eq!(strict.request_need(60, 1), Need::Header);
}

#[test]
fn records_partitions_and_configs_per_entry() {
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
    let p = policy(RULES);
    let c = alice();
    let dr = DeleteRecordsRequest::default().with_topics(vec![DeleteRecordsTopic::default()
        .with_name(TopicName(s("orders.eu")))
        .with_partitions(vec![DeleteRecordsPartition::default().with_partition_index(4)])]);
    let b = answer(run(&p, &c, ApiKey::DeleteRecords, 2, 1, &dr));
    let (_, r): (i32, DeleteRecordsResponse) = read(ApiKey::DeleteRecords, 2, &b);
    assert_eq!(
        (
            r.topics[0].partitions[0].partition_index,
            r.topics[0].partitions[0].error_code
        ),
        (4, 29)
    );
    let cp = CreatePartitionsRequest::default().with_topics(vec![
        CreatePartitionsTopic::default().with_name(TopicName(s("orders.eu")))
    ]);
    let b = answer(run(&p, &c, ApiKey::CreatePartitions, 3, 2, &cp));
    assert_eq!(
        read::<CreatePartitionsResponse>(ApiKey::CreatePartitions, 3, &b)
            .1
            .results[0]
            .error_code,
        29
    );
    // DescribeConfigs is not an admin key: topic resources follow `describe`,
    // a broker resource the API gate; mixed, it is split.
    let dc = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("orders.eu")),
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("payments")),
        DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(s("111")),
    ]);
    let out = replaced(run(&p, &c, ApiKey::DescribeConfigs, 4, 3, &dc));
    assert_eq!(
        read_req::<DescribeConfigsRequest>(ApiKey::DescribeConfigs, 4, &out)
            .resources
            .len(),
        2
    );
    let merged = p
        .on_response(
            &c,
            &hdr(ApiKey::DescribeConfigs, 4, 3),
            &resp(ApiKey::DescribeConfigs, 4, 3, &DescribeConfigsResponse::default()),
        )
        .unwrap()
        .unwrap();
    let (_, r): (i32, DescribeConfigsResponse) = read(ApiKey::DescribeConfigs, 4, &merged);
    assert_eq!(
        (&*r.results[0].resource_name, r.results[0].error_code),
        ("payments", 29)
    );
    let iac = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(4)
        .with_resource_name(s("111"))]);
    let b = answer(run(&p, &c, ApiKey::IncrementalAlterConfigs, 1, 4, &iac));
    let (_, r): (i32, IncrementalAlterConfigsResponse) = read(ApiKey::IncrementalAlterConfigs, 1, &b);
    assert_eq!(r.responses[0].error_code, 31, "an admin key, broker resource");
    let ac = AlterConfigsRequest::default();
    assert!(matches!(
        run(
            &p,
            &TestConn::as_principal("admin"),
            ApiKey::AlterConfigs,
            2,
            5,
            &ac
        ),
        RequestVerdict::Pass
    ));
}

#[test]
fn merges_keep_the_brokers_entries_in_every_version() {
    use kafka_protocol::messages::list_offsets_response::ListOffsetsTopicResponse;
    use kafka_protocol::messages::offset_commit_response::OffsetCommitResponseTopic;
    let p = policy(RULES);
    let c = alice();
    let lo = |n: &str| {
        ListOffsetsTopic::default()
            .with_name(TopicName(s(n)))
            .with_partitions(vec![ListOffsetsPartition::default()])
    };
    for v in 1..=9 {
        let req = ListOffsetsRequest::default().with_topics(vec![lo("orders.eu"), lo("payments")]);
        replaced(run(&p, &c, ApiKey::ListOffsets, v, 20, &req));
        let broker = ListOffsetsResponse::default()
            .with_throttle_time_ms(if v >= 2 { 7 } else { 0 })
            .with_topics(vec![
                ListOffsetsTopicResponse::default().with_name(TopicName(s("orders.eu")))
            ]);
        let out = p
            .on_response(
                &c,
                &hdr(ApiKey::ListOffsets, v, 20),
                &resp(ApiKey::ListOffsets, v, 20, &broker),
            )
            .unwrap()
            .unwrap();
        let (corr, r): (i32, ListOffsetsResponse) = read(ApiKey::ListOffsets, v, &out);
        let names: Vec<&str> = r.topics.iter().map(|t| &*t.name.0).collect();
        assert_eq!((corr, names), (20, vec!["payments", "orders.eu"]), "v{v}");
        assert_eq!(r.throttle_time_ms, if v >= 2 { 7 } else { 0 });
    }
    let oc = |n: &str| {
        OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(n)))
            .with_partitions(vec![OffsetCommitRequestPartition::default()])
    };
    for v in 2..=9 {
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(s("orders-app")))
            .with_topics(vec![oc("orders.eu"), oc("payments")]);
        replaced(run(&p, &c, ApiKey::OffsetCommit, v, 21, &req));
        let broker = OffsetCommitResponse::default().with_topics(vec![
            OffsetCommitResponseTopic::default().with_name(TopicName(s("orders.eu")))
        ]);
        let out = p
            .on_response(
                &c,
                &hdr(ApiKey::OffsetCommit, v, 21),
                &resp(ApiKey::OffsetCommit, v, 21, &broker),
            )
            .unwrap()
            .unwrap();
        let (_, r): (i32, OffsetCommitResponse) = read(ApiKey::OffsetCommit, v, &out);
        assert_eq!(r.topics.len(), 2, "v{v}");
        assert_eq!(r.topics[0].partitions[0].error_code, 29);
    }
    // A broker response cut before its count is an error, not a panic.
    replaced(run(
        &p,
        &c,
        ApiKey::ListOffsets,
        5,
        22,
        &ListOffsetsRequest::default().with_topics(vec![lo("orders.eu"), lo("payments")]),
    ));
    let short = resp(ApiKey::ListOffsets, 5, 22, &ListOffsetsResponse::default());
    assert!(p
        .on_response(&c, &hdr(ApiKey::ListOffsets, 5, 22), &short[..10])
        .is_err());
}

/// Found by fuzz/policy_request: a Fetch v18 whose known tagged field
/// declares a smaller size than its value. kafka-protocol reads the value
/// by type, lost step with the bounds walk, and asked for 412 GB for the
/// forgotten-topics array. Now the walk refuses the tag.
#[test]
fn fixture_fetch_v18_tagged_field_desync() {
    let data = include_bytes!("fixtures/fetch_v18_tag_desync.bin");
    let p = policy(RULES);
    let mut f = vec![0, 0, 0, 0, 0, 1, 0, 18, 0, 0, 0, 7, 0, 1, b'f', 0];
    f.extend_from_slice(&data[2..]);
    let n = (f.len() - 4) as i32;
    f[..4].copy_from_slice(&n.to_be_bytes());
    let e = p
        .on_request(&alice(), &hdr(ApiKey::Fetch, 18, 7), &f)
        .unwrap_err();
    assert!(e.to_string().contains("policy cannot read"), "{e}");
}
