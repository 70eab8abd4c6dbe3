//! The load generator: pipelined requests on several connections, at the
//! maximum rate or a fixed rate, with per-request latency.

use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

pub type Conn = Box<dyn Io>;

#[derive(Default, Debug, Clone)]
pub struct Outcome {
    pub responses: u64,
    pub bytes: u64,
    pub secs: f64,
    /// Latencies in nanoseconds (fixed-rate runs only).
    pub lat: Vec<u64>,
}

impl Outcome {
    pub fn rps(&self) -> f64 {
        self.responses as f64 / self.secs
    }
    pub fn mbps(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }
    pub fn pct(&self, p: f64) -> Option<f64> {
        if self.lat.is_empty() {
            return None;
        }
        let mut v = self.lat.clone();
        v.sort_unstable();
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        Some(v[i] as f64 / 1e3)
    }
}

/// Runs `conns` connections for `dur`. With `rate` (requests/s in total)
/// requests are paced and latencies recorded; without, each connection
/// keeps `depth` requests in flight.
pub async fn run(conns: Vec<Conn>, req: Bytes, depth: usize, dur: Duration, rate: Option<f64>) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let responses = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let lat = Arc::new(Mutex::new(Vec::new()));
    let n = conns.len();
    let start = Instant::now();
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for c in conns {
        let (mut rd, mut wr) = tokio::io::split(c);
        let sem = Arc::new(Semaphore::new(depth));
        let sent: Arc<Mutex<VecDeque<Instant>>> = Arc::default();
        let req_len = req.len() as u64;
        let (stop_w, sem_w, sent_w, req) = (stop.clone(), sem.clone(), sent.clone(), req.clone());
        let per_conn = rate.map(|r| Duration::from_secs_f64(n as f64 / r));
        writers.push(tokio::spawn(async move {
            let mut tick = per_conn.map(|p| {
                let mut i = tokio::time::interval(p);
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                i
            });
            while !stop_w.load(Relaxed) {
                match &mut tick {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => sem_w.acquire().await.unwrap().forget(),
                }
                sent_w.lock().unwrap().push_back(Instant::now());
                if wr.write_all(&req).await.is_err() {
                    return;
                }
            }
        }));
        let (stop_r, responses, bytes, lat) = (stop.clone(), responses.clone(), bytes.clone(), lat.clone());
        let record = rate.is_some();
        readers.push(tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(1 << 20);
            let mut mine = Vec::new();
            loop {
                while buf.len() >= 4 {
                    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize + 4;
                    if buf.len() < len {
                        buf.reserve(len - buf.len());
                        break;
                    }
                    buf.advance(len);
                    let t = sent.lock().unwrap().pop_front();
                    if record {
                        if let Some(t) = t {
                            mine.push(t.elapsed().as_nanos() as u64);
                        }
                    }
                    responses.fetch_add(1, Relaxed);
                    bytes.fetch_add(len as u64 + req_len, Relaxed);
                    sem.add_permits(1);
                }
                if stop_r.load(Relaxed) {
                    break;
                }
                match tokio::time::timeout(Duration::from_millis(200), rd.read_buf(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    _ => {}
                }
            }
            lat.lock().unwrap().extend(mine);
        }));
    }
    tokio::time::sleep(dur).await;
    let secs = start.elapsed().as_secs_f64();
    let out = Outcome {
        responses: responses.load(Relaxed),
        bytes: bytes.load(Relaxed),
        secs,
        lat: Vec::new(),
    };
    stop.store(true, Relaxed);
    for t in writers {
        t.abort();
    }
    for t in readers {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    let lat = std::mem::take(&mut *lat.lock().unwrap());
    Outcome { lat, ..out }
}
