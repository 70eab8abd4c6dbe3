//! What the request side tells the response side, in request order, and
//! the injection path kgate's own requests take through a running pump.

use crate::filter::{BoxFuture, Inject, Plan};
use crate::protocol::header::RequestHeader;
use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// What the response side must produce next.
#[derive(Debug)]
pub enum Pending {
    /// A response from the broker to this request, handled per `plan`.
    Expect {
        header: RequestHeader,
        plan: Plan,
        sent_at: Instant,
    },
    /// A response kgate answered itself.
    Local(Bytes),
    /// Answered once every earlier response reached the client (drain).
    Barrier(oneshot::Sender<()>),
    /// A response to kgate's own request: handed back, never to the client.
    Internal {
        correlation_id: i32,
        reply: oneshot::Sender<Bytes>,
    },
}

/// Carries a filter's own requests through the paused pump: registered
/// with the response side first, then written to the broker and flushed.
pub struct PumpInject<'a, W> {
    pub tx: &'a mpsc::Sender<Pending>,
    pub upstream: &'a mut W,
}

impl<W: AsyncWrite + Unpin + Send> Inject for PumpInject<'_, W> {
    fn round_trip(&mut self, request: Bytes, correlation_id: i32) -> BoxFuture<'_, Result<Bytes, String>> {
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            self.tx
                .send(Pending::Internal {
                    correlation_id,
                    reply,
                })
                .await
                .map_err(|_| "connection closing".to_string())?;
            self.upstream
                .write_all(&request)
                .await
                .map_err(|e| e.to_string())?;
            self.upstream.flush().await.map_err(|e| e.to_string())?;
            rx.await
                .map_err(|_| "connection closed before the response".to_string())
        })
    }
}
