use super::*;
use crate::protocol::header::{peek_request_header, request_header_is_flexible, response_body_offset};
use crate::upstream::sasl::scram::{Hash as ClientHash, Scram};
use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{SaslAuthenticateResponse, SaslHandshakeResponse};
use kafka_protocol::protocol::Decodable;

fn server(dir: &std::path::Path, lifetime: Option<i64>) -> Server {
    let p = dir.join("users.toml");
    users::add_user(&p, "alice", Hash::Sha512, b"alice-pw", 4096).unwrap();
    users::add_user(&p, "bob", Hash::Sha256, b"bob-pw", 4096).unwrap();
    Server::new(&ClientAuthConfig {
        mechanisms: vec![
            ClientMechanism::ScramSha512,
            ClientMechanism::ScramSha256,
            ClientMechanism::Plain,
        ],
        users_file: Some(p),
        session_lifetime_ms: lifetime,
        auth_timeout: std::time::Duration::from_secs(10),
        oauthbearer: None,
    })
    .unwrap()
}

fn frame(api_key: i16, version: i16, body: &[u8]) -> (Vec<u8>, RequestHeader) {
    let mut b = BytesMut::new();
    b.put_i32(0);
    b.put_i16(api_key);
    b.put_i16(version);
    b.put_i32(11);
    b.put_i16(-1);
    if request_header_is_flexible(api_key, version) {
        b.put_u8(0);
    }
    b.put_slice(body);
    let n = (b.len() - 4) as i32;
    b[..4].copy_from_slice(&n.to_be_bytes());
    let h = peek_request_header(&b).unwrap();
    (b.to_vec(), h)
}

fn handshake(m: &str) -> (Vec<u8>, RequestHeader) {
    let mut body = (m.len() as i16).to_be_bytes().to_vec();
    body.extend_from_slice(m.as_bytes());
    frame(17, 1, &body)
}

fn auth(bytes: &[u8]) -> (Vec<u8>, RequestHeader) {
    let mut body = (bytes.len() as i32).to_be_bytes().to_vec();
    body.extend_from_slice(bytes);
    frame(36, 1, &body)
}

fn peer() -> Peer<'static> {
    Peer {
        listener: "test",
        client: "127.0.0.1:1".parse().unwrap(),
    }
}

fn run(
    s: &Server,
    sess: &mut Session,
    (f, h): (Vec<u8>, RequestHeader),
) -> (Reply, Option<SaslAuthenticateResponse>) {
    let r = s.on_request(sess, &h, &f, &peer());
    let decoded = (h.api_key == 36).then(|| {
        let off = response_body_offset(&r.response, 36, 1).unwrap();
        SaslAuthenticateResponse::decode(&mut r.response.slice(off..), 1).unwrap()
    });
    (r, decoded)
}

/// Drives a whole SCRAM exchange with kgate's own SCRAM client (whose
/// RFC 7677 vector test makes it a checked peer).
fn scram(
    s: &Server,
    sess: &mut Session,
    mech: &str,
    user: &str,
    pw: &str,
) -> (Reply, Option<SaslAuthenticateResponse>) {
    let h = if mech.ends_with("512") {
        ClientHash::Sha512
    } else {
        ClientHash::Sha256
    };
    let (r, _) = run(s, sess, handshake(mech));
    assert_eq!(r.outcome, Outcome::Continue);
    let mut c = Scram::new(h, user, pw, "clientnonce123".into());
    let (r, d) = run(s, sess, auth(&c.client_first()));
    if r.outcome != Outcome::Continue {
        return (r, d);
    }
    let fin = c.client_final(&d.unwrap().auth_bytes).unwrap();
    let (r, d) = run(s, sess, auth(&fin));
    if matches!(r.outcome, Outcome::Authenticated { .. }) {
        c.verify_server_final(&d.as_ref().unwrap().auth_bytes)
            .expect("the server signature verifies");
    }
    (r, d)
}

#[test]
fn scram_sha512_and_sha256_authenticate_and_a_wrong_password_fails() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), Some(5000));
    let mut sess = Session::default();
    let (r, d) = scram(&s, &mut sess, "SCRAM-SHA-512", "alice", "alice-pw");
    assert!(
        matches!(r.outcome, Outcome::Authenticated { ref principal, lifetime_ms: 5000 } if &**principal == "alice")
    );
    assert_eq!(d.unwrap().session_lifetime_ms, 5000);
    assert_eq!(sess.principal().as_deref(), Some("alice"));
    let (r, _) = scram(&s, &mut Session::default(), "SCRAM-SHA-256", "bob", "bob-pw");
    assert!(matches!(r.outcome, Outcome::Authenticated { .. }));
    let (r, d) = scram(&s, &mut Session::default(), "SCRAM-SHA-512", "alice", "wrong");
    assert!(matches!(r.outcome, Outcome::Failed(_)));
    assert_eq!(d.unwrap().error_code, SASL_AUTHENTICATION_FAILED);
    let (r, d) = scram(&s, &mut Session::default(), "SCRAM-SHA-512", "nobody", "x");
    assert!(matches!(r.outcome, Outcome::Failed(_)));
    assert_eq!(d.unwrap().error_code, SASL_AUTHENTICATION_FAILED);
}

#[test]
fn plain_checks_against_the_scram_entry() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), None);
    let mut sess = Session::default();
    run(&s, &mut sess, handshake("PLAIN"));
    let (r, d) = run(&s, &mut sess, auth(b"\0alice\0alice-pw"));
    assert!(matches!(r.outcome, Outcome::Authenticated { lifetime_ms: 0, .. }));
    assert_eq!(d.unwrap().error_code, 0);
    assert!(sess.expires.is_none(), "no lifetime configured: no expiry");
    let mut sess = Session::default();
    run(&s, &mut sess, handshake("PLAIN"));
    let (r, d) = run(&s, &mut sess, auth(b"\0alice\0nope"));
    assert!(matches!(r.outcome, Outcome::Failed(_)));
    let d = d.unwrap();
    assert_eq!(d.error_code, 58);
    assert!(
        !d.error_message.unwrap().contains("nope"),
        "the password is never echoed"
    );
}

#[test]
fn handshake_errors_list_the_mechanisms_and_refuse_v0() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), None);
    let mut sess = Session::default();
    let (r, _) = run(&s, &mut sess, handshake("GSSAPI"));
    assert!(matches!(r.outcome, Outcome::Failed(_)));
    let d = SaslHandshakeResponse::decode(&mut r.response.slice(8..), 1).unwrap();
    assert_eq!(d.error_code, UNSUPPORTED_SASL_MECHANISM);
    let names: Vec<&str> = d.mechanisms.iter().map(|m| &**m).collect();
    assert_eq!(names, ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]);
    let (f, h) = frame(17, 0, b"\x00\x05PLAIN");
    let r = s.on_request(&mut Session::default(), &h, &f, &peer());
    let d = SaslHandshakeResponse::decode(&mut r.response.slice(8..), 0).unwrap();
    assert_eq!(d.error_code, UNSUPPORTED_VERSION);
    let (r, d) = run(&s, &mut Session::default(), auth(b"\0alice\0alice-pw"));
    assert!(matches!(r.outcome, Outcome::Failed(_)));
    assert_eq!(
        d.unwrap().error_code,
        ILLEGAL_SASL_STATE,
        "authenticate before handshake"
    );
}

#[test]
fn reauthentication_keeps_the_principal_and_renews_the_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), Some(5000));
    let mut sess = Session::default();
    scram(&s, &mut sess, "SCRAM-SHA-512", "alice", "alice-pw");
    let first = sess.expires.unwrap();
    assert!(!sess.expired(Instant::now()));
    assert!(sess.expired(first));
    let (r, _) = scram(&s, &mut sess, "SCRAM-SHA-512", "alice", "alice-pw");
    assert!(matches!(r.outcome, Outcome::Authenticated { .. }));
    assert!(sess.expires.unwrap() >= first);
    let (r, _) = run(&s, &mut sess, handshake("SCRAM-SHA-256"));
    assert!(matches!(r.outcome, Outcome::Failed(ref w) if w.contains("same mechanism")));
    let mut sess = Session::default();
    scram(&s, &mut sess, "SCRAM-SHA-512", "alice", "alice-pw");
    run(&s, &mut sess, handshake("SCRAM-SHA-512"));
    let at = sess.expires.unwrap();
    assert!(
        sess.expired(at),
        "a handshake alone does not keep an expired session open"
    );
    let mut sess2 = Session::default();
    scram(&s, &mut sess2, "SCRAM-SHA-256", "bob", "bob-pw");
    sess2.authenticated = Some((ClientMechanism::ScramSha512, "alice".into()));
    let (r, _) = scram(&s, &mut sess2, "SCRAM-SHA-512", "alice", "alice-pw");
    assert!(matches!(r.outcome, Outcome::Authenticated { .. }));
    let mut sess3 = Session::default();
    scram(&s, &mut sess3, "SCRAM-SHA-512", "alice", "alice-pw");
    sess3.authenticated = Some((ClientMechanism::ScramSha512, "carol".into()));
    let (r, _) = scram(&s, &mut sess3, "SCRAM-SHA-512", "alice", "alice-pw");
    assert!(matches!(r.outcome, Outcome::Failed(ref w) if w.contains("Cannot change principals")));
}

#[test]
fn a_token_expiry_caps_the_lifetime() {
    assert_eq!(lifetime(None, Some(u64::MAX / 2000)), 0);
    assert_eq!(lifetime(Some(5000), None), 5000);
    assert_eq!(lifetime(Some(5000), Some(u64::MAX / 2000)), 5000);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let l = lifetime(Some(3_600_000), Some(now + 60));
    assert!((55_000..=60_000).contains(&l), "{l}");
}

#[test]
fn a_v2_failure_response_is_encoded() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), Some(5000));
    let mut sess = Session::default();
    run(&s, &mut sess, handshake("SCRAM-SHA-512"));
    let msg = b"n,,n=mallory,r=ab7b456f408e45668502c11e467a90ca";
    let mut body = vec![(msg.len() + 1) as u8];
    body.extend_from_slice(msg);
    body.push(0);
    let (f, h) = frame(36, 2, &body);
    let r = s.on_request(&mut sess, &h, &f, &peer());
    assert!(matches!(r.outcome, Outcome::Failed(_)));
    let off = response_body_offset(&r.response, 36, 2).unwrap();
    let d = SaslAuthenticateResponse::decode(&mut r.response.slice(off..), 2).unwrap();
    assert_eq!(d.error_code, SASL_AUTHENTICATION_FAILED);
}

#[test]
fn reload_picks_up_new_users_and_keeps_the_old_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), None);
    let p = dir.path().join("users.toml");
    users::add_user(&p, "carol", Hash::Sha512, b"carol-pw", 4096).unwrap();
    let mut sess = Session::default();
    run(&s, &mut sess, handshake("PLAIN"));
    let (r, _) = run(&s, &mut sess, auth(b"\0carol\0carol-pw"));
    assert!(matches!(r.outcome, Outcome::Failed(_)), "not before the reload");
    assert_eq!(s.reload().unwrap(), 3);
    let mut sess = Session::default();
    run(&s, &mut sess, handshake("PLAIN"));
    let (r, _) = run(&s, &mut sess, auth(b"\0carol\0carol-pw"));
    assert!(matches!(r.outcome, Outcome::Authenticated { .. }));
    std::fs::write(&p, "broken").unwrap();
    assert!(s.reload().is_err());
    assert_eq!(s.users(), 3, "a broken file keeps the loaded users");
}
