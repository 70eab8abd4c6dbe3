//! acks=0 Produce requests get no response from the broker: the response
//! side must not wait for one. Only the start of a Produce frame is read.

use super::{Conn, Filter, FilterError, Need, RequestVerdict};
use crate::protocol::header::{key, peek_produce_acks, RequestHeader};

pub struct Acks;

impl Filter for Acks {
    fn name(&self) -> &'static str {
        "acks"
    }

    fn request_need(&self, api_key: i16, _version: i16) -> Need {
        if api_key == key::PRODUCE {
            Need::Head
        } else {
            Need::Skip
        }
    }

    fn on_request(
        &self,
        _conn: &dyn Conn,
        h: &RequestHeader,
        frame: &[u8],
    ) -> Result<RequestVerdict, FilterError> {
        let acks = peek_produce_acks(frame, h).map_err(|e| FilterError::MalformedRequest {
            api_key: h.api_key,
            cause: format!("cannot read Produce acks: {e}"),
        })?;
        Ok(if acks == 0 {
            RequestVerdict::NoResponse
        } else {
            RequestVerdict::Pass
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::tests::{produce_frame, TestConn};
    use crate::protocol::header::peek_request_header;

    #[test]
    fn acks_zero_expects_no_response() {
        let c = TestConn::default();
        for v in [3i16, 9, 13] {
            for (acks, none) in [(0i16, true), (1, false), (-1, false)] {
                let f = produce_frame(v, acks);
                let h = peek_request_header(&f).unwrap();
                let got = Acks.on_request(&c, &h, &f).unwrap();
                assert_eq!(
                    matches!(got, RequestVerdict::NoResponse),
                    none,
                    "v{v} acks {acks}"
                );
            }
        }
        assert_eq!(Acks.request_need(0, 9), Need::Head);
        assert_eq!(Acks.request_need(1, 9), Need::Skip);
    }

    #[test]
    fn a_cut_frame_is_an_error_not_a_guess() {
        let f = produce_frame(9, 0);
        let h = peek_request_header(&f).unwrap();
        assert!(Acks.on_request(&TestConn::default(), &h, &f[..14]).is_err());
    }
}
