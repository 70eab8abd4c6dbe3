//! The versions of every API that kafka-protocol can both encode and
//! decode: the intersection of the key's range and its request and
//! response types' ranges (they differ, e.g. OffsetCommit v10).

use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Message, VersionRange};

/// Calls `$m!` with every API: `Key => KeyRequest, KeyResponse;` for each
/// key kafka-protocol knows (Kafka 4.1 schemas).
#[macro_export]
macro_rules! for_every_api {
    ($m:ident) => {
        $m!(
        Produce => ProduceRequest, ProduceResponse;
        Fetch => FetchRequest, FetchResponse;
        ListOffsets => ListOffsetsRequest, ListOffsetsResponse;
        Metadata => MetadataRequest, MetadataResponse;
        OffsetCommit => OffsetCommitRequest, OffsetCommitResponse;
        OffsetFetch => OffsetFetchRequest, OffsetFetchResponse;
        FindCoordinator => FindCoordinatorRequest, FindCoordinatorResponse;
        JoinGroup => JoinGroupRequest, JoinGroupResponse;
        Heartbeat => HeartbeatRequest, HeartbeatResponse;
        LeaveGroup => LeaveGroupRequest, LeaveGroupResponse;
        SyncGroup => SyncGroupRequest, SyncGroupResponse;
        DescribeGroups => DescribeGroupsRequest, DescribeGroupsResponse;
        ListGroups => ListGroupsRequest, ListGroupsResponse;
        SaslHandshake => SaslHandshakeRequest, SaslHandshakeResponse;
        ApiVersions => ApiVersionsRequest, ApiVersionsResponse;
        CreateTopics => CreateTopicsRequest, CreateTopicsResponse;
        DeleteTopics => DeleteTopicsRequest, DeleteTopicsResponse;
        DeleteRecords => DeleteRecordsRequest, DeleteRecordsResponse;
        InitProducerId => InitProducerIdRequest, InitProducerIdResponse;
        OffsetForLeaderEpoch => OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse;
        AddPartitionsToTxn => AddPartitionsToTxnRequest, AddPartitionsToTxnResponse;
        AddOffsetsToTxn => AddOffsetsToTxnRequest, AddOffsetsToTxnResponse;
        EndTxn => EndTxnRequest, EndTxnResponse;
        WriteTxnMarkers => WriteTxnMarkersRequest, WriteTxnMarkersResponse;
        TxnOffsetCommit => TxnOffsetCommitRequest, TxnOffsetCommitResponse;
        DescribeAcls => DescribeAclsRequest, DescribeAclsResponse;
        CreateAcls => CreateAclsRequest, CreateAclsResponse;
        DeleteAcls => DeleteAclsRequest, DeleteAclsResponse;
        DescribeConfigs => DescribeConfigsRequest, DescribeConfigsResponse;
        AlterConfigs => AlterConfigsRequest, AlterConfigsResponse;
        AlterReplicaLogDirs => AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse;
        DescribeLogDirs => DescribeLogDirsRequest, DescribeLogDirsResponse;
        SaslAuthenticate => SaslAuthenticateRequest, SaslAuthenticateResponse;
        CreatePartitions => CreatePartitionsRequest, CreatePartitionsResponse;
        CreateDelegationToken => CreateDelegationTokenRequest, CreateDelegationTokenResponse;
        RenewDelegationToken => RenewDelegationTokenRequest, RenewDelegationTokenResponse;
        ExpireDelegationToken => ExpireDelegationTokenRequest, ExpireDelegationTokenResponse;
        DescribeDelegationToken => DescribeDelegationTokenRequest, DescribeDelegationTokenResponse;
        DeleteGroups => DeleteGroupsRequest, DeleteGroupsResponse;
        ElectLeaders => ElectLeadersRequest, ElectLeadersResponse;
        IncrementalAlterConfigs => IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse;
        AlterPartitionReassignments => AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse;
        ListPartitionReassignments => ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse;
        OffsetDelete => OffsetDeleteRequest, OffsetDeleteResponse;
        DescribeClientQuotas => DescribeClientQuotasRequest, DescribeClientQuotasResponse;
        AlterClientQuotas => AlterClientQuotasRequest, AlterClientQuotasResponse;
        DescribeUserScramCredentials => DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse;
        AlterUserScramCredentials => AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse;
        Vote => VoteRequest, VoteResponse;
        BeginQuorumEpoch => BeginQuorumEpochRequest, BeginQuorumEpochResponse;
        EndQuorumEpoch => EndQuorumEpochRequest, EndQuorumEpochResponse;
        DescribeQuorum => DescribeQuorumRequest, DescribeQuorumResponse;
        AlterPartition => AlterPartitionRequest, AlterPartitionResponse;
        UpdateFeatures => UpdateFeaturesRequest, UpdateFeaturesResponse;
        Envelope => EnvelopeRequest, EnvelopeResponse;
        FetchSnapshot => FetchSnapshotRequest, FetchSnapshotResponse;
        DescribeCluster => DescribeClusterRequest, DescribeClusterResponse;
        DescribeProducers => DescribeProducersRequest, DescribeProducersResponse;
        BrokerRegistration => BrokerRegistrationRequest, BrokerRegistrationResponse;
        BrokerHeartbeat => BrokerHeartbeatRequest, BrokerHeartbeatResponse;
        UnregisterBroker => UnregisterBrokerRequest, UnregisterBrokerResponse;
        DescribeTransactions => DescribeTransactionsRequest, DescribeTransactionsResponse;
        ListTransactions => ListTransactionsRequest, ListTransactionsResponse;
        AllocateProducerIds => AllocateProducerIdsRequest, AllocateProducerIdsResponse;
        ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse;
        ConsumerGroupDescribe => ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse;
        ControllerRegistration => ControllerRegistrationRequest, ControllerRegistrationResponse;
        GetTelemetrySubscriptions => GetTelemetrySubscriptionsRequest, GetTelemetrySubscriptionsResponse;
        PushTelemetry => PushTelemetryRequest, PushTelemetryResponse;
        AssignReplicasToDirs => AssignReplicasToDirsRequest, AssignReplicasToDirsResponse;
        ListConfigResources => ListConfigResourcesRequest, ListConfigResourcesResponse;
        DescribeTopicPartitions => DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse;
        ShareGroupHeartbeat => ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse;
        ShareGroupDescribe => ShareGroupDescribeRequest, ShareGroupDescribeResponse;
        ShareFetch => ShareFetchRequest, ShareFetchResponse;
        ShareAcknowledge => ShareAcknowledgeRequest, ShareAcknowledgeResponse;
        AddRaftVoter => AddRaftVoterRequest, AddRaftVoterResponse;
        RemoveRaftVoter => RemoveRaftVoterRequest, RemoveRaftVoterResponse;
        UpdateRaftVoter => UpdateRaftVoterRequest, UpdateRaftVoterResponse;
        InitializeShareGroupState => InitializeShareGroupStateRequest, InitializeShareGroupStateResponse;
        ReadShareGroupState => ReadShareGroupStateRequest, ReadShareGroupStateResponse;
        WriteShareGroupState => WriteShareGroupStateRequest, WriteShareGroupStateResponse;
        DeleteShareGroupState => DeleteShareGroupStateRequest, DeleteShareGroupStateResponse;
        ReadShareGroupStateSummary => ReadShareGroupStateSummaryRequest, ReadShareGroupStateSummaryResponse;
        DescribeShareGroupOffsets => DescribeShareGroupOffsetsRequest, DescribeShareGroupOffsetsResponse;
        AlterShareGroupOffsets => AlterShareGroupOffsetsRequest, AlterShareGroupOffsetsResponse;
        DeleteShareGroupOffsets => DeleteShareGroupOffsetsRequest, DeleteShareGroupOffsetsResponse;
        )
    };
}

/// Versions kgate can parse for `key`.
pub fn parseable_versions(key: ApiKey) -> VersionRange {
    macro_rules! arms {
        ($($k:ident => $req:ident, $resp:ident;)*) => {
            match key {
                $(ApiKey::$k => key
                    .valid_versions()
                    .intersect(&<$req as Message>::VERSIONS)
                    .intersect(&<$resp as Message>::VERSIONS),)*
            }
        };
    }
    crate::for_every_api!(arms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_never_wider_than_the_key() {
        let mut narrowed = Vec::new();
        for k in ApiKey::iter() {
            let p = parseable_versions(k);
            let v = k.valid_versions();
            assert!(p.min >= v.min && p.max <= v.max, "{k:?}");
            if p != v {
                narrowed.push(k);
            }
        }
        assert!(narrowed.contains(&ApiKey::OffsetCommit), "{narrowed:?}");
    }
}
