//! TLS failures described so an operator can act on them: one place for
//! both sides (client TLS and broker TLS) and for the frame reader.

/// Turns a TLS error into a cause an operator can act on.
pub fn describe_io(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(r) => describe(r),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "peer closed the connection during the handshake (it may not speak TLS, or rejected us)".into()
        }
        None => e.to_string(),
    }
}

pub fn describe(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    match e {
        E::InvalidCertificate(C::UnknownIssuer) => "unknown CA: the peer's certificate is not signed by a trusted CA (check ca_file)".into(),
        E::InvalidCertificate(C::NotValidForName) | E::InvalidCertificate(C::NotValidForNameContext { .. }) => {
            "name mismatch: the certificate is not valid for the broker's host name (check the name, or server_name)".into()
        }
        E::InvalidCertificate(C::Expired) | E::InvalidCertificate(C::ExpiredContext { .. }) => "certificate expired".into(),
        E::InvalidCertificate(C::NotValidYet) | E::InvalidCertificate(C::NotValidYetContext { .. }) => "certificate not valid yet (check clocks)".into(),
        E::InvalidCertificate(other) => format!("invalid certificate: {other:?}"),
        E::AlertReceived(A::CertificateRequired) => "certificate required: the peer demands a client certificate (set cert_file and key_file)".into(),
        E::AlertReceived(A::UnknownCA) => "unknown CA: the peer does not trust our client certificate".into(),
        E::AlertReceived(A::BadCertificate) => "bad certificate: the peer rejected our client certificate".into(),
        E::AlertReceived(A::CertificateExpired) => "expired: the peer says our client certificate expired".into(),
        E::AlertReceived(A::ProtocolVersion) | E::AlertReceived(A::HandshakeFailure) => {
            format!("protocol mismatch: the peer refused the handshake ({e})")
        }
        E::InvalidMessage(_) | E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
            format!("protocol mismatch: the peer does not speak TLS as expected ({e})")
        }
        other => other.to_string(),
    }
}
