//! CreateAcls and DeleteAcls change who may do what on the cluster. They
//! name no topic, group or transactional id kgate checks, so the API-key
//! gate decides them whole (they are in the `admin` group). A denial is
//! still an answer: every creation or filter of the request gets
//! CLUSTER_AUTHORIZATION_FAILED, as Apache Kafka answers a principal
//! without the ALTER permission on the cluster, and the connection stays
//! open.

use super::bounds;
use super::frame::{decode, response_to, split};
use super::gate::{Gate, Outcome, CLUSTER_DENIED};
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn message() -> Option<StrBytes> {
    Some(StrBytes::from_static_str(
        "Cluster authorization failed (kgate policy).",
    ))
}

pub fn create_acls(g: &mut Gate, frame: &[u8]) -> Result<Outcome, String> {
    if g.api() {
        return Ok(Outcome::Pass);
    }
    let (h, mut b) = split(frame, &bounds::CREATE_ACLS)?;
    let req: CreateAclsRequest = decode(&mut b, h.version)?;
    let results = req
        .creations
        .iter()
        .map(|_| {
            AclCreationResult::default()
                .with_error_code(CLUSTER_DENIED)
                .with_error_message(message())
        })
        .collect();
    let resp = CreateAclsResponse::default().with_results(results);
    response_to(h.key, h.version, h.header.correlation_id, &resp).map(Outcome::Answer)
}

pub fn delete_acls(g: &mut Gate, frame: &[u8]) -> Result<Outcome, String> {
    if g.api() {
        return Ok(Outcome::Pass);
    }
    let (h, mut b) = split(frame, &bounds::DELETE_ACLS)?;
    let req: DeleteAclsRequest = decode(&mut b, h.version)?;
    let results = req
        .filters
        .iter()
        .map(|_| {
            DeleteAclsFilterResult::default()
                .with_error_code(CLUSTER_DENIED)
                .with_error_message(message())
        })
        .collect();
    let resp = DeleteAclsResponse::default().with_filter_results(results);
    response_to(h.key, h.version, h.header.correlation_id, &resp).map(Outcome::Answer)
}
