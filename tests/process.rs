//! The real binary as a process: two one-liners side by side on one host,
//! memory that does not grow with the size of the frames it moves (with
//! and without splice), and claimed frame sizes that reserve nothing, under
//! an address-space limit.

mod common;

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Kgate(Child);

impl Drop for Kgate {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[String], log: &std::path::Path) -> Kgate {
    spawn_under(&[], args, log)
}

/// Runs kgate under `prefix` (e.g. `prlimit --as=N --`).
fn spawn_under(prefix: &[&str], args: &[String], log: &std::path::Path) -> Kgate {
    let mut c = match prefix.split_first() {
        Some((cmd, rest)) => {
            let mut c = Command::new(cmd);
            c.args(rest).arg(env!("CARGO_BIN_EXE_kgate"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_kgate")),
    };
    for (k, _) in std::env::vars() {
        if k.starts_with("KGATE_") {
            c.env_remove(k);
        }
    }
    let f = std::fs::File::create(log).unwrap();
    c.arg("run")
        .args(args)
        .env("RUST_LOG", "kgate=info")
        .stdout(Stdio::null())
        .stderr(f);
    Kgate(c.spawn().expect("kgate starts"))
}

/// Waits until `port` accepts, failing if the process exits first.
async fn wait_listening(k: &mut Kgate, port: u16, log: &std::path::Path) {
    for _ in 0..200 {
        if let Some(st) = k.0.try_wait().unwrap() {
            panic!(
                "kgate exited with {st}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "kgate never listened on {port}: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_one_liners_run_side_by_side() {
    let up = serve(|mut s: TcpStream| async move {
        while let Some(f) = read_frame(&mut s).await {
            let corr = i32::from_be_bytes([f[8], f[9], f[10], f[11]]);
            let v = i16::from_be_bytes([f[6], f[7]]);
            let _ = s
                .write_all(&response_frame(
                    ApiKey::Metadata,
                    v,
                    corr,
                    &MetadataResponse::default(),
                ))
                .await;
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut running = Vec::new();
    for i in 0..2 {
        let base = free_port_base(2);
        let log = dir.path().join(format!("kgate-{i}.log"));
        // Default admin settings: both want 127.0.0.1:9644.
        let args = vec![
            "--bootstrap".into(),
            format!("127.0.0.1:{}", up.port()),
            "--port-base".into(),
            base.to_string(),
        ];
        let mut k = spawn(&args, &log);
        wait_listening(&mut k, base, &log).await;
        running.push((k, base, log));
    }
    for (k, base, log) in &mut running {
        assert!(
            k.0.try_wait().unwrap().is_none(),
            "{}",
            std::fs::read_to_string(&*log).unwrap()
        );
        let mut s = TcpStream::connect(("127.0.0.1", *base)).await.unwrap();
        let r: MetadataResponse = call(&mut s, ApiKey::Metadata, 12, 1, &MetadataRequest::default()).await;
        assert!(r.brokers.is_empty());
    }
    // At most one has the admin port; any other says why it has none.
    let logs: Vec<String> = running
        .iter()
        .map(|(_, _, l)| std::fs::read_to_string(l).unwrap())
        .collect();
    let without = logs
        .iter()
        .filter(|l| l.contains("cannot bind the admin listener"))
        .count();
    assert!(without >= 1, "{logs:?}");
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Four consumers each receive 64 MiB Fetch responses through kgate: the
/// frames are cut through, so kgate's peak RSS stays far below one frame.
const FRAME: usize = 64 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_does_not_grow_with_frame_size() {
    fetch_burst(&[]).await;
}

/// Without splice every byte passes through kgate's own buffers, in
/// bounded chunks: still flat in the frame size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_does_not_grow_with_frame_size_without_splice() {
    fetch_burst(&["--splice", "false"]).await;
}

/// A broker that answers Metadata to anything but Fetch, and 64 MiB
/// Fetch responses.
async fn big_fetch_broker() -> std::net::SocketAddr {
    let body = Bytes::from(vec![0x33u8; FRAME]);
    serve(move |mut s: TcpStream| {
        let body = body.clone();
        async move {
            while let Some(f) = read_frame(&mut s).await {
                let corr = i32::from_be_bytes([f[8], f[9], f[10], f[11]]);
                if i16::from_be_bytes([f[4], f[5]]) != 1 {
                    let v = i16::from_be_bytes([f[6], f[7]]);
                    let m = response_frame(ApiKey::Metadata, v, corr, &MetadataResponse::default());
                    let _ = s.write_all(&m).await;
                    continue;
                }
                let part = fetch_response::PartitionData::default().with_records(Some(body.clone()));
                let t = fetch_response::FetchableTopicResponse::default().with_partitions(vec![part]);
                let r = FetchResponse::default().with_responses(vec![t]);
                if s.write_all(&response_frame(ApiKey::Fetch, 12, corr, &r))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    })
    .await
}

/// Four clients each take three 64 MiB Fetch responses through kgate;
/// its peak RSS stays within 16 MiB of idle.
async fn fetch_burst(extra: &[&str]) {
    let up = big_fetch_broker().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("kgate.log");
    let base = free_port_base(2);
    let mut args = vec![
        "--bootstrap".into(),
        format!("127.0.0.1:{}", up.port()),
        "--port-base".into(),
        base.to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut k = spawn(&args, &log);
    wait_listening(&mut k, base, &log).await;
    let pid = k.0.id();
    let idle = rss_kib(pid, "VmHWM:");
    let mut tasks = Vec::new();
    for c in 0..4 {
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(("127.0.0.1", base)).await.unwrap();
            let mut buf = vec![0u8; 256 * 1024];
            for corr in 0..3 {
                let req = request_frame(ApiKey::Fetch, 12, corr, &FetchRequest::default());
                s.write_all(&req).await.unwrap();
                let mut len = [0u8; 4];
                s.read_exact(&mut len).await.unwrap();
                let mut left = i32::from_be_bytes(len) as usize;
                assert!(left > FRAME, "client {c}");
                while left > 0 {
                    let k = left.min(buf.len());
                    let n = s.read(&mut buf[..k]).await.unwrap();
                    assert!(n > 0);
                    left -= n;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let peak = rss_kib(pid, "VmHWM:");
    eprintln!("kgate RSS {extra:?}: idle {idle} KiB, peak {peak} KiB after 768 MiB in 64 MiB frames");
    // A store-and-forward proxy would have peaked above 4 × 64 MiB.
    assert!(
        peak < idle + 16 * 1024,
        "kgate peaked at {peak} KiB (idle {idle} KiB)"
    );
}

fn vm_kib(pid: u32) -> u64 {
    rss_kib(pid, "VmSize:")
}

/// 500 clients each send a request header claiming 90 MiB and then
/// nothing more. A proxy that reserved what frames claim would need 44 GiB
/// of address space; kgate runs under a 2 GiB limit, keeps serving, and
/// its address space does not grow with the claims.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claimed_sizes_reserve_nothing_under_an_address_space_limit() {
    let up = big_fetch_broker().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("kgate.log");
    let base = free_port_base(2);
    let args = vec![
        "--bootstrap".into(),
        format!("127.0.0.1:{}", up.port()),
        "--port-base".into(),
        base.to_string(),
    ];
    let limit = format!("--as={}", 2u64 << 30);
    let mut k = spawn_under(&["prlimit", &limit, "--"], &args, &log);
    wait_listening(&mut k, base, &log).await;
    let pid = k.0.id();
    let before = vm_kib(pid);
    assert!(
        before < 1 << 20,
        "kgate's idle address space is {before} KiB, too close to the 2 GiB limit for this test"
    );
    let mut held = Vec::new();
    for corr in 0..500 {
        let mut s = TcpStream::connect(("127.0.0.1", base)).await.unwrap();
        // A valid first request opens the upstream; then the claim.
        let m = request_frame(ApiKey::Metadata, 1, 1, &MetadataRequest::default());
        s.write_all(&m).await.unwrap();
        assert!(
            read_frame(&mut s).await.is_some(),
            "client {corr}: Metadata answered"
        );
        let mut claim = (90i32 << 20).to_be_bytes().to_vec();
        claim.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 2, 0, 1, b'c', 0xff]);
        s.write_all(&claim).await.unwrap();
        held.push(s);
    }
    let mut fresh = TcpStream::connect(("127.0.0.1", base)).await.unwrap();
    let m = request_frame(ApiKey::Metadata, 1, 7, &MetadataRequest::default());
    fresh.write_all(&m).await.unwrap();
    assert!(
        read_frame(&mut fresh).await.is_some(),
        "a new client is served with 500 claims held: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(k.0.try_wait().unwrap().is_none(), "kgate is alive");
    let after = vm_kib(pid);
    eprintln!("kgate address space: {before} KiB idle, {after} KiB with 500 × 90 MiB claimed");
    assert!(
        after < before + (256 << 10),
        "address space grew from {before} to {after} KiB with the claims"
    );
    drop(held);
}
