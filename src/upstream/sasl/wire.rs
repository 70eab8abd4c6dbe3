//! SaslHandshake v1 and SaslAuthenticate v1 on the wire, and the transport
//! that carries them (the raw stream at connect time, the pump's channels
//! during re-authentication).

use crate::protocol::frame::LEN_PREFIX;
use crate::protocol::header::key;
use crate::protocol::wire::{Reader, WireResult};
use bytes::{BufMut, Bytes, BytesMut};

/// Correlation ids kgate owns: far from any client's counter.
pub const KGATE_CORRELATION_BASE: i32 = i32::MIN / 2;

pub fn handshake_request(correlation_id: i32, mechanism: &str) -> Bytes {
    let mut b = header(key::SASL_HANDSHAKE, correlation_id);
    b.put_i16(mechanism.len() as i16);
    b.put_slice(mechanism.as_bytes());
    finish(b)
}

pub fn authenticate_request(correlation_id: i32, auth_bytes: &[u8]) -> Bytes {
    let mut b = header(key::SASL_AUTHENTICATE, correlation_id);
    b.put_i32(auth_bytes.len() as i32);
    b.put_slice(auth_bytes);
    finish(b)
}

fn header(api_key: i16, correlation_id: i32) -> BytesMut {
    let mut b = BytesMut::with_capacity(256);
    b.put_i32(0);
    b.put_i16(api_key);
    b.put_i16(1);
    b.put_i32(correlation_id);
    b.put_i16(5);
    b.put_slice(b"kgate");
    b
}

fn finish(mut b: BytesMut) -> Bytes {
    let n = (b.len() - LEN_PREFIX) as i32;
    b[..LEN_PREFIX].copy_from_slice(&n.to_be_bytes());
    b.freeze()
}

/// SaslHandshake v1 response: (error_code, enabled mechanisms).
pub fn parse_handshake(frame: &[u8]) -> WireResult<(i16, Vec<String>)> {
    let mut r = Reader::at(frame, LEN_PREFIX + 4);
    let code = r.i16()?;
    let n = r.array_len(false, 2)?.unwrap_or(0);
    let mut mechs = Vec::with_capacity(n.min(16));
    for _ in 0..n {
        mechs.push(r.string()?.unwrap_or_default().to_string());
    }
    Ok((code, mechs))
}

#[derive(Debug)]
pub struct AuthResponse {
    pub error_code: i16,
    pub error_message: String,
    pub auth_bytes: Vec<u8>,
    pub session_lifetime_ms: i64,
}

/// SaslAuthenticate v1 response.
pub fn parse_authenticate(frame: &[u8]) -> WireResult<AuthResponse> {
    let mut r = Reader::at(frame, LEN_PREFIX + 4);
    let error_code = r.i16()?;
    let error_message = r.string()?.unwrap_or_default().to_string();
    let n = r.i32()?;
    let auth_bytes = if n > 0 {
        r.take(n as usize)?.to_vec()
    } else {
        Vec::new()
    };
    let hi = r.i32()? as i64;
    let lo = r.i32()? as u32 as i64;
    Ok(AuthResponse {
        error_code,
        error_message,
        auth_bytes,
        session_lifetime_ms: (hi << 32) | lo,
    })
}

/// Carries one request and returns its response frame.
pub trait Transport {
    fn round_trip(
        &mut self,
        request: Bytes,
        correlation_id: i32,
    ) -> impl std::future::Future<Output = Result<Bytes, String>> + Send;

    /// Next kgate-owned correlation id.
    fn next_correlation(&mut self) -> i32;

    fn handshake(
        &mut self,
        mechanism: &str,
    ) -> impl std::future::Future<Output = Result<(i16, Vec<String>), String>> + Send
    where
        Self: Send,
    {
        async move {
            let c = self.next_correlation();
            let f = self.round_trip(handshake_request(c, mechanism), c).await?;
            check_correlation(&f, c)?;
            parse_handshake(&f).map_err(|e| format!("malformed SaslHandshake response: {e}"))
        }
    }

    fn authenticate(
        &mut self,
        auth_bytes: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<AuthResponse, String>> + Send
    where
        Self: Send,
    {
        async move {
            let c = self.next_correlation();
            let f = self.round_trip(authenticate_request(c, &auth_bytes), c).await?;
            check_correlation(&f, c)?;
            parse_authenticate(&f).map_err(|e| format!("malformed SaslAuthenticate response: {e}"))
        }
    }
}

fn check_correlation(frame: &[u8], want: i32) -> Result<(), String> {
    let got = Reader::at(frame, LEN_PREFIX).i32().map_err(|e| e.to_string())?;
    if got != want {
        return Err(format!("response correlation id {got}, expected {want}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{RequestHeader, SaslAuthenticateRequest, SaslHandshakeRequest};
    use kafka_protocol::protocol::Decodable;

    #[test]
    fn requests_decode_with_kafka_protocol() {
        let f = handshake_request(-7, "AWS_MSK_IAM");
        let mut b = f.slice(4..);
        let h = RequestHeader::decode(&mut b, 1).unwrap();
        assert_eq!(
            (h.request_api_key, h.request_api_version, h.correlation_id),
            (17, 1, -7)
        );
        assert_eq!(
            SaslHandshakeRequest::decode(&mut b, 1)
                .unwrap()
                .mechanism
                .as_str(),
            "AWS_MSK_IAM"
        );
        let f = authenticate_request(9, b"hello");
        let mut b = f.slice(4..);
        RequestHeader::decode(&mut b, 1).unwrap();
        assert_eq!(
            &SaslAuthenticateRequest::decode(&mut b, 1).unwrap().auth_bytes[..],
            b"hello"
        );
    }

    #[test]
    fn responses_parse_and_lies_are_errors() {
        use kafka_protocol::messages::{ResponseHeader, SaslAuthenticateResponse};
        use kafka_protocol::protocol::{Encodable, StrBytes};
        let mut b = BytesMut::new();
        b.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(3)
            .encode(&mut b, 0)
            .unwrap();
        SaslAuthenticateResponse::default()
            .with_error_code(58)
            .with_error_message(Some(StrBytes::from_static_str("Access denied")))
            .with_auth_bytes(Bytes::from_static(b"xy"))
            .with_session_lifetime_ms(3_000_000_000)
            .encode(&mut b, 1)
            .unwrap();
        let f = finish(b);
        let r = parse_authenticate(&f).unwrap();
        assert_eq!(
            (
                r.error_code,
                r.error_message.as_str(),
                &r.auth_bytes[..],
                r.session_lifetime_ms
            ),
            (58, "Access denied", &b"xy"[..], 3_000_000_000)
        );
        for cut in 4..f.len() {
            assert!(parse_authenticate(&f[..cut]).is_err());
        }
        let lying = [0u8, 0, 0, 10, 0, 0, 0, 1, 0, 0, 0x7f, 0xff, 0xff, 0xff];
        assert!(parse_handshake(&lying).is_err());
    }
}
