//! The pump: requests client → broker and responses broker → client, run
//! concurrently so neither direction can block the other. Requests are
//! forwarded as the bytes that arrived; the in-flight queue tells the
//! response side what each response must be.

use super::error::SessionError;
use crate::protocol::api_versions::{api_versions_too_new, refuse_sasl, rewrite_api_versions};
use crate::protocol::decision::{decide, RequestAction, ResponseAction};
use crate::protocol::frame::FrameReader;
use crate::protocol::header::{
    key, peek_produce_acks, peek_request_header, peek_response_correlation,
};
use crate::rewrite::{rewrite, BrokerMapper};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// What the response side must produce next, in request order.
#[derive(Debug)]
pub enum Pending {
    /// A response from the broker with this correlation id.
    Expect {
        correlation_id: i32,
        api_key: i16,
        api_version: i16,
        action: ResponseAction,
    },
    /// A response kgate answered itself.
    Local(Bytes),
}

pub struct Limits {
    pub max_frame: usize,
    pub max_in_flight: usize,
}

/// Runs both directions until either side ends. `Ok` means the client
/// closed cleanly.
pub async fn pump<CR, CW, UR, UW>(
    client_r: CR,
    client_w: CW,
    up_r: UR,
    up_w: UW,
    limits: &Limits,
    mapper: &dyn BrokerMapper,
) -> Result<(), SessionError>
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    UR: AsyncRead + Unpin,
    UW: AsyncWrite + Unpin,
{
    let (tx, rx) = mpsc::channel(limits.max_in_flight);
    let requests = requests(
        FrameReader::new(client_r, limits.max_frame, 8, true),
        up_w,
        tx,
    );
    let responses = responses(
        FrameReader::new(up_r, limits.max_frame, 4, false),
        client_w,
        rx,
        mapper,
    );
    tokio::select! {
        r = requests => r,
        r = responses => r,
    }
}

async fn requests<R, W>(
    mut client: FrameReader<R>,
    mut upstream: W,
    tx: mpsc::Sender<Pending>,
) -> Result<(), SessionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    while let Some(frame) = client
        .next_frame()
        .await
        .map_err(SessionError::ClientFrame)?
    {
        let h = peek_request_header(&frame).map_err(|e| SessionError::ClientMalformed {
            api_key: None,
            cause: e.to_string(),
        })?;
        let pending = match decide(h.api_key, h.api_version) {
            RequestAction::Forward(action) => {
                let no_response = h.api_key == key::PRODUCE
                    && peek_produce_acks(&frame, &h).map_err(|e| {
                        SessionError::ClientMalformed {
                            api_key: Some(h.api_key),
                            cause: format!("cannot read Produce acks: {e}"),
                        }
                    })? == 0;
                if no_response {
                    None
                } else {
                    Some(Pending::Expect {
                        correlation_id: h.correlation_id,
                        api_key: h.api_key,
                        api_version: h.api_version,
                        action,
                    })
                }
            }
            RequestAction::RefuseSasl => {
                warn!(api_key = h.api_key, "client sent SASL to a listener without client authentication; answering with an error (configure the client with security.protocol=PLAINTEXT)");
                let local = Pending::Local(refuse_sasl(&h));
                tx.send(local)
                    .await
                    .map_err(|_| SessionError::ResponseSideGone)?;
                continue;
            }
            RequestAction::ApiVersionsTooNew => {
                debug!(
                    version = h.api_version,
                    "ApiVersions newer than kgate parses; asking the client to retry lower"
                );
                let local = Pending::Local(api_versions_too_new(h.correlation_id));
                tx.send(local)
                    .await
                    .map_err(|_| SessionError::ResponseSideGone)?;
                continue;
            }
            RequestAction::Reject(why) => {
                return Err(SessionError::Rejected {
                    api_key: h.api_key,
                    api_version: h.api_version,
                    why,
                })
            }
        };
        // Registered before the bytes leave, so the response side always
        // knows what to expect; a full queue is back-pressure.
        if let Some(p) = pending {
            tx.send(p)
                .await
                .map_err(|_| SessionError::ResponseSideGone)?;
        }
        upstream
            .write_all(&frame)
            .await
            .map_err(SessionError::UpstreamIo)?;
    }
    Ok(())
}

async fn responses<R, W>(
    mut upstream: FrameReader<R>,
    mut client: W,
    mut rx: mpsc::Receiver<Pending>,
    mapper: &dyn BrokerMapper,
) -> Result<(), SessionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let pending = tokio::select! {
            biased;
            p = rx.recv() => match p {
                Some(p) => p,
                None => return Ok(()),
            },
            // Nothing is in flight: any byte from the broker is unsolicited.
            n = upstream.fill(), if !upstream.has_buffered() => {
                return Err(match n.map_err(SessionError::UpstreamFrame)? {
                    0 => SessionError::UpstreamClosed { in_flight: 0 },
                    _ => SessionError::Unsolicited,
                });
            }
        };
        let (correlation_id, api_key, api_version, action) = match pending {
            Pending::Local(bytes) => {
                client
                    .write_all(&bytes)
                    .await
                    .map_err(SessionError::ClientIo)?;
                continue;
            }
            Pending::Expect {
                correlation_id,
                api_key,
                api_version,
                action,
            } => (correlation_id, api_key, api_version, action),
        };
        let frame = match upstream
            .next_frame()
            .await
            .map_err(SessionError::UpstreamFrame)?
        {
            Some(f) => f,
            None => {
                return Err(SessionError::UpstreamClosed {
                    in_flight: 1 + rx.len(),
                })
            }
        };
        let got =
            peek_response_correlation(&frame).map_err(|e| SessionError::UpstreamMalformed {
                api_key,
                api_version,
                cause: e.to_string(),
            })?;
        if got != correlation_id {
            return Err(SessionError::CorrelationMismatch {
                api_key,
                expected: correlation_id,
                got,
            });
        }
        let malformed = |cause: String| SessionError::UpstreamMalformed {
            api_key,
            api_version,
            cause,
        };
        match action {
            ResponseAction::PassThrough => client.write_all(&frame).await,
            ResponseAction::ApiVersions => {
                let out = rewrite_api_versions(&frame, api_version)
                    .map_err(|e| malformed(e.to_string()))?;
                client.write_all(&out).await
            }
            ResponseAction::Rewrite(kind) => {
                match rewrite(kind, &frame, api_key, api_version, mapper)
                    .map_err(|e| malformed(e.to_string()))?
                {
                    Some(out) => client.write_all(&out).await,
                    None => client.write_all(&frame).await,
                }
            }
        }
        .map_err(SessionError::ClientIo)?;
    }
}
