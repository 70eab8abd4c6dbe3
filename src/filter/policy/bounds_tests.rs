use super::*;
use bytes::BytesMut;
use kafka_protocol::messages::add_partitions_to_txn_request::*;
use kafka_protocol::messages::create_topics_request::*;
use kafka_protocol::messages::delete_topics_request::*;
use kafka_protocol::messages::fetch_request::*;
use kafka_protocol::messages::list_offsets_request::*;
use kafka_protocol::messages::metadata_request::*;
use kafka_protocol::messages::offset_commit_request::*;
use kafka_protocol::messages::offset_fetch_request::*;
use kafka_protocol::messages::offset_for_leader_epoch_request::*;
use kafka_protocol::messages::produce_request::*;
use kafka_protocol::messages::txn_offset_commit_request::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

fn enc<M: Encodable>(m: &M, v: i16) -> Vec<u8> {
    let mut b = BytesMut::new();
    m.encode(&mut b, v).unwrap();
    b.to_vec()
}

fn s(x: &'static str) -> StrBytes {
    StrBytes::from_static_str(x)
}

/// Every version of `schema` accepts kafka-protocol's own encoding of a
/// populated request, and rejects it one byte short.
fn agrees<M: Encodable>(schema: &Schema, m: &M) {
    for v in schema.min..=schema.max {
        let b = enc(m, v);
        check(schema, v, &b).unwrap_or_else(|e| panic!("v{v}: {e}"));
        assert!(check(schema, v, &b[..b.len() - 1]).is_err(), "v{v} short");
    }
    assert!(check(schema, schema.max + 1, &enc(m, schema.max)).is_err());
}

#[test]
fn init_producer_id() {
    use kafka_protocol::messages::{InitProducerIdRequest, ProducerId};
    agrees(
        &INIT_PRODUCER_ID,
        &InitProducerIdRequest::default().with_transaction_timeout_ms(60_000),
    );
    let bump = InitProducerIdRequest::default()
        .with_producer_id(ProducerId(7))
        .with_producer_epoch(2);
    for v in 3..=5 {
        let b = enc(&bump, v);
        check(&INIT_PRODUCER_ID, v, &b).unwrap_or_else(|e| panic!("v{v}: {e}"));
        assert!(check(&INIT_PRODUCER_ID, v, &b[..b.len() - 1]).is_err());
    }
}

#[test]
fn produce_fetch_list_offsets() {
    let p = ProduceRequest::default()
        .with_topic_data(vec![TopicProduceData::default()
            .with_partition_data(vec![PartitionProduceData::default().with_index(3)])]);
    agrees(&PRODUCE, &p);
    let f = FetchRequest::default()
        .with_topics(vec![FetchTopic::default().with_partitions(vec![
            FetchPartition::default(),
            FetchPartition::default(),
        ])])
        .with_forgotten_topics_data(vec![ForgottenTopic::default().with_partitions(vec![1, 2])]);
    // Forgotten topics exist from v7 on; the schema walks them only there.
    for v in 7..=18 {
        check(&FETCH, v, &enc(&f, v)).unwrap_or_else(|e| panic!("fetch v{v}: {e}"));
    }
    agrees(
        &FETCH,
        &FetchRequest::default().with_topics(vec![
            FetchTopic::default().with_partitions(vec![FetchPartition::default()])
        ]),
    );
    agrees(
        &LIST_OFFSETS,
        &ListOffsetsRequest::default().with_topics(vec![
            ListOffsetsTopic::default().with_partitions(vec![ListOffsetsPartition::default()])
        ]),
    );
}

#[test]
fn metadata_and_groups() {
    agrees(
        &METADATA,
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(s("a"))))
        ])),
    );
    agrees(
        &OFFSET_COMMIT,
        &OffsetCommitRequest::default().with_topics(vec![OffsetCommitRequestTopic::default()
            .with_partitions(vec![OffsetCommitRequestPartition::default()])]),
    );
    let old = OffsetFetchRequest::default().with_topics(Some(vec![
        OffsetFetchRequestTopic::default().with_partition_indexes(vec![0, 1])
    ]));
    for v in 1..=7 {
        check(&OFFSET_FETCH, v, &enc(&old, v)).unwrap_or_else(|e| panic!("offset fetch v{v}: {e}"));
    }
    let new = OffsetFetchRequest::default()
        .with_groups(vec![OffsetFetchRequestGroup::default().with_topics(Some(vec![
            OffsetFetchRequestTopics::default().with_partition_indexes(vec![4]),
        ]))]);
    for v in 8..=9 {
        check(&OFFSET_FETCH, v, &enc(&new, v)).unwrap_or_else(|e| panic!("offset fetch v{v}: {e}"));
    }
    let fc = FindCoordinatorRequest::default();
    for v in 0..=3 {
        check(&FIND_COORDINATOR, v, &enc(&fc, v)).unwrap();
    }
    let fc4 = fc.with_coordinator_keys(vec![s("g1"), s("g2")]);
    for v in 4..=6 {
        check(&FIND_COORDINATOR, v, &enc(&fc4, v)).unwrap();
    }
    agrees(
        &DESCRIBE_GROUPS,
        &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
    );
    agrees(
        &DELETE_GROUPS,
        &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]),
    );
}

#[test]
fn admin_and_transactions() {
    agrees(
        &CREATE_TOPICS,
        &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_assignments(vec![
                CreatableReplicaAssignment::default().with_broker_ids(vec![BrokerId(1)])
            ])
            .with_configs(vec![CreatableTopicConfig::default()])]),
    );
    let old = DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s("t"))]);
    for v in 1..=5 {
        check(&DELETE_TOPICS, v, &enc(&old, v)).unwrap();
    }
    check(
        &DELETE_TOPICS,
        6,
        &enc(
            &DeleteTopicsRequest::default().with_topics(vec![DeleteTopicState::default()]),
            6,
        ),
    )
    .unwrap();
    agrees(
        &OFFSET_FOR_LEADER_EPOCH,
        &OffsetForLeaderEpochRequest::default().with_topics(vec![
            OffsetForLeaderTopic::default().with_partitions(vec![OffsetForLeaderPartition::default()])
        ]),
    );
    let old = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default().with_partitions(vec![0])]);
    for v in 0..=3 {
        check(&ADD_PARTITIONS_TO_TXN, v, &enc(&old, v)).unwrap();
    }
    let new = AddPartitionsToTxnRequest::default()
        .with_transactions(vec![AddPartitionsToTxnTransaction::default()
            .with_topics(vec![AddPartitionsToTxnTopic::default().with_partitions(vec![0])])]);
    for v in 4..=5 {
        check(&ADD_PARTITIONS_TO_TXN, v, &enc(&new, v)).unwrap();
    }
    agrees(
        &TXN_OFFSET_COMMIT,
        &TxnOffsetCommitRequest::default().with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()])]),
    );
}

#[test]
fn lying_counts_fail_before_any_allocation() {
    // Metadata v4: topics count 0x7fffffff in a 5-byte body.
    assert!(check(&METADATA, 4, &[0x7f, 0xff, 0xff, 0xff, 1]).is_err());
    // Fetch v12 (compact): a topic count near u32::MAX.
    let mut b = vec![0u8; 4 * 4 + 1 + 8];
    b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(check(&FETCH, 12, &b).is_err());
    // Many tiny elements exceed the element budget.
    let n = (MAX_ELEMENTS + 1) as i32;
    let mut b = n.to_be_bytes().to_vec();
    b.extend(std::iter::repeat_n(0u8, (n as usize) * 4));
    b.push(0);
    assert!(check(&DESCRIBE_GROUPS, 0, &b).is_err());
}

#[test]
fn librdkafka_metadata_v12_with_trailing_zeros() {
    // Captured from librdkafka 2.16 (confluent-kafka): all topics, v12.
    check(&METADATA, 12, &[0, 0, 0, 0, 0, 0, 0]).unwrap();
}

#[test]
fn metadata_all_topics_every_version() {
    for v in 0..=13 {
        let m = MetadataRequest::default().with_topics(if v == 0 { Some(vec![]) } else { None });
        check(&METADATA, v, &enc(&m, v)).unwrap_or_else(|e| panic!("v{v}: {e} {:?}", enc(&m, v)));
    }
}

#[test]
fn acl_creations_and_filters() {
    use kafka_protocol::messages::create_acls_request::AclCreation;
    use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
    agrees(
        &CREATE_ACLS,
        &CreateAclsRequest::default().with_creations(vec![AclCreation::default()
            .with_resource_name(s("orders"))
            .with_principal(s("User:bob"))
            .with_host(s("*"))]),
    );
    agrees(
        &DELETE_ACLS,
        &DeleteAclsRequest::default().with_filters(vec![
            DeleteAclsFilter::default().with_resource_name_filter(Some(s("orders"))),
            DeleteAclsFilter::default(),
        ]),
    );
}

#[test]
fn describe_keys_answered_per_entry() {
    use kafka_protocol::messages::alter_replica_log_dirs_request::{
        AlterReplicaLogDir, AlterReplicaLogDirTopic,
    };
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    agrees(
        &DESCRIBE_PRODUCERS,
        &DescribeProducersRequest::default()
            .with_topics(vec![TopicRequest::default().with_partition_indexes(vec![0, 1])]),
    );
    agrees(
        &CONSUMER_GROUP_DESCRIBE,
        &ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("g"))]),
    );
    use kafka_protocol::messages::describe_topic_partitions_request as dtp;
    for cursor in [
        None,
        Some(dtp::Cursor::default().with_topic_name(TopicName(s("orders")))),
    ] {
        agrees(
            &DESCRIBE_TOPIC_PARTITIONS,
            &DescribeTopicPartitionsRequest::default()
                .with_topics(vec![
                    dtp::TopicRequest::default().with_name(TopicName(s("orders")))
                ])
                .with_cursor(cursor),
        );
    }
    agrees(
        &DESCRIBE_TRANSACTIONS,
        &DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(s("t"))]),
    );
    agrees(
        &ALTER_REPLICA_LOG_DIRS,
        &AlterReplicaLogDirsRequest::default().with_dirs(vec![AlterReplicaLogDir::default()
            .with_topics(vec![AlterReplicaLogDirTopic::default().with_partitions(vec![3])])]),
    );
}

#[test]
fn records_partitions_and_configs() {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::create_partitions_request::{
        CreatePartitionsAssignment, CreatePartitionsTopic,
    };
    use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::incremental_alter_configs_request as iac;
    agrees(
        &DELETE_RECORDS,
        &DeleteRecordsRequest::default().with_topics(vec![
            DeleteRecordsTopic::default().with_partitions(vec![DeleteRecordsPartition::default()])
        ]),
    );
    agrees(
        &CREATE_PARTITIONS,
        &CreatePartitionsRequest::default()
            .with_topics(vec![CreatePartitionsTopic::default().with_assignments(Some(
                vec![CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(1)])],
            ))]),
    );
    agrees(
        &DESCRIBE_CONFIGS,
        &DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default().with_configuration_keys(Some(vec![s("retention.ms")]))
        ]),
    );
    agrees(
        &ALTER_CONFIGS,
        &AlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default().with_configs(vec![AlterableConfig::default()])
        ]),
    );
    agrees(
        &INCREMENTAL_ALTER_CONFIGS,
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            iac::AlterConfigsResource::default().with_configs(vec![iac::AlterableConfig::default()])
        ]),
    );
}

#[test]
fn metadata_response_every_version() {
    use kafka_protocol::messages::metadata_response::*;
    let r = MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default().with_host(s("b-1"))])
        .with_topics(vec![MetadataResponseTopic::default()
            .with_name(Some(TopicName(s("t"))))
            .with_partitions(vec![MetadataResponsePartition::default()
                .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
                .with_isr_nodes(vec![BrokerId(1)])])]);
    for v in 0..=13 {
        let b = enc(&r, v);
        check_with(&METADATA_RESPONSE, v, &b, MAX_RESPONSE_ELEMENTS).unwrap_or_else(|e| panic!("v{v}: {e}"));
        assert!(check_with(&METADATA_RESPONSE, v, &b[..b.len() - 1], MAX_RESPONSE_ELEMENTS).is_err());
    }
    // A broker claiming 2^31 topics in a few bytes is refused before decoding.
    let mut lie = 0i32.to_be_bytes().to_vec(); // throttle (v3+)
    lie.extend_from_slice(&0i32.to_be_bytes()); // no brokers
    lie.extend_from_slice(&[0xff, 0xff]); // null cluster id
    lie.extend_from_slice(&1i32.to_be_bytes()); // controller
    lie.extend_from_slice(&i32::MAX.to_be_bytes()); // topics
    assert!(check_with(&METADATA_RESPONSE, 4, &lie, MAX_RESPONSE_ELEMENTS).is_err());
}

#[test]
fn fetch_known_tags_must_fill_their_size() {
    use kafka_protocol::messages::fetch_request::*;
    let f = FetchRequest::default()
        .with_cluster_id(Some(s("c-1")))
        .with_replica_state(ReplicaState::default().with_replica_id(BrokerId(3)))
        .with_topics(vec![FetchTopic::default().with_partitions(vec![
            FetchPartition::default()
                .with_replica_directory_id(uuid::Uuid::from_u128(9))
                .with_high_watermark(5),
        ])]);
    check(&FETCH, 18, &enc(&f, 18)).unwrap();
    // The cluster id tag (0) at the end: declared one byte short.
    let mut b = enc(&FetchRequest::default().with_cluster_id(Some(s("c-1"))), 12);
    // ... 01 (one tag) 00 (tag 0) 04 (size) 04 'c' '-' '1'
    let at = b.len() - 6;
    assert_eq!(&b[at..at + 2], &[0, 4]);
    b[at + 1] = 3;
    b.pop();
    assert!(check(&FETCH, 12, &b).is_err());
}

#[test]
fn list_groups_response_every_version() {
    use kafka_protocol::messages::list_groups_response::ListedGroup;
    let r = ListGroupsResponse::default()
        .with_groups(vec![ListedGroup::default().with_group_id(GroupId(s("g")))]);
    for v in 0..=5 {
        let b = enc(&r, v);
        check_with(&LIST_GROUPS_RESPONSE, v, &b, MAX_RESPONSE_ELEMENTS)
            .unwrap_or_else(|e| panic!("v{v}: {e}"));
        assert!(check_with(&LIST_GROUPS_RESPONSE, v, &b[..b.len() - 1], MAX_RESPONSE_ELEMENTS).is_err());
    }
}
