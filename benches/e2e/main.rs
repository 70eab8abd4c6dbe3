//! End-to-end benchmark, proxy cost isolated: a fast mock broker and a Rust
//! load generator, run side by side in one process, against three paths:
//! direct, HAProxy (`mode tcp`, the L4 baseline) and kgate (release
//! binary, its own process). Plaintext, plaintext→TLS upstream and
//! TLS→TLS; 100 B and 10 KiB records; maximum rate and a fixed rate of 50%
//! of the direct maximum.
//!
//!     cargo build --release && cargo bench --bench e2e
//!
//! BENCH_SECS (default 2) sets each run's length. Results go to stdout and
//! benches/results/e2e.md.
//!
//! Plaintext runs also go through a second kgate with a topic policy for
//! connections without a principal (`[policy.default]`, topics `bench*`):
//! every Produce and Fetch request is then read whole and checked, and
//! the ×kgate column gives the policy's cost in the same run.

mod load;
mod mock;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use load::{Conn, Outcome};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

const CONNS: usize = 4;
const DEPTH: usize = 8;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sh(dir: &Path, args: &[&str]) {
    let ok = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl {args:?}");
}

/// A self-signed CA and a server certificate for 127.0.0.1/localhost.
fn certs(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    sh(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=bench-ca",
        ],
    );
    sh(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(dir.join("ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    sh(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext",
        ],
    );
    let pem = [
        std::fs::read(dir.join("server.pem")).unwrap(),
        std::fs::read(dir.join("server.key")).unwrap(),
    ]
    .concat();
    std::fs::write(dir.join("server-bundle.pem"), pem).unwrap();
}

fn server_tls(dir: &Path) -> Arc<rustls::ServerConfig> {
    let chain = kgate::tls::material::load_certs(&dir.join("server.pem")).unwrap();
    let key = kgate::tls::material::load_key(&dir.join("server.key"), None).unwrap();
    Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

fn client_tls(dir: &Path) -> tokio_rustls::TlsConnector {
    let roots = kgate::tls::material::load_roots(Some(&dir.join("ca.pem"))).unwrap();
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

struct Proc {
    child: Child,
}

impl Proc {
    fn cpu_secs(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        ticks / 100.0
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_port(port: u16) {
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing listens on {port}");
}

async fn kgate(upstream: SocketAddr, extra: &[String]) -> (Proc, u16) {
    let bin = std::env::var("KGATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target/release/kgate"));
    assert!(bin.exists(), "build kgate first: cargo build --release");
    let pb = free_port();
    let child = Command::new(bin)
        .args([
            "run",
            "--bootstrap",
            &upstream.to_string(),
            "--port-base",
            &pb.to_string(),
            "--admin-listen",
            "off",
        ])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_port(pb).await;
    (Proc { child }, pb)
}

fn haproxy(dir: &Path, routes: &[(u16, String)]) -> Option<Proc> {
    let mut cfg = String::from(
        "global\n  maxconn 4096\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n",
    );
    for (i, (port, server)) in routes.iter().enumerate() {
        let _ = write!(
            cfg,
            "listen l{i}\n  bind 127.0.0.1:{port}\n  server s{i} {server}\n"
        );
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    Some(Proc { child })
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Plain,
    TlsUpstream,
    TlsBoth,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plaintext → plaintext",
            Mode::TlsUpstream => "plaintext → TLS upstream",
            Mode::TlsBoth => "TLS → TLS upstream",
        }
    }
}

async fn connect(port: u16, tls: Option<&tokio_rustls::TlsConnector>) -> Conn {
    let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.set_nodelay(true).unwrap();
    match tls {
        Some(c) => Box::new(
            c.connect(rustls::pki_types::ServerName::try_from("localhost").unwrap(), s)
                .await
                .unwrap(),
        ),
        None => Box::new(s),
    }
}

async fn conns(port: u16, tls: Option<&tokio_rustls::TlsConnector>) -> Vec<Conn> {
    let mut v = Vec::new();
    for _ in 0..CONNS {
        v.push(connect(port, tls).await);
    }
    v
}

/// One Metadata v12 request through the policy kgate: its answer teaches
/// kgate the id of topic `bench`, which the Fetch requests name.
async fn learn_topic_id(port: u16) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = mock::frame(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
        true,
    );
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(&req).await.unwrap();
    let n = s.read_i32().await.unwrap();
    let mut body = vec![0u8; n as usize];
    s.read_exact(&mut body).await.unwrap();
}

fn requests(size: usize) -> (Bytes, Bytes, Bytes) {
    let n = (64 * 1024 / size).max(1);
    let blob = Bytes::from(vec![0x5au8; n * size]);
    let pd = produce_request::PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(blob.clone()));
    let td = produce_request::TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str("bench")))
        .with_partition_data(vec![pd]);
    let produce = mock::frame(
        ApiKey::Produce,
        mock::PRODUCE_V,
        &ProduceRequest::default().with_acks(1).with_topic_data(vec![td]),
        true,
    );
    let fp = fetch_request::FetchPartition::default().with_partition_max_bytes(8 << 20);
    let ft = fetch_request::FetchTopic::default()
        .with_topic_id(uuid::Uuid::from_u128(mock::TOPIC_ID))
        .with_partitions(vec![fp]);
    let fetch = mock::frame(
        ApiKey::Fetch,
        mock::FETCH_V,
        &FetchRequest::default()
            .with_max_bytes(8 << 20)
            .with_topics(vec![ft]),
        true,
    );
    (produce, fetch, blob)
}

struct Row {
    mode: &'static str,
    size: usize,
    workload: &'static str,
    path: &'static str,
    max: Outcome,
    fixed: Outcome,
    cpu_per_gb: Option<f64>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    kgate::tls::install_provider();
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let dur = Duration::from_secs_f64(secs);
    let dir = root().join("target/bench-tmp");
    certs(&dir);
    let stls = server_tls(&dir);
    let ctls = client_tls(&dir);
    let ca = dir.join("ca.pem").display().to_string();
    let mut rows: Vec<Row> = Vec::new();
    let have_haproxy = Command::new("haproxy").arg("-v").output().is_ok();

    for size in [100usize, 10 * 1024] {
        let (produce, fetch, blob) = requests(size);
        let plain = mock::start(blob.clone(), None).await;
        let tlsmock = mock::start(blob.clone(), Some(stls.clone())).await;
        let up_tls = vec![
            "--upstream-tls".into(),
            "true".into(),
            "--upstream-ca-file".into(),
            ca.clone(),
        ];
        let mut both = up_tls.clone();
        both.extend(["--downstream-tls", "true", "--downstream-cert-file"].map(String::from));
        both.push(dir.join("server.pem").display().to_string());
        both.push("--downstream-key-file".into());
        both.push(dir.join("server.key").display().to_string());
        let (kg_plain, p1) = kgate(plain, &[]).await;
        let policy_file = dir.join("policy.toml");
        std::fs::write(
            &policy_file,
            "[policy.default]\ntopics = [{ prefix = \"bench\", ops = [\"read\", \"write\", \"describe\"] }]\n",
        )
        .unwrap();
        let (kg_policy, p4) = kgate(plain, &["--config".into(), policy_file.display().to_string()]).await;
        learn_topic_id(p4).await;
        // The TLS mock's certificate names localhost and 127.0.0.1.
        let (kg_up, p2) = kgate(tlsmock, &up_tls).await;
        let (kg_both, p3) = kgate(tlsmock, &both).await;
        let (h1, h2, h3) = (free_port(), free_port(), free_port());
        let hap = if have_haproxy {
            haproxy(
                &dir,
                &[
                    (h1, format!("127.0.0.1:{}", plain.port())),
                    (h2, format!("127.0.0.1:{} ssl verify required ca-file {ca} sni str(localhost) verifyhost localhost", tlsmock.port())),
                    (h3, format!("127.0.0.1:{}", tlsmock.port())),
                ],
            )
        } else {
            None
        };
        if hap.is_some() {
            wait_port(h1).await;
        }
        for mode in [Mode::Plain, Mode::TlsUpstream, Mode::TlsBoth] {
            for (workload, req) in [("produce", &produce), ("fetch", &fetch)] {
                let (direct_port, direct_tls) = match mode {
                    Mode::Plain => (plain.port(), None),
                    _ => (tlsmock.port(), Some(&ctls)),
                };
                let (kg_proc, kg_port, kg_tls) = match mode {
                    Mode::Plain => (&kg_plain, p1, None),
                    Mode::TlsUpstream => (&kg_up, p2, None),
                    Mode::TlsBoth => (&kg_both, p3, Some(&ctls)),
                };
                let (hp_port, hp_tls) = match mode {
                    Mode::Plain => (h1, None),
                    Mode::TlsUpstream => (h2, None),
                    Mode::TlsBoth => (h3, Some(&ctls)),
                };
                let mut paths: Vec<(
                    &'static str,
                    u16,
                    Option<&tokio_rustls::TlsConnector>,
                    Option<&Proc>,
                )> = vec![
                    ("direct", direct_port, direct_tls, None),
                    ("kgate", kg_port, kg_tls, Some(kg_proc)),
                ];
                if hap.is_some() {
                    paths.insert(1, ("haproxy", hp_port, hp_tls, None));
                }
                if mode == Mode::Plain {
                    paths.push(("kgate+policy", p4, None, Some(&kg_policy)));
                }
                // Maximum rate on every path first; then one fixed rate that
                // every path can sustain: half the slowest maximum.
                let mut maxes = Vec::new();
                for (path, port, tls, proc_) in &paths {
                    let cpu0 = proc_.map(|p| p.cpu_secs());
                    let max = load::run(conns(*port, *tls).await, req.clone(), DEPTH, dur, None).await;
                    let cpu = proc_.map(|p| p.cpu_secs() - cpu0.unwrap_or(0.0));
                    maxes.push((*path, max, cpu));
                }
                let rate = maxes
                    .iter()
                    .map(|(_, m, _)| m.rps())
                    .fold(f64::INFINITY, f64::min)
                    * 0.5;
                for ((path, port, tls, _), (_, max, cpu)) in paths.iter().zip(maxes) {
                    let fixed =
                        load::run(conns(*port, *tls).await, req.clone(), DEPTH * 4, dur, Some(rate)).await;
                    let cpu_per_gb = cpu.map(|c| c / (max.bytes as f64 / 1e9));
                    eprintln!(
                        "{:26} {:>6}B {:8} {:8} {:>9.0} req/s {:>8.1} MB/s  fixed {:>7.0}/s p99 {:>7.1} µs",
                        mode.name(),
                        size,
                        workload,
                        path,
                        max.rps(),
                        max.mbps(),
                        fixed.rps(),
                        fixed.pct(0.99).unwrap_or(0.0)
                    );
                    rows.push(Row {
                        mode: mode.name(),
                        size,
                        workload,
                        path,
                        max,
                        fixed,
                        cpu_per_gb,
                    });
                }
            }
        }
        drop(hap);
        drop((kg_plain, kg_up, kg_both, kg_policy));
    }
    let md = report(&rows, secs, have_haproxy);
    println!("{md}");
    let out = root().join("benches/results");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("e2e.md"), md).unwrap();
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, {cpu}; {mem}; Linux {}", kernel.trim())
}

fn report(rows: &[Row], secs: f64, have_haproxy: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "## End to end, proxy cost isolated (mock broker, Rust load generator)\n"
    );
    let _ = writeln!(o, "Machine: {}\n", machine());
    let _ = writeln!(
        o,
        "Command: `cargo build --release && cargo bench --bench e2e` ({secs} s per run, {CONNS} connections, {DEPTH} requests in flight each at max rate; fixed rate = 50% of the slowest path's maximum, the same offered load on every path; latency from request write to response read). Produce v{} requests and Fetch v{} responses carry ~64 KiB of records. kgate runs as its own process (release build); HAProxy {} in `mode tcp`.\n",
        mock::PRODUCE_V,
        mock::FETCH_V,
        if have_haproxy { "(Debian package)" } else { "(not installed: rows missing)" }
    );
    let _ = writeln!(o, "| path | record | workload | via | max req/s | max MB/s | ×direct | ×haproxy | ×kgate | fixed req/s | p50 µs | p99 µs | p99.9 µs | p99 added vs direct µs | kgate CPU-s/GB |");
    let _ = writeln!(
        o,
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let find = |via: &str| {
            rows.iter()
                .find(|x| x.mode == r.mode && x.size == r.size && x.workload == r.workload && x.path == via)
        };
        let ratio = |via: &str| {
            find(via)
                .map(|b| format!("{:.3}", r.max.rps() / b.max.rps()))
                .unwrap_or_default()
        };
        let f = |p: f64| r.fixed.pct(p).map(|v| format!("{v:.0}")).unwrap_or_default();
        let added = match (r.fixed.pct(0.99), find("direct").and_then(|d| d.fixed.pct(0.99))) {
            (Some(a), Some(b)) if r.path != "direct" => format!("{:.0}", a - b),
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            "| {} | {} B | {} | {} | {:.0} | {:.1} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} |",
            r.mode,
            r.size,
            r.workload,
            r.path,
            r.max.rps(),
            r.max.mbps(),
            ratio("direct"),
            ratio("haproxy"),
            if r.path == "kgate+policy" {
                ratio("kgate")
            } else {
                String::new()
            },
            r.fixed.rps(),
            f(0.5),
            f(0.99),
            f(0.999),
            added,
            r.cpu_per_gb.map(|c| format!("{c:.2}")).unwrap_or_default()
        );
    }
    o
}
