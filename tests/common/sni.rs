//! Support for the SNI tests: a dev PKI with the SNI names, a kgate
//! config with one SNI port in front of a mock cluster, and a TLS client
//! that sends a chosen server name.

use super::mock_cluster::MockCluster;
use super::*;
use kgate::config::listeners::{sni, FileSni};
use kgate::config::{Config, DownstreamTlsConfig};
use rustls::pki_types::ServerName;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub const BOOT: &str = "bootstrap.kafka.example.internal";
pub const SUFFIX: &str = ".kafka.example.internal";

pub fn pki(sans: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
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
    run(&[dir.path().to_str().unwrap()]);
    let mut args = vec!["--issue", dir.path().to_str().unwrap(), "sni", "server"];
    args.extend_from_slice(sans);
    run(&args);
    dir
}

pub fn config(cluster: &MockCluster, pki: &Path, sni_port: u16) -> Config {
    let mut c = Config::with_bootstrap(vec![hp(cluster.addr(1))]);
    c.port_base = free_port_base(8);
    c.admin_listen = None;
    c.upstream_hosts = Some(vec!["*".into()]);
    c.downstream_tls = Some(DownstreamTlsConfig {
        cert_file: pki.join("sni.pem"),
        key_file: pki.join("sni.key"),
        passphrase: None,
        client_ca_file: None,
        allowed_subjects: vec![],
        principal: None,
    });
    c.sni = sni(
        FileSni {
            listen: Some(format!("127.0.0.1:{sni_port}")),
            bootstrap_name: Some(BOOT.into()),
            broker_pattern: Some(format!("b-{{node_id}}{SUFFIX}")),
            advertised_port: None,
            proxy_protocol: None,
        },
        true,
    )
    .unwrap();
    c
}

pub async fn tls(
    pki: &Path,
    port: u16,
    name: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tls_over(pki, tcp, name).await
}

pub async fn tls_over(
    pki: &Path,
    tcp: TcpStream,
    name: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    kgate::tls::install_provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pki.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(name.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())
}

pub async fn tcall<S, Req, Resp>(s: &mut S, key: ApiKey, v: i16, corr: i32, req: &Req) -> Resp
where
    S: AsyncRead + AsyncWrite + Unpin,
    Req: Encodable,
    Resp: Decodable,
{
    s.write_all(&request_frame(key, v, corr, req)).await.unwrap();
    s.flush().await.unwrap();
    let mut len = [0u8; 4];
    tokio::time::timeout(TIMEOUT, s.read_exact(&mut len))
        .await
        .unwrap()
        .unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.unwrap();
    let mut f = len.to_vec();
    f.extend_from_slice(&body);
    let (c, m) = decode_response(key, v, &Bytes::from(f));
    assert_eq!(c, corr);
    m
}
