//! The ApiVersions answer a client sees: the broker's list filtered to
//! what kgate forwards and can parse, capped per key.

use super::{Conn, Filter, FilterError, ResponseNeed};
use crate::protocol::api_versions::rewrite_api_versions;
use crate::protocol::header::{key, RequestHeader};
use bytes::BytesMut;

pub struct ApiVersions;

impl Filter for ApiVersions {
    fn name(&self) -> &'static str {
        "api_versions"
    }

    fn response_need(&self, api_key: i16, _version: i16) -> ResponseNeed {
        if api_key == key::API_VERSIONS {
            ResponseNeed::Whole
        } else {
            ResponseNeed::Skip
        }
    }

    fn on_response(
        &self,
        _conn: &dyn Conn,
        h: &RequestHeader,
        frame: &[u8],
    ) -> Result<Option<BytesMut>, FilterError> {
        rewrite_api_versions(frame, h.api_version)
            .map(Some)
            .map_err(|e| FilterError::MalformedResponse {
                api_key: h.api_key,
                api_version: h.api_version,
                cause: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::tests::TestConn;
    use crate::protocol::api_versions::{encode_api_versions, list_api_versions};
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::ApiVersionsResponse;

    #[test]
    fn offers_only_what_a_client_can_use() {
        let keys: Vec<ApiVersion> = [
            (0i16, 0i16, 13i16),
            (17, 0, 1),
            (36, 0, 2),
            (27, 0, 1),
            (76, 0, 1),
            (78, 0, 1),
            (3, 0, 13),
        ]
        .iter()
        .map(|(k, lo, hi)| {
            ApiVersion::default()
                .with_api_key(*k)
                .with_min_version(*lo)
                .with_max_version(*hi)
        })
        .collect();
        let resp = ApiVersionsResponse::default().with_api_keys(keys);
        let frame = encode_api_versions(3, &resp, 3);
        let h = RequestHeader {
            api_key: 18,
            api_version: 3,
            correlation_id: 3,
        };
        let out = ApiVersions
            .on_response(&TestConn::default(), &h, &frame)
            .unwrap()
            .unwrap();
        let offered: Vec<i16> = list_api_versions(&out, 3).unwrap().iter().map(|t| t.0).collect();
        // Produce and Metadata stay; SASL (refused here), WriteTxnMarkers,
        // and the share-group keys (ShareFetch is refused) are not offered.
        assert_eq!(offered, vec![0, 3]);
        assert_eq!(ApiVersions.response_need(18, 0), ResponseNeed::Whole);
        assert_eq!(ApiVersions.response_need(3, 0), ResponseNeed::Skip);
    }
}
