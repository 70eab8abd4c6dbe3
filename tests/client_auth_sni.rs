//! Client SASL on the SNI port (SASL_SSL), in front of the Rust mock
//! cluster: before authentication kgate answers ApiVersions and SASL
//! itself and closes on anything else; after it, both the bootstrap name
//! and a broker's pattern name forward to the cluster.

mod common;

use bytes::Bytes;
use common::mock_cluster::MockCluster;
use common::sni::{pki, BOOT};
use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kgate::config::{ClientAuthConfig, ClientMechanism, Config};
use kgate::downstream::sasl::users::{add_user, Hash};
use std::path::Path;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The shared SNI config, with kgate's client SASL (PLAIN, user alice).
fn config(cluster: &MockCluster, dir: &Path, sni_port: u16) -> Config {
    let mut c = common::sni::config(cluster, dir, sni_port);
    let users = dir.join("users.toml");
    add_user(&users, "alice", Hash::Sha512, b"alice-pw", 4096).unwrap();
    c.client_auth = Some(ClientAuthConfig {
        mechanisms: vec![ClientMechanism::Plain],
        users_file: Some(users),
        session_lifetime_ms: None,
        auth_timeout: std::time::Duration::from_secs(5),
        oauthbearer: None,
    });
    c
}

async fn tls(dir: &Path, port: u16, name: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
    common::sni::tls(dir, port, name).await.unwrap()
}

/// One request; `None` when kgate closed the connection instead.
async fn tcall<S, Req, Resp>(s: &mut S, key: ApiKey, v: i16, corr: i32, req: &Req) -> Option<Resp>
where
    S: AsyncRead + AsyncWrite + Unpin,
    Req: Encodable,
    Resp: Decodable,
{
    s.write_all(&request_frame(key, v, corr, req)).await.ok()?;
    s.flush().await.ok()?;
    let mut len = [0u8; 4];
    tokio::time::timeout(TIMEOUT, s.read_exact(&mut len))
        .await
        .unwrap()
        .ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.ok()?;
    let mut f = len.to_vec();
    f.extend_from_slice(&body);
    let (c, m) = decode_response(key, v, &Bytes::from(f));
    assert_eq!(c, corr);
    Some(m)
}

async fn login<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, password: &[u8]) -> i16 {
    let hs: SaslHandshakeResponse = tcall(
        s,
        ApiKey::SaslHandshake,
        1,
        1,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
    )
    .await
    .unwrap();
    assert_eq!(hs.error_code, 0);
    let msg = [b"\0alice\0".as_slice(), password].concat();
    let a: SaslAuthenticateResponse = tcall(
        s,
        ApiKey::SaslAuthenticate,
        2,
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(msg)),
    )
    .await
    .unwrap();
    a.error_code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_on_the_sni_port() {
    let dir = pki(&[BOOT, "*.kafka.example.internal"]);
    let cluster = MockCluster::start().await;
    let port = free_port_base(1);
    let _kg = start_with(config(&cluster, dir.path(), port)).await;
    let md = MetadataRequest::default().with_topics(None);

    let mut s = tls(dir.path(), port, BOOT).await;
    let r: Option<MetadataResponse> = tcall(&mut s, ApiKey::Metadata, 12, 1, &md).await;
    assert!(
        r.is_none(),
        "a request before authentication closes the connection"
    );

    let mut s = tls(dir.path(), port, BOOT).await;
    assert_eq!(login(&mut s, b"wrong").await, 58, "SASL_AUTHENTICATION_FAILED");

    let mut s = tls(dir.path(), port, BOOT).await;
    let av: ApiVersionsResponse = tcall(&mut s, ApiKey::ApiVersions, 3, 9, &ApiVersionsRequest::default())
        .await
        .unwrap();
    assert!(av.api_keys.iter().any(|k| k.api_key == 36 && k.max_version == 2));
    assert_eq!(login(&mut s, b"alice-pw").await, 0);
    let m: MetadataResponse = tcall(&mut s, ApiKey::Metadata, 12, 3, &md).await.unwrap();
    assert_eq!(m.brokers.len(), 3);
    let b1 = m.brokers.iter().find(|b| b.node_id.0 == 1).unwrap();

    let mut s = tls(dir.path(), port, &b1.host).await;
    assert_eq!(
        login(&mut s, b"alice-pw").await,
        0,
        "a broker name authenticates too"
    );
    let m: MetadataResponse = tcall(&mut s, ApiKey::Metadata, 12, 3, &md).await.unwrap();
    assert_eq!(m.brokers.len(), 3);
}
