//! ListGroups, as Kafka answers it under an authorizer: the request goes
//! to the broker, and the response lists only the groups the principal
//! may `describe`.

use super::bounds;
use super::frame::{self, decode};
use crate::config::policy::{grants, op, Rules};
use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, ListGroupsResponse};

/// Drops the groups `rules` may not describe; `None`: unchanged.
pub fn response(rules: &Rules, frame: &[u8], version: i16) -> Result<Option<BytesMut>, String> {
    if rules.groups.is_none() {
        return Ok(None);
    }
    let key = ApiKey::ListGroups;
    let mut body = frame::response_body(frame, key, version)?;
    bounds::check_with(
        &bounds::LIST_GROUPS_RESPONSE,
        version,
        &body,
        bounds::MAX_RESPONSE_ELEMENTS,
    )
    .map_err(|e| e.to_string())?;
    let mut r: ListGroupsResponse = decode(&mut body, version)?;
    let before = r.groups.len();
    r.groups
        .retain(|g| grants(&rules.groups, &g.group_id, op::DESCRIBE));
    if r.groups.len() == before {
        return Ok(None);
    }
    frame::rebuild(frame, key, version, &r).map(Some)
}
