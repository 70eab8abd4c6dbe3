//! DescribeProducers, ConsumerGroupDescribe, DescribeTransactions and
//! AlterReplicaLogDirs: denied entries are answered, never a disconnect.

use super::*;
use kafka_protocol::messages::alter_replica_log_dirs_request::{AlterReplicaLogDir, AlterReplicaLogDirTopic};
use kafka_protocol::messages::describe_producers_request::TopicRequest;

fn alice() -> TestConn {
    TestConn::as_principal("alice")
}

#[test]
fn describe_producers_per_topic() {
    let p = policy(RULES);
    let topics = |names: &[&str]| {
        DescribeProducersRequest::default().with_topics(
            names
                .iter()
                .map(|n| {
                    TopicRequest::default()
                        .with_name(TopicName(s(n)))
                        .with_partition_indexes(vec![0, 3])
                })
                .collect(),
        )
    };
    let b = answer(run(
        &p,
        &alice(),
        ApiKey::DescribeProducers,
        0,
        5,
        &topics(&["payments"]),
    ));
    let (corr, r): (i32, DescribeProducersResponse) = read(ApiKey::DescribeProducers, 0, &b);
    assert_eq!(corr, 5);
    let got: Vec<(String, i32, i16)> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |x| (t.name.to_string(), x.partition_index, x.error_code))
        })
        .collect();
    assert_eq!(got, vec![("payments".into(), 0, 29), ("payments".into(), 3, 29)]);
    // Mixed: the allowed topic goes on, the denied one is merged back.
    let fwd = replaced(run(
        &p,
        &alice(),
        ApiKey::DescribeProducers,
        0,
        6,
        &topics(&["orders.eu", "payments"]),
    ));
    let q: DescribeProducersRequest = read_req(ApiKey::DescribeProducers, 0, &fwd);
    assert_eq!(
        q.topics.iter().map(|t| t.name.to_string()).collect::<Vec<_>>(),
        vec!["orders.eu"]
    );
    assert!(matches!(
        run(
            &p,
            &alice(),
            ApiKey::DescribeProducers,
            0,
            7,
            &topics(&["orders.eu"])
        ),
        RequestVerdict::Pass
    ));
}

#[test]
fn consumer_group_describe_per_group() {
    let p = policy(RULES);
    for v in 0..=1 {
        let q = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("payments-app"))]);
        let b = answer(run(&p, &alice(), ApiKey::ConsumerGroupDescribe, v, 8, &q));
        let (corr, r): (i32, ConsumerGroupDescribeResponse) = read(ApiKey::ConsumerGroupDescribe, v, &b);
        assert_eq!((corr, r.groups.len()), (8, 1));
        assert_eq!(
            (r.groups[0].group_id.to_string(), r.groups[0].error_code),
            ("payments-app".into(), 30)
        );
        let mixed = ConsumerGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(s("orders-app")), GroupId(s("payments-app"))]);
        let fwd = replaced(run(&p, &alice(), ApiKey::ConsumerGroupDescribe, v, 9, &mixed));
        let q: ConsumerGroupDescribeRequest = read_req(ApiKey::ConsumerGroupDescribe, v, &fwd);
        assert_eq!(q.group_ids, vec![GroupId(s("orders-app"))]);
    }
}

#[test]
fn describe_transactions_per_id() {
    let p = policy(RULES);
    let q = DescribeTransactionsRequest::default()
        .with_transactional_ids(vec![TransactionalId(s("bob-1")), TransactionalId(s("carol-2"))]);
    let b = answer(run(&p, &alice(), ApiKey::DescribeTransactions, 0, 10, &q));
    let (_, r): (i32, DescribeTransactionsResponse) = read(ApiKey::DescribeTransactions, 0, &b);
    assert_eq!(
        r.transaction_states
            .iter()
            .map(|t| t.error_code)
            .collect::<Vec<_>>(),
        vec![53, 53]
    );
    let own =
        DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(s("alice-1"))]);
    assert!(matches!(
        run(&p, &alice(), ApiKey::DescribeTransactions, 0, 11, &own),
        RequestVerdict::Pass
    ));
}

#[test]
fn alter_replica_log_dirs_is_the_cluster_gate() {
    let p = policy(RULES);
    let q = AlterReplicaLogDirsRequest::default().with_dirs(vec![AlterReplicaLogDir::default()
        .with_path(s("/data/b"))
        .with_topics(vec![AlterReplicaLogDirTopic::default()
            .with_name(TopicName(s("orders.eu")))
            .with_partitions(vec![1, 2])])]);
    for v in 1..=2 {
        let b = answer(run(&p, &alice(), ApiKey::AlterReplicaLogDirs, v, 12, &q));
        let (corr, r): (i32, AlterReplicaLogDirsResponse) = read(ApiKey::AlterReplicaLogDirs, v, &b);
        assert_eq!(corr, 12);
        assert_eq!(
            r.results[0]
                .partitions
                .iter()
                .map(|x| x.error_code)
                .collect::<Vec<_>>(),
            vec![31, 31]
        );
    }
    let admin = TestConn::as_principal("admin");
    assert!(matches!(
        run(&p, &admin, ApiKey::AlterReplicaLogDirs, 2, 13, &q),
        RequestVerdict::Pass
    ));
}

#[test]
fn describe_topic_partitions_per_topic() {
    use kafka_protocol::messages::describe_topic_partitions_request::TopicRequest;
    let p = policy(RULES);
    let q = |names: &[&str]| {
        DescribeTopicPartitionsRequest::default()
            .with_response_partition_limit(100)
            .with_topics(
                names
                    .iter()
                    .map(|n| TopicRequest::default().with_name(TopicName(s(n))))
                    .collect(),
            )
    };
    let b = answer(run(
        &p,
        &alice(),
        ApiKey::DescribeTopicPartitions,
        0,
        14,
        &q(&["payments"]),
    ));
    let (corr, r): (i32, DescribeTopicPartitionsResponse) = read(ApiKey::DescribeTopicPartitions, 0, &b);
    assert_eq!(corr, 14);
    assert_eq!(r.topics.len(), 1);
    assert_eq!(
        (
            r.topics[0].name.as_ref().map(|n| n.to_string()),
            r.topics[0].error_code
        ),
        (Some("payments".into()), 29)
    );
    let fwd = replaced(run(
        &p,
        &alice(),
        ApiKey::DescribeTopicPartitions,
        0,
        15,
        &q(&["orders.eu", "payments"]),
    ));
    let left: DescribeTopicPartitionsRequest = read_req(ApiKey::DescribeTopicPartitions, 0, &fwd);
    assert_eq!(
        left.topics.iter().map(|t| t.name.to_string()).collect::<Vec<_>>(),
        vec!["orders.eu"]
    );
    assert_eq!(left.response_partition_limit, 100);
}
