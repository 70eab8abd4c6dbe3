//! SaslHandshake and SaslAuthenticate on a listener that does not
//! authenticate clients: answered by kgate with the error each client
//! library reports as a SASL failure, never forwarded (the broker-side
//! SASL belongs to kgate).

use super::{Conn, Filter, FilterError, Need, RequestVerdict};
use crate::protocol::api_versions::refuse_sasl;
use crate::protocol::header::{key, RequestHeader};
use tracing::warn;

pub struct SaslRefusal;

impl Filter for SaslRefusal {
    fn name(&self) -> &'static str {
        "sasl_refusal"
    }

    fn request_need(&self, api_key: i16, _version: i16) -> Need {
        if api_key == key::SASL_HANDSHAKE || api_key == key::SASL_AUTHENTICATE {
            Need::Header
        } else {
            Need::Skip
        }
    }

    fn on_request(
        &self,
        conn: &dyn Conn,
        h: &RequestHeader,
        _frame: &[u8],
    ) -> Result<RequestVerdict, FilterError> {
        // Every connection of a misconfigured client says it again.
        if let Some(suppressed) = crate::logs::allow(&format!("client-sasl:{}", conn.listener())) {
            warn!(
                listener = conn.listener(),
                client = %conn.client(),
                api_key = h.api_key,
                suppressed,
                "client sent SASL to a listener without client authentication; answering with an error (configure the client with security.protocol=PLAINTEXT)"
            );
        }
        Ok(RequestVerdict::Answer(refuse_sasl(h)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::tests::TestConn;

    #[test]
    fn answers_both_sasl_keys_and_ignores_the_rest() {
        let f = SaslRefusal;
        assert_eq!(f.request_need(17, 1), Need::Header);
        assert_eq!(f.request_need(36, 2), Need::Header);
        assert_eq!(f.request_need(0, 9), Need::Skip);
        let h = RequestHeader {
            api_key: 17,
            api_version: 1,
            correlation_id: 5,
        };
        match f.on_request(&TestConn::default(), &h, &[]).unwrap() {
            RequestVerdict::Answer(b) => assert_eq!(&b[4..8], &5i32.to_be_bytes()),
            other => panic!("{other:?}"),
        }
    }
}
