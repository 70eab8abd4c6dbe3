//! Bad input from either side closes only the connection concerned, with a
//! clear log line, while the process and a second, concurrent client keep
//! working. kgate runs as the real binary so its log and liveness are
//! observed from outside.

mod common;

use common::*;
use kafka_protocol::messages::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

struct Kgate {
    child: Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
    port_base: u16,
}

impl Kgate {
    fn start(upstream: std::net::SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("kgate.log");
        let port_base = free_port_base(4);
        let child = Command::new(env!("CARGO_BIN_EXE_kgate"))
            .args([
                "run",
                "--bootstrap",
                &upstream.to_string(),
                "--port-base",
                &port_base.to_string(),
            ])
            .args(["--max-frame-bytes", "1048576", "--admin-listen", "off"])
            .env("RUST_LOG", "kgate=debug")
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        Kgate {
            child,
            log,
            _dir: dir,
            port_base,
        }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits until the log holds a line with every one of `parts`.
    async fn logged(&self, parts: &[&str]) -> String {
        for _ in 0..200 {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(l) = text.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
                return l.to_string();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "no log line with {parts:?}:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    async fn connect(&self) -> TcpStream {
        for _ in 0..200 {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", self.port_base)).await {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("kgate did not listen");
    }
}

impl Drop for Kgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn client_id(f: &[u8]) -> String {
    let n = i16::from_be_bytes([f[12], f[13]]).max(0) as usize;
    String::from_utf8_lossy(&f[14..14 + n]).into_owned()
}

/// Answers normally, except for clients whose id asks for a lie.
async fn lying_upstream() -> std::net::SocketAddr {
    serve(|mut sock: TcpStream| async move {
        while let Some(f) = read_frame(&mut sock).await {
            let key = ApiKey::try_from(i16::from_be_bytes([f[4], f[5]])).unwrap();
            let v = i16::from_be_bytes([f[6], f[7]]);
            let corr = i32::from_be_bytes([f[8], f[9], f[10], f[11]]);
            let resp = match (client_id(&f).as_str(), key) {
                ("wrong-corr", _) => response_frame(key, v, corr + 1, &HeartbeatResponse::default()),
                ("bad-metadata", ApiKey::Metadata) => {
                    // Metadata v1: brokers array claims 2^31-1 entries in a tiny frame
                    let mut b = vec![0, 0, 0, 0];
                    b.extend_from_slice(&corr.to_be_bytes());
                    b.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff, 0, 0]);
                    let n = (b.len() - 4) as i32;
                    b[..4].copy_from_slice(&n.to_be_bytes());
                    bytes::Bytes::from(b)
                }
                (_, ApiKey::Heartbeat) => response_frame(key, v, corr, &HeartbeatResponse::default()),
                (_, _) => response_frame(key, v, corr, &MetadataResponse::default()),
            };
            let _ = sock.write_all(&resp).await;
        }
    })
    .await
}

fn heartbeat(corr: i32, id: &str) -> bytes::Bytes {
    request_frame_as(ApiKey::Heartbeat, 3, corr, id, &HeartbeatRequest::default())
}

async fn still_works(s: &mut TcpStream, corr: i32) {
    s.write_all(&heartbeat(corr, "healthy")).await.unwrap();
    let f = read_frame(s).await.expect("healthy connection answered");
    let (c, _m): (_, HeartbeatResponse) = decode_response(ApiKey::Heartbeat, 3, &f);
    assert_eq!(c, corr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_closes_only_its_own_connection() {
    let upstream = lying_upstream().await;
    let mut kg = Kgate::start(upstream);
    let mut healthy = kg.connect().await;
    still_works(&mut healthy, 1).await;

    let client_hello: &[u8] = &[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03];
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "garbage",
            b"hello, this is not kafka at all".to_vec(),
            &["first request of 1751477356 bytes exceeds the 524288-byte bound"],
        ),
        (
            "negative length",
            (-5i32).to_be_bytes().to_vec(),
            &["negative frame length -5"],
        ),
        (
            "2 GiB length",
            [0x80, 0, 0, 0].to_vec(),
            &["negative frame length -2147483648"],
        ),
        (
            "2 GiB - 1 length",
            [0x7f, 0xff, 0xff, 0xff].to_vec(),
            &["first request of 2147483647 bytes exceeds"],
        ),
        (
            "TLS ClientHello",
            client_hello.to_vec(),
            &["TLS ClientHello", "plaintext listener"],
        ),
        (
            "unknown api key",
            {
                let mut f = 8i32.to_be_bytes().to_vec();
                f.extend_from_slice(&[0x03, 0xe8, 0, 0, 0, 0, 0, 9]);
                f
            },
            &["api key 1000", "allow-list"],
        ),
        (
            "unknown version",
            {
                let mut f = request_frame(ApiKey::Metadata, 12, 5, &MetadataRequest::default()).to_vec();
                f[6..8].copy_from_slice(&99i16.to_be_bytes());
                f
            },
            &["api key 3 v99", "allow-list"],
        ),
        ("too short", [0, 0, 0, 2, 0, 0].to_vec(), &["too short"]),
    ];
    for (i, (name, bytes, expect)) in cases.into_iter().enumerate() {
        let mut bad = kg.connect().await;
        let peer = bad.local_addr().unwrap().to_string();
        bad.write_all(&bytes).await.unwrap();
        assert!(closed(&mut bad).await, "{name}: connection left open");
        let mut parts = expect.to_vec();
        parts.push(&peer);
        let line = kg.logged(&parts).await;
        assert!(
            line.contains("listener"),
            "{name}: log line lacks the listener: {line}"
        );
        assert!(kg.alive(), "{name}: process died");
        still_works(&mut healthy, 10 + i as i32).await;
    }

    // Truncated frame: the client sends half a frame and goes away.
    let mut bad = kg.connect().await;
    let peer = bad.local_addr().unwrap().to_string();
    bad.write_all(&[0, 0, 0, 100, 0, 3, 0, 1, 0, 0]).await.unwrap();
    bad.shutdown().await.unwrap();
    assert!(closed(&mut bad).await);
    kg.logged(&["in the middle of a frame", "10 of 104", &peer]).await;
    still_works(&mut healthy, 50).await;

    // The broker lies: a wrong correlation id.
    let mut bad = kg.connect().await;
    let peer = bad.local_addr().unwrap().to_string();
    bad.write_all(&heartbeat(77, "wrong-corr")).await.unwrap();
    assert!(closed(&mut bad).await);
    kg.logged(&["correlation id 78, expected 77", "api key 12", &peer])
        .await;
    still_works(&mut healthy, 51).await;

    // The broker lies: a Metadata response whose broker count is absurd.
    let mut bad = kg.connect().await;
    let peer = bad.local_addr().unwrap().to_string();
    let md = request_frame_as(
        ApiKey::Metadata,
        1,
        88,
        "bad-metadata",
        &MetadataRequest::default(),
    );
    bad.write_all(&md).await.unwrap();
    assert!(closed(&mut bad).await);
    kg.logged(&[
        "malformed response to api key 3 v1",
        "array length exceeds the frame",
        &peer,
    ])
    .await;
    still_works(&mut healthy, 52).await;

    // Many garbage connections at once: still alive, still serving.
    let mut handles = Vec::new();
    for i in 0..50u8 {
        let port = kg.port_base;
        handles.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let _ = s.write_all(&[i; 64]).await;
            closed(&mut s).await
        }));
    }
    for h in handles {
        assert!(h.await.unwrap());
    }
    assert!(kg.alive());
    still_works(&mut healthy, 53).await;
}
