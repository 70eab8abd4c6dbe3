//! Admin keys, whole-key denials, merges across versions, fixtures, and
//! the decode-or-pass plan with and without a policy.

use super::*;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};

fn alice() -> TestConn {
    TestConn::as_principal("alice")
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
    // ListGroups goes to the broker; alice sees only the groups she may
    // describe. Without the API (an unmatched principal): 30, whole.
    for v in [0, 3, 4, 5] {
        let lg = ListGroupsRequest::default();
        assert!(matches!(
            run(&p, &c, ApiKey::ListGroups, v, 8, &lg),
            RequestVerdict::Pass
        ));
        let listed = |n: &str| {
            kafka_protocol::messages::list_groups_response::ListedGroup::default()
                .with_group_id(GroupId(s(n)))
        };
        let broker =
            ListGroupsResponse::default().with_groups(vec![listed("orders-app"), listed("payments-app")]);
        let out = p
            .on_response(
                &c,
                &hdr(ApiKey::ListGroups, v, 8),
                &resp(ApiKey::ListGroups, v, 8, &broker),
            )
            .unwrap()
            .unwrap();
        let (corr, r): (i32, ListGroupsResponse) = read(ApiKey::ListGroups, v, &out);
        let names: Vec<&str> = r.groups.iter().map(|g| &*g.group_id.0).collect();
        assert_eq!((corr, names), (8, vec!["orders-app"]), "v{v}");
    }
    let eve = TestConn::as_principal("eve");
    let b = answer(run(
        &p,
        &eve,
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
    // (every Kafka 4.1 key now has an answer; an unknown key stays denied)
    let h = crate::protocol::header::RequestHeader {
        api_key: 1000,
        api_version: 0,
        correlation_id: 10,
    };
    assert!(p
        .on_request(&c, &h, &req(ApiKey::Produce, 9, 10, &ProduceRequest::default()))
        .is_err());
}

#[test]
fn acl_changes_are_answered_per_entry_when_denied() {
    use kafka_protocol::messages::create_acls_request::AclCreation;
    use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
    let p = policy(RULES);
    let c = alice();
    let creations = vec![
        AclCreation::default()
            .with_resource_name(s("orders.eu"))
            .with_principal(s("User:bob")),
        AclCreation::default()
            .with_resource_name(s("payments"))
            .with_host(s("*")),
    ];
    let filters = vec![
        DeleteAclsFilter::default().with_resource_name_filter(Some(s("orders.eu"))),
        DeleteAclsFilter::default(),
        DeleteAclsFilter::default().with_principal_filter(Some(s("User:alice"))),
    ];
    for v in 1..=3 {
        let ca = CreateAclsRequest::default().with_creations(creations.clone());
        let b = answer(run(&p, &c, ApiKey::CreateAcls, v, 20 + v as i32, &ca));
        let (corr, r): (i32, CreateAclsResponse) = read(ApiKey::CreateAcls, v, &b);
        assert_eq!(corr, 20 + v as i32);
        assert_eq!(
            r.results.iter().map(|x| x.error_code).collect::<Vec<_>>(),
            vec![31, 31],
            "v{v}"
        );
        let da = DeleteAclsRequest::default().with_filters(filters.clone());
        let b = answer(run(&p, &c, ApiKey::DeleteAcls, v, 30 + v as i32, &da));
        let (corr, r): (i32, DeleteAclsResponse) = read(ApiKey::DeleteAcls, v, &b);
        assert_eq!(corr, 30 + v as i32);
        assert_eq!(
            r.filter_results.iter().map(|x| x.error_code).collect::<Vec<_>>(),
            vec![31; 3],
            "v{v}"
        );
        assert!(r.filter_results.iter().all(|x| x.matching_acls.is_empty()));
    }
    // The admin principal's ACL changes go to the broker.
    let admin = TestConn::as_principal("admin");
    let ca = CreateAclsRequest::default().with_creations(creations);
    assert!(matches!(
        run(&p, &admin, ApiKey::CreateAcls, 3, 40, &ca),
        RequestVerdict::Pass
    ));
    assert_eq!(p.request_need(30, 3), Need::Whole);
    assert_eq!(p.request_need(31, 3), Need::Whole);
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
        Arc::new(crate::filter::producer_ids::ProducerIds {
            ids: Default::default(),
            rewrite: false,
        }),
        Arc::new(api_versions::ApiVersions {
            cache: None,
            client_sasl: false,
        }),
        Arc::new(broker_address::BrokerAddress {
            mapper: mapper.clone(),
            generation: Some(gen.clone()),
        }),
    ]);
    let clients = || crate::filter::ClientSide {
        auth: None,
        versions: Default::default(),
    };
    let none = standard_chain(
        mapper.clone(),
        gen.clone(),
        None,
        clients(),
        crate::filter::producer_ids::ProducerIds {
            ids: Default::default(),
            rewrite: false,
        },
    );
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
