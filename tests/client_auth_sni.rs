//! Client SASL on the SNI port (SASL_SSL), in front of the Rust mock
//! cluster: before authentication kgate answers ApiVersions and SASL
//! itself and closes on anything else; after it, both the bootstrap name
//! and a broker's pattern name forward to the cluster.

mod common;

use bytes::Bytes;
use common::mock_cluster::MockCluster;
use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kgate::config::listeners::{sni, FileSni};
use kgate::config::{ClientAuthConfig, ClientMechanism, Config, DownstreamTlsConfig};
use kgate::downstream::sasl::users::{add_user, Hash};
use rustls::pki_types::ServerName;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const BOOT: &str = "bootstrap.kafka.example.internal";

fn pki(dir: &Path) {
    let gen = concat!(env!("CARGO_MANIFEST_DIR"), "/certs-dev/gen.sh");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("bash")
            .arg(gen)
            .args(args)
            .output()
            .expect("bash runs certs-dev/gen.sh (needs openssl)");
        assert!(
            out.status.success(),
            "gen.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let d = dir.to_str().unwrap();
    run(&[d]);
    run(&["--issue", d, "sni", "server", BOOT, "*.kafka.example.internal"]);
}

fn config(cluster: &MockCluster, dir: &Path, sni_port: u16) -> Config {
    let mut c = Config::with_bootstrap(vec![hp(cluster.addr(1))]);
    c.port_base = free_port_base(8);
    c.admin_listen = None;
    c.upstream_hosts = Some(vec!["*".into()]);
    c.downstream_tls = Some(DownstreamTlsConfig {
        cert_file: dir.join("sni.pem"),
        key_file: dir.join("sni.key"),
        passphrase: None,
        client_ca_file: None,
        allowed_subjects: vec![],
        principal: None,
    });
    c.sni = sni(
        FileSni {
            listen: Some(format!("127.0.0.1:{sni_port}")),
            bootstrap_name: Some(BOOT.into()),
            broker_pattern: Some("b-{node_id}.kafka.example.internal".into()),
            advertised_port: None,
            proxy_protocol: None,
        },
        true,
    )
    .unwrap();
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
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    kgate::tls::install_provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await
        .unwrap()
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
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
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
