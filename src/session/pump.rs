//! The pump: requests client → broker here, responses broker → client in
//! [`super::respond`], run concurrently so neither direction blocks the
//! other. The request side *is* the connection's state machine from
//! `Forwarding` on: each loop turn runs the arm of the current state, and
//! only [`Machine::on`] moves it.
//!
//! Each request's length and header are peeked; the chain's plan says how
//! much any filter needs. A frame nobody needs whole is cut through: what
//! is buffered goes at once and the rest is copied in bounded chunks.
//! Small frames already buffered leave together in one vectored write.

use super::batch::Batch;
use super::budget::Budget;
use super::context::Context;
use super::error::SessionError;
use super::inflight::{Pending, PumpInject};
use super::splice::{pass, AsTcp, Pipe};
use super::state::{Event, Machine, State};
use crate::config::CutoverOrder;
use crate::filter::{Chain, Need, RequestVerdict, HEAD_BYTES};
use crate::metrics;
use crate::protocol::frame::{CopyError, FrameReader};
use crate::protocol::header::{peek_request_header, produce_head_len, RequestHeader};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// Frames up to this size are assembled before forwarding (one write);
/// larger ones not yet buffered are cut through.
pub const CUT_THROUGH_MIN: usize = 64 * 1024;

/// Requests only a producer sends: Produce, InitProducerId,
/// AddPartitionsToTxn, EndTxn.
const PRODUCER_KEYS: [i16; 4] = [0, 22, 24, 26];
/// The fixed request header: size, api key, version, correlation id.
const HEADER: usize = 12;

/// Everything a pump needs besides the four stream halves.
pub struct Pump<'a> {
    pub ctx: &'a Context,
    pub chain: &'a Chain,
    pub budget: &'a Budget,
    pub max_frame: usize,
    pub max_in_flight: usize,
    /// Flips to true on shutdown: stop reading, drain, close.
    pub shutdown: watch::Receiver<bool>,
    /// The current cluster generation; when it moves away from
    /// `generation` (a cut-over), the connection drains and closes.
    pub cluster: watch::Receiver<u64>,
    pub generation: u64,
    /// Where the cut-over's order (`cutover_order`) is read when the
    /// cluster moves: the new cluster's settings decide.
    pub clusters: &'a crate::upstream::cluster::Clusters,
    pub idle_timeout: Option<Duration>,
    pub request_timeout: Duration,
    /// Splice cut-through bytes when both sides are plain TCP.
    pub splice: bool,
}

/// Runs both directions until either side ends. `Ok` means the client
/// closed cleanly or the drain finished.
pub async fn pump<CR, CW, UR, UW>(
    (client_r, first): (CR, bytes::BytesMut),
    client_w: CW,
    up_r: UR,
    up_w: UW,
    p: &Pump<'_>,
    machine: &mut Machine,
) -> Result<(), SessionError>
where
    CR: AsyncRead + Unpin + AsTcp,
    CW: AsyncWrite + Unpin + AsTcp,
    UR: AsyncRead + Unpin + AsTcp,
    UW: AsyncWrite + Unpin + Send + AsTcp,
{
    let (tx, rx) = mpsc::channel(p.max_in_flight);
    let in_flight = AtomicUsize::new(0);
    // The first request was read (and checked) before the upstream opened.
    let client = FrameReader::with_buffered(client_r, first, p.max_frame, 8);
    let upstream = FrameReader::new(up_r, p.max_frame, 4, false);
    let mut req = Requests {
        client,
        upstream: up_w,
        pipe: None,
        tx,
        in_flight: &in_flight,
        batch: Batch::default(),
        produced: false,
    };
    tokio::select! {
        r = req.run(p, machine) => r,
        r = super::respond::responses(upstream, client_w, rx, p, &in_flight) => r,
    }
}

pub(super) fn gone<T>(_: T) -> SessionError {
    SessionError::ResponseSideGone
}

fn copy_err(e: CopyError) -> SessionError {
    match e {
        CopyError::Read(f) => SessionError::ClientFrame(f),
        CopyError::Write(w) => SessionError::UpstreamIo(w),
    }
}

/// What ended a wait for the next request.
enum Wake {
    Frame(usize),
    ClientDone,
    Timer,
    Idle,
    Shutdown,
    ClusterChanged,
}

struct Requests<'a, R, W> {
    client: FrameReader<R>,
    upstream: W,
    pipe: Option<Pipe>,
    tx: mpsc::Sender<Pending>,
    in_flight: &'a AtomicUsize,
    batch: Batch,
    /// The client has sent Produce or a transactional producer request:
    /// at a `producers_first` cut-over it moves at once.
    produced: bool,
}

impl<R: AsyncRead + Unpin + AsTcp, W: AsyncWrite + Unpin + Send + AsTcp> Requests<'_, R, W> {
    /// The state machine from `Forwarding` to `Closed`.
    async fn run(&mut self, p: &Pump<'_>, m: &mut Machine) -> Result<(), SessionError> {
        let mut shutdown = p.shutdown.clone();
        let mut cluster = p.cluster.clone();
        let mut idle_at = p.idle_timeout.map(|d| Instant::now() + d);
        // Set when the cluster moved and this connection follows later.
        let mut drain_at: Option<Instant> = None;
        loop {
            match m.state() {
                State::Forwarding => match self
                    .wait(p, (&mut shutdown, &mut cluster), (idle_at, drain_at))
                    .await?
                {
                    Wake::Frame(total) => {
                        idle_at = p.idle_timeout.map(|d| Instant::now() + d);
                        self.forward(p, total).await?;
                        if drain_at.is_some() && self.produced {
                            m.on(Event::ClusterChanged)?;
                        }
                    }
                    Wake::ClientDone => {
                        m.on(Event::Ended)?;
                    }
                    Wake::Timer => {
                        m.on(Event::ReauthDue)?;
                    }
                    Wake::Idle if self.in_flight.load(Relaxed) > 0 => {
                        idle_at = p.idle_timeout.map(|d| Instant::now() + d);
                    }
                    Wake::Idle => return Err(SessionError::Idle(p.idle_timeout.unwrap_or_default())),
                    Wake::Shutdown => {
                        m.on(Event::ShutdownRequested)?;
                    }
                    Wake::ClusterChanged => match self.follow_later(p).filter(|_| drain_at.is_none()) {
                        Some(delay) => {
                            tracing::debug!(
                                generation = p.generation,
                                delay_ms = delay.as_millis() as u64,
                                "cluster switched: producers move first; this connection has not produced and follows later"
                            );
                            drain_at = Some(Instant::now() + delay);
                        }
                        None => {
                            tracing::debug!(
                                generation = p.generation,
                                "cluster switched: finishing in-flight requests, then closing"
                            );
                            m.on(Event::ClusterChanged)?;
                        }
                    },
                },
                State::PausedForReauth => {
                    // New requests stay unread (back-pressure); in-flight
                    // responses drain first, then the filters' own requests.
                    self.barrier().await?;
                    let mut io = PumpInject {
                        tx: &self.tx,
                        upstream: &mut self.upstream,
                    };
                    p.chain.run_timers(p.ctx, &mut io).await?;
                    m.on(Event::Reauthenticated)?;
                }
                State::Draining => {
                    self.barrier().await?;
                    m.on(Event::Ended)?;
                }
                State::Closed => return Ok(()),
                other => {
                    return Err(SessionError::State(format!("pump started in state {other}")));
                }
            }
        }
    }

    /// At a `producers_first` cut-over, how long a connection that has not
    /// produced stays on the old cluster.
    fn follow_later(&self, p: &Pump<'_>) -> Option<Duration> {
        match p.clusters.current().config.cutover_order {
            CutoverOrder::ProducersFirst { consumer_delay } if !self.produced => Some(consumer_delay),
            _ => None,
        }
    }

    /// Resolves once every earlier response reached the client.
    async fn barrier(&mut self) -> Result<(), SessionError> {
        let (done, drained) = oneshot::channel();
        self.tx.send(Pending::Barrier(done)).await.map_err(gone)?;
        drained.await.map_err(gone)
    }

    async fn wait(
        &mut self,
        p: &Pump<'_>,
        (shutdown, cluster): (&mut watch::Receiver<bool>, &mut watch::Receiver<u64>),
        (idle_at, drain_at): (Option<Instant>, Option<Instant>),
    ) -> Result<Wake, SessionError> {
        let timer = p.chain.next_timer(p.ctx);
        // next_len keeps partial input in its buffer: cancel-safe.
        tokio::select! {
            n = self.client.next_len() => Ok(match n.map_err(SessionError::ClientFrame)? {
                Some(total) => Wake::Frame(total),
                None => Wake::ClientDone,
            }),
            _ = sleep_until(timer) => Ok(Wake::Timer),
            _ = sleep_until(idle_at) => Ok(Wake::Idle),
            _ = stopping(shutdown) => Ok(Wake::Shutdown),
            _ = moved_or_due(cluster, p.generation, drain_at) => Ok(Wake::ClusterChanged),
        }
    }

    /// Forwards the frame at the head of the buffer (and any complete ones
    /// behind it), then flushes.
    async fn forward(&mut self, p: &Pump<'_>, mut total: usize) -> Result<(), SessionError> {
        loop {
            self.one(p, total).await?;
            if self.batch.full() {
                break;
            }
            match self
                .client
                .buffered_frame_len()
                .map_err(SessionError::ClientFrame)?
            {
                Some(t) => total = t,
                None => break,
            }
        }
        self.batch
            .flush(&mut self.upstream)
            .await
            .map_err(SessionError::UpstreamIo)?;
        self.client.shrink();
        Ok(())
    }

    async fn one(&mut self, p: &Pump<'_>, total: usize) -> Result<(), SessionError> {
        let c = &mut self.client;
        c.ensure(HEADER).await.map_err(SessionError::ClientFrame)?;
        let h = peek_request_header(c.buffered()).map_err(|e| SessionError::ClientMalformed {
            api_key: None,
            cause: e.to_string(),
        })?;
        metrics::get().requests[metrics::slot(h.api_key)].fetch_add(1, Relaxed);
        self.produced |= PRODUCER_KEYS.contains(&h.api_key);
        p.ctx
            .stats
            .bytes_client_to_broker
            .fetch_add(total as u64, Relaxed);
        let mut plan = p.chain.plan(h.api_key, h.api_version);
        let seen = match plan.request {
            Need::Skip => 0,
            Need::Header => HEADER,
            Need::Head => total.min(HEAD_BYTES),
            Need::Whole => total,
        };
        let _held = p.budget.hold(seen).await;
        let seen = if plan.request == Need::Head {
            // Only as far as the Produce's acks, not a fixed head: a large
            // Produce starts moving once its first bytes are in.
            c.ensure_until(seen, |b| produce_head_len(b, &h))
                .await
                .map_err(SessionError::ClientFrame)?
        } else {
            c.ensure(seen).await.map_err(SessionError::ClientFrame)?;
            seen
        };
        let verdict = match plan.request {
            Need::Skip => RequestVerdict::Pass,
            _ => p.chain.on_request(p.ctx, &h, &c.buffered()[..seen], &mut plan)?,
        };
        match verdict {
            RequestVerdict::Answer(bytes) => {
                // The request is dropped: read past it, answer in order.
                c.copy_to(total, &mut tokio::io::sink()).await.map_err(copy_err)?;
                self.tx.send(Pending::Local(bytes)).await.map_err(gone)
            }
            RequestVerdict::Replace(bytes) => {
                // The original is read past; the replacement goes instead.
                c.copy_to(total, &mut tokio::io::sink()).await.map_err(copy_err)?;
                self.expect(h, plan).await?;
                self.batch.push(bytes);
                Ok(())
            }
            RequestVerdict::AnswerAndClose(bytes, why) => {
                // Everything before it reaches the client, then the close.
                c.copy_to(total, &mut tokio::io::sink()).await.map_err(copy_err)?;
                self.batch
                    .flush(&mut self.upstream)
                    .await
                    .map_err(SessionError::UpstreamIo)?;
                self.tx.send(Pending::Local(bytes)).await.map_err(gone)?;
                self.barrier().await?;
                // Like Kafka's failed-authentication delay: a client that
                // sees the EOF with the error may report only the EOF.
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(why.into())
            }
            RequestVerdict::NoResponse => self.send(total, p.splice).await,
            RequestVerdict::Pass => {
                self.expect(h, plan).await?;
                self.send(total, p.splice).await
            }
        }
    }

    /// Registered before the bytes leave, so the response side always
    /// knows what to expect; a full queue is back-pressure.
    async fn expect(&mut self, header: RequestHeader, plan: crate::filter::Plan) -> Result<(), SessionError> {
        self.in_flight.fetch_add(1, Relaxed);
        self.tx
            .send(Pending::Expect {
                header,
                plan,
                sent_at: Instant::now(),
            })
            .await
            .map_err(gone)
    }

    /// Sends the frame at the head of the buffer: whole if it is (or is
    /// small enough to be), else cut through.
    async fn send(&mut self, total: usize, splice: bool) -> Result<(), SessionError> {
        let c = &mut self.client;
        if c.buffered().len() >= total || total <= CUT_THROUGH_MIN {
            c.ensure(total).await.map_err(SessionError::ClientFrame)?;
            self.batch.push(c.take(total));
            return Ok(());
        }
        metrics::get().frames_streamed[0].fetch_add(1, Relaxed);
        self.batch
            .flush(&mut self.upstream)
            .await
            .map_err(SessionError::UpstreamIo)?;
        pass(c, &mut self.upstream, total, &mut self.pipe, splice)
            .await
            .map_err(copy_err)
    }
}

/// Resolves at `due` when a later move is scheduled, else when the
/// cluster moves.
async fn moved_or_due(rx: &mut watch::Receiver<u64>, mine: u64, due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => moved(rx, mine).await,
    }
}

/// Resolves once the current cluster is no longer `mine`.
async fn moved(rx: &mut watch::Receiver<u64>, mine: u64) {
    if mine == 0 || rx.wait_for(|g| *g != mine).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Resolves once shutdown begins.
async fn stopping(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

pub(super) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
