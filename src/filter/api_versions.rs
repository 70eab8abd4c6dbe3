//! The ApiVersions answer a client sees: the broker's list filtered to
//! what kgate forwards and can parse, capped per key. With client SASL,
//! kgate's own SaslHandshake/SaslAuthenticate versions are offered too.
//! Each list is kept, so kgate can answer ApiVersions itself before an
//! upstream connection exists (client authentication).

use super::{Conn, Filter, FilterError, ResponseNeed};
use crate::protocol::api_versions::{list_api_versions, rewrite_api_versions_with};
use crate::protocol::header::{key, RequestHeader};
use crate::protocol::sasl_server::{VersionsCache, SASL_KEYS};
use bytes::BytesMut;
use std::sync::Arc;

#[derive(Default)]
pub struct ApiVersions {
    /// Where the filtered list is kept.
    pub cache: Option<Arc<VersionsCache>>,
    /// Offer kgate's client SASL keys.
    pub client_sasl: bool,
}

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
        let extra: &[(i16, i16, i16)] = if self.client_sasl { &SASL_KEYS } else { &[] };
        let out = rewrite_api_versions_with(frame, h.api_version, extra).map_err(|e| {
            FilterError::MalformedResponse {
                api_key: h.api_key,
                api_version: h.api_version,
                cause: e.to_string(),
            }
        })?;
        if let Some(c) = &self.cache {
            let ok = out.get(8..10).is_some_and(|e| e == [0, 0]);
            if let (true, Ok(list)) = (ok, list_api_versions(&out, h.api_version)) {
                c.store(list);
            }
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::tests::TestConn;
    use crate::protocol::api_versions::encode_api_versions;
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
        let cache = Arc::new(VersionsCache::default());
        let f = ApiVersions {
            cache: Some(cache.clone()),
            client_sasl: false,
        };
        let out = f.on_response(&TestConn::default(), &h, &frame).unwrap().unwrap();
        let offered: Vec<i16> = list_api_versions(&out, 3).unwrap().iter().map(|t| t.0).collect();
        // Produce and Metadata stay; SASL (refused here), WriteTxnMarkers,
        // and the share-group keys (ShareFetch is refused) are not offered.
        assert_eq!(offered, vec![0, 3]);
        let kept: Vec<i16> = cache.get().unwrap().iter().map(|t| t.0).collect();
        assert_eq!(
            kept,
            vec![0, 3],
            "the list is kept for answers before an upstream exists"
        );
        let sasl = ApiVersions {
            cache: None,
            client_sasl: true,
        };
        let out = sasl
            .on_response(&TestConn::default(), &h, &frame)
            .unwrap()
            .unwrap();
        let offered: Vec<(i16, i16, i16)> = list_api_versions(&out, 3).unwrap();
        assert_eq!(offered, vec![(0, 3, 13), (3, 0, 13), (17, 0, 1), (36, 0, 2)]);
        assert_eq!(f.response_need(18, 0), ResponseNeed::Whole);
        assert_eq!(f.response_need(3, 0), ResponseNeed::Skip);
    }
}
