//! The response side of the pump: for each pending request, in order, the
//! broker's response is checked against its correlation id and then
//! passed, cut through, filtered whole, or streamed with only its tagged
//! tail held back — as the request's plan says.

use super::batch::Batch;
use super::error::SessionError;
use super::inflight::Pending;
use super::pump::{Pump, CUT_THROUGH_MIN};
use super::splice::{pass, AsTcp, Pipe};
use crate::filter::{Plan, ResponseNeed};
use crate::metrics;
use crate::protocol::fetch_scan::{FetchScan, Step, MAX_UNIT};
use crate::protocol::frame::{CopyError, FrameReader};
use crate::protocol::header::{peek_response_correlation, RequestHeader};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Size prefix and correlation id.
const HEAD: usize = 8;

fn copy_err(e: CopyError) -> SessionError {
    match e {
        CopyError::Read(f) => SessionError::UpstreamFrame(f),
        CopyError::Write(w) => SessionError::ClientIo(w),
    }
}

struct Responses<'a, R, W> {
    upstream: FrameReader<R>,
    client: W,
    batch: Batch,
    pipe: Option<Pipe>,
    p: &'a Pump<'a>,
}

pub async fn responses<R, W>(
    upstream: FrameReader<R>,
    client: W,
    mut rx: mpsc::Receiver<Pending>,
    p: &Pump<'_>,
    in_flight: &AtomicUsize,
) -> Result<(), SessionError>
where
    R: AsyncRead + Unpin + AsTcp,
    W: AsyncWrite + Unpin + AsTcp,
{
    use tokio::sync::mpsc::error::TryRecvError;
    let mut s = Responses {
        upstream,
        client,
        batch: Batch::default(),
        pipe: None,
        p,
    };
    loop {
        let pending = if s.batch.is_empty() {
            tokio::select! {
                biased;
                p = rx.recv() => match p {
                    Some(p) => p,
                    None => return Ok(()),
                },
                // Nothing is in flight: any byte from the broker is unsolicited.
                n = s.upstream.fill(), if !s.upstream.has_buffered() => {
                    return Err(match n.map_err(SessionError::UpstreamFrame)? {
                        0 => SessionError::UpstreamClosed { in_flight: 0 },
                        _ => SessionError::Unsolicited,
                    });
                }
            }
        } else {
            match rx.try_recv() {
                Ok(p) => p,
                Err(e) => {
                    s.flush().await?;
                    if e == TryRecvError::Disconnected {
                        return Ok(());
                    }
                    continue;
                }
            }
        };
        s.handle(pending, in_flight).await?;
    }
}

impl<R: AsyncRead + Unpin + AsTcp, W: AsyncWrite + Unpin + AsTcp> Responses<'_, R, W> {
    /// Produces what one pending entry stands for, in order.
    async fn handle(&mut self, pending: Pending, in_flight: &AtomicUsize) -> Result<(), SessionError> {
        match pending {
            Pending::Local(bytes) => self.batch.push(bytes),
            Pending::Barrier(done) => {
                self.flush().await?;
                let _ = done.send(());
            }
            Pending::Internal {
                correlation_id,
                reply,
            } => {
                self.flush().await?;
                let h = RequestHeader {
                    api_key: -1,
                    api_version: -1,
                    correlation_id,
                };
                let total = self.head(&h).await?;
                self.upstream
                    .ensure(total)
                    .await
                    .map_err(SessionError::UpstreamFrame)?;
                let _ = reply.send(self.upstream.take(total));
            }
            Pending::Expect {
                header,
                plan,
                sent_at,
            } => {
                let total = self.head(&header).await?;
                self.one(&header, &plan, total).await?;
                in_flight.fetch_sub(1, Relaxed);
                let m = metrics::get();
                let slot = metrics::slot(header.api_key);
                m.responses[slot].fetch_add(1, Relaxed);
                m.latency[slot].observe(sent_at.elapsed());
                let stats = &self.p.ctx.stats;
                stats.bytes_broker_to_client.fetch_add(total as u64, Relaxed);
                if self.batch.full() {
                    self.flush().await?;
                }
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SessionError> {
        self.batch
            .flush(&mut self.client)
            .await
            .map_err(SessionError::ClientIo)
    }

    /// Waits for the next response's size and correlation id, checks the
    /// id, and returns the frame's whole length. Queued responses go to
    /// the client before waiting.
    async fn head(&mut self, h: &RequestHeader) -> Result<usize, SessionError> {
        if self.upstream.buffered().len() < HEAD && !self.batch.is_empty() {
            self.flush().await?;
        }
        let timeout = self.p.request_timeout;
        let read = async {
            let total = self.upstream.next_len().await?;
            if let Some(t) = total {
                self.upstream.ensure(HEAD.min(t)).await?;
            }
            Ok(total)
        };
        let total = tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| SessionError::RequestTimeout {
                api_key: h.api_key,
                after: timeout,
            })?
            .map_err(SessionError::UpstreamFrame)?
            .ok_or(SessionError::UpstreamClosed { in_flight: 1 })?;
        let got = peek_response_correlation(self.upstream.buffered()).map_err(|e| {
            SessionError::UpstreamMalformed {
                api_key: h.api_key,
                api_version: h.api_version,
                cause: e.to_string(),
            }
        })?;
        if got != h.correlation_id {
            return Err(SessionError::CorrelationMismatch {
                api_key: h.api_key,
                expected: h.correlation_id,
                got,
            });
        }
        Ok(total)
    }

    /// Handles one response of `total` bytes whose head is buffered.
    async fn one(&mut self, h: &RequestHeader, plan: &Plan, total: usize) -> Result<(), SessionError> {
        let whole = self.upstream.buffered().len() >= total || total <= CUT_THROUGH_MIN;
        match plan.response {
            ResponseNeed::Skip if whole => {
                self.upstream
                    .ensure(total)
                    .await
                    .map_err(SessionError::UpstreamFrame)?;
                self.batch.push(self.upstream.take(total));
            }
            ResponseNeed::Skip => {
                metrics::get().frames_streamed[1].fetch_add(1, Relaxed);
                self.flush().await?;
                pass(
                    &mut self.upstream,
                    &mut self.client,
                    total,
                    &mut self.pipe,
                    self.p.splice,
                )
                .await
                .map_err(copy_err)?;
            }
            ResponseNeed::Whole | ResponseNeed::FetchTail
                if whole || plan.response == ResponseNeed::Whole =>
            {
                let _held = self.p.budget.hold(total).await;
                self.upstream
                    .ensure(total)
                    .await
                    .map_err(SessionError::UpstreamFrame)?;
                let frame = self.upstream.take(total);
                let out = self.p.chain.on_response(self.p.ctx, h, frame, plan)?;
                self.batch.push(out);
                // Memory held for a large frame goes back at once.
                if total > CUT_THROUGH_MIN {
                    self.flush().await?;
                }
            }
            ResponseNeed::Whole | ResponseNeed::FetchTail => {
                metrics::get().frames_streamed[1].fetch_add(1, Relaxed);
                self.flush().await?;
                self.stream_fetch(h, plan, total).await?;
            }
        }
        self.upstream.shrink();
        Ok(())
    }

    /// Streams a Fetch v16+ response: structure and records go through as
    /// they arrive; only the top-level tagged tail is held and filtered.
    async fn stream_fetch(
        &mut self,
        h: &RequestHeader,
        plan: &Plan,
        total: usize,
    ) -> Result<(), SessionError> {
        let malformed = |cause: String| SessionError::UpstreamMalformed {
            api_key: h.api_key,
            api_version: h.api_version,
            cause,
        };
        let mut scan = FetchScan::new();
        // Bytes of this frame not yet sent, and parsed bytes at the front
        // of the buffer waiting to be sent.
        let (mut left, mut ready) = (total, HEAD);
        loop {
            let buf = self.upstream.buffered();
            let avail = &buf[ready..buf.len().min(left)];
            match scan
                .step(avail, left - ready)
                .map_err(|e| malformed(e.to_string()))?
            {
                Step::Pass { head, records } => {
                    ready += head;
                    if records > 0 {
                        self.send_ready(&mut left, &mut ready).await?;
                        pass(
                            &mut self.upstream,
                            &mut self.client,
                            records,
                            &mut self.pipe,
                            self.p.splice,
                        )
                        .await
                        .map_err(copy_err)?;
                        left -= records;
                    }
                }
                Step::NeedMore => {
                    self.send_ready(&mut left, &mut ready).await?;
                    self.client.flush().await.map_err(SessionError::ClientIo)?;
                    if self.upstream.buffered().len() > MAX_UNIT {
                        return Err(malformed(format!(
                            "a Fetch partition header exceeds {MAX_UNIT} bytes"
                        )));
                    }
                    let want = self.upstream.buffered().len() + 1;
                    self.upstream
                        .ensure(want.min(left))
                        .await
                        .map_err(SessionError::UpstreamFrame)?;
                }
                Step::Tail => {
                    self.send_ready(&mut left, &mut ready).await?;
                    if left > MAX_UNIT {
                        return Err(malformed(format!("Fetch tagged fields exceed {MAX_UNIT} bytes")));
                    }
                    self.upstream
                        .ensure(left)
                        .await
                        .map_err(SessionError::UpstreamFrame)?;
                    let tail = self.upstream.take(left);
                    let out = self.p.chain.on_response_tail(self.p.ctx, h, tail, plan)?;
                    self.client
                        .write_all(&out)
                        .await
                        .map_err(SessionError::ClientIo)?;
                    return self.client.flush().await.map_err(SessionError::ClientIo);
                }
            }
        }
    }

    /// Writes the parsed bytes at the front of the buffer to the client.
    async fn send_ready(&mut self, left: &mut usize, ready: &mut usize) -> Result<(), SessionError> {
        if *ready > 0 {
            let chunk = self.upstream.take(*ready);
            self.client
                .write_all(&chunk)
                .await
                .map_err(SessionError::ClientIo)?;
            *left -= *ready;
            *ready = 0;
        }
        Ok(())
    }
}
