//! The allow-list: every request's (api_key, version) against the decision
//! table. Refused keys close the connection; an ApiVersions newer than
//! kgate parses gets UNSUPPORTED_VERSION so the client retries lower.
//! SASL keys belong to the SASL filter in front of this one.

use super::{Conn, Filter, FilterError, Need, RequestVerdict};
use crate::protocol::api_versions::api_versions_too_new;
use crate::protocol::decision::{decide, RequestAction};
use crate::protocol::header::RequestHeader;
use tracing::debug;

pub struct AllowList;

impl Filter for AllowList {
    fn name(&self) -> &'static str {
        "allow_list"
    }

    fn request_need(&self, api_key: i16, version: i16) -> Need {
        match decide(api_key, version) {
            RequestAction::Forward(_) | RequestAction::RefuseSasl => Need::Skip,
            RequestAction::ApiVersionsTooNew | RequestAction::Reject(_) => Need::Header,
        }
    }

    fn on_request(
        &self,
        _conn: &dyn Conn,
        h: &RequestHeader,
        _frame: &[u8],
    ) -> Result<RequestVerdict, FilterError> {
        match decide(h.api_key, h.api_version) {
            RequestAction::ApiVersionsTooNew => {
                debug!(
                    version = h.api_version,
                    "ApiVersions newer than kgate parses; asking for a lower one"
                );
                Ok(RequestVerdict::Answer(api_versions_too_new(h.correlation_id)))
            }
            RequestAction::Reject(why) => Err(FilterError::Rejected {
                api_key: h.api_key,
                api_version: h.api_version,
                why,
            }),
            RequestAction::Forward(_) | RequestAction::RefuseSasl => Ok(RequestVerdict::Pass),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::tests::TestConn;

    fn h(api_key: i16, api_version: i16) -> RequestHeader {
        RequestHeader {
            api_key,
            api_version,
            correlation_id: 9,
        }
    }

    #[test]
    fn allowed_keys_are_not_even_looked_at() {
        assert_eq!(AllowList.request_need(0, 9), Need::Skip);
        assert_eq!(AllowList.request_need(1, 16), Need::Skip);
        assert_eq!(AllowList.request_need(18, 3), Need::Skip);
    }

    #[test]
    fn refused_keys_close_and_new_api_versions_is_answered() {
        let c = TestConn::default();
        assert_eq!(AllowList.request_need(27, 0), Need::Header);
        assert!(matches!(
            AllowList.on_request(&c, &h(27, 0), &[]),
            Err(FilterError::Rejected { api_key: 27, .. })
        ));
        assert!(AllowList.on_request(&c, &h(1000, 0), &[]).is_err());
        match AllowList.on_request(&c, &h(18, 9), &[]).unwrap() {
            RequestVerdict::Answer(b) => assert_eq!(&b[4..8], &9i32.to_be_bytes()),
            other => panic!("{other:?}"),
        }
    }
}
