//! The one place that decides, from (api_key, version), what kgate does with
//! a request and its response. Everything not named here is refused.

use super::header::key;
use kafka_protocol::messages::ApiKey;

/// What happens to a response on its way back to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseAction {
    /// Forwarded byte for byte.
    PassThrough,
    /// Broker addresses inside are replaced with kgate listeners.
    Rewrite(RewriteKind),
    /// The advertised API list is filtered and capped.
    ApiVersions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewriteKind {
    Metadata,
    FindCoordinator,
    DescribeCluster,
    /// KIP-951 `node_endpoints` (tag 0) of Produce v10+.
    ProduceEndpoints,
    /// KIP-951 `node_endpoints` (tag 0) of Fetch v16+.
    FetchEndpoints,
}

/// What happens to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestAction {
    Forward(ResponseAction),
    /// SASL sent to a listener without client authentication: answered by
    /// kgate with an error, never forwarded.
    RefuseSasl,
    /// An ApiVersions version newer than kgate parses: answered by kgate
    /// with UNSUPPORTED_VERSION so the client retries lower.
    ApiVersionsTooNew,
    /// Not on the allow-list: the connection is closed.
    Reject(&'static str),
}

/// Keys that are broker-to-broker or controller-only, or whose responses
/// carry broker addresses kgate does not rewrite. Never offered to clients.
const DENIED: &[ApiKey] = &[
    ApiKey::WriteTxnMarkers,
    ApiKey::Vote,
    ApiKey::BeginQuorumEpoch,
    ApiKey::EndQuorumEpoch,
    ApiKey::AlterPartition,
    ApiKey::Envelope,
    ApiKey::FetchSnapshot,
    ApiKey::BrokerRegistration,
    ApiKey::BrokerHeartbeat,
    ApiKey::AllocateProducerIds,
    ApiKey::ControllerRegistration,
    ApiKey::AssignReplicasToDirs,
    ApiKey::AddRaftVoter,
    ApiKey::RemoveRaftVoter,
    ApiKey::UpdateRaftVoter,
    ApiKey::InitializeShareGroupState,
    ApiKey::ReadShareGroupState,
    ApiKey::WriteShareGroupState,
    ApiKey::DeleteShareGroupState,
    ApiKey::ReadShareGroupStateSummary,
    // KIP-932 share fetches carry node_endpoints that are not rewritten yet:
    // capping them out guarantees no broker address leaks.
    ApiKey::ShareFetch,
    ApiKey::ShareAcknowledge,
    // Without ShareFetch a share group is of no use to a client: offering
    // its other APIs would only invite a client to try.
    ApiKey::ShareGroupHeartbeat,
    ApiKey::ShareGroupDescribe,
    ApiKey::DescribeShareGroupOffsets,
    ApiKey::AlterShareGroupOffsets,
    ApiKey::DeleteShareGroupOffsets,
    // SASL toward the broker is kgate's own; a client's SASL is answered
    // by kgate (see the SASL filter), so it is never offered.
    ApiKey::SaslHandshake,
    ApiKey::SaslAuthenticate,
];

/// The versions kgate forwards for a key, or `None` if the key is refused.
/// The range is what kafka-protocol (Kafka 4.1 schemas) can parse, narrowed
/// where newer versions carry addresses kgate does not rewrite.
pub fn allowed_versions(api_key: i16) -> Option<(i16, i16)> {
    let k = ApiKey::try_from(api_key).ok()?;
    if DENIED.contains(&k) {
        return None;
    }
    let r = super::catalog::parseable_versions(k);
    if r.is_empty() {
        return None;
    }
    let max = match k {
        // v2 adds voter listener endpoints (host/port).
        ApiKey::DescribeQuorum => r.max.min(1),
        _ => r.max,
    };
    Some((r.min, max))
}

/// Decides what to do with a request and its response.
pub fn decide(api_key: i16, version: i16) -> RequestAction {
    if api_key == key::API_VERSIONS && version > 4 {
        return RequestAction::ApiVersionsTooNew;
    }
    if api_key == key::SASL_HANDSHAKE || api_key == key::SASL_AUTHENTICATE {
        return RequestAction::RefuseSasl;
    }
    let Some((min, max)) = allowed_versions(api_key) else {
        return RequestAction::Reject("api key is not on kgate's allow-list");
    };
    if version < min || version > max {
        return RequestAction::Reject("api version is outside kgate's allow-list");
    }
    RequestAction::Forward(response_action(api_key, version))
}

/// The response half of [`decide`] for an allowed request.
pub fn response_action(api_key: i16, version: i16) -> ResponseAction {
    use ResponseAction::*;
    match api_key {
        key::API_VERSIONS => ApiVersions,
        key::METADATA => Rewrite(RewriteKind::Metadata),
        key::FIND_COORDINATOR => Rewrite(RewriteKind::FindCoordinator),
        key::DESCRIBE_CLUSTER => Rewrite(RewriteKind::DescribeCluster),
        key::PRODUCE if version >= 10 => Rewrite(RewriteKind::ProduceEndpoints),
        key::FETCH if version >= 16 => Rewrite(RewriteKind::FetchEndpoints),
        _ => PassThrough,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka upgrades show up here: every key kafka-protocol knows is either
    /// allowed or listed as denied, and the address-carrying ones rewrite.
    #[test]
    fn every_known_key_has_a_decision() {
        let mut allowed = 0;
        for k in ApiKey::iter() {
            let id = k as i16;
            match allowed_versions(id) {
                Some((min, max)) => {
                    allowed += 1;
                    assert!(min <= max, "{k:?}");
                    assert!(max <= k.valid_versions().max);
                }
                None => assert!(DENIED.contains(&k), "{k:?}"),
            }
        }
        assert_eq!(allowed + DENIED.len(), ApiKey::iter().count());
        assert!(allowed >= 55, "only {allowed} keys allowed");
    }

    #[test]
    fn address_carrying_responses_are_rewritten() {
        use RewriteKind::*;
        for v in 0..=13 {
            assert_eq!(response_action(3, v), ResponseAction::Rewrite(Metadata));
        }
        assert_eq!(response_action(0, 9), ResponseAction::PassThrough);
        assert_eq!(response_action(0, 10), ResponseAction::Rewrite(ProduceEndpoints));
        assert_eq!(response_action(1, 15), ResponseAction::PassThrough);
        assert_eq!(response_action(1, 16), ResponseAction::Rewrite(FetchEndpoints));
        assert_eq!(
            decide(78, 1),
            RequestAction::Reject("api key is not on kgate's allow-list")
        );
        assert!(matches!(decide(55, 2), RequestAction::Reject(_)));
        assert!(matches!(decide(55, 1), RequestAction::Forward(_)));
        assert!(matches!(decide(1000, 0), RequestAction::Reject(_)));
        assert_eq!(decide(18, 5), RequestAction::ApiVersionsTooNew);
        assert_eq!(decide(17, 1), RequestAction::RefuseSasl);
    }
}
