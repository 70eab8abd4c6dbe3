//! The upstream probe: regularly connects (with TLS and SASL) through the
//! bootstrap servers and asks for Metadata. Success keeps /readyz green,
//! and the brokers it learns get their listeners before any client asks.

use crate::listener::registry::Registry;
use crate::protocol::api_versions::{list_api_versions, rewrite_api_versions};
use crate::protocol::decision::RewriteKind;
use crate::protocol::frame::{frame_len, LEN_PREFIX};
use crate::rewrite::{rewrite, Advertised, BrokerMapper, MapError};
use crate::upstream::dial::Route;
use crate::Shared;
use bytes::{BufMut, BytesMut};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};

const METADATA_VERSION: i16 = 4;
/// The probe asks for no topics: its answer is the broker list only. A
/// larger one is a lie and is not assembled.
const PROBE_MAX_FRAME: usize = 4 << 20;
const CORRELATION: i32 = i32::MIN / 2 - 7;

/// Metadata v4 for no topics (an empty array, not null).
fn metadata_request() -> BytesMut {
    let mut b = BytesMut::with_capacity(32);
    b.put_i32(0);
    b.put_i16(3);
    b.put_i16(METADATA_VERSION);
    b.put_i32(CORRELATION);
    b.put_i16(5);
    b.put_slice(b"kgate");
    b.put_i32(0);
    b.put_u8(0);
    let n = (b.len() - LEN_PREFIX) as i32;
    b[..LEN_PREFIX].copy_from_slice(&n.to_be_bytes());
    b
}

/// ApiVersions v2 (non-flexible, no client software fields).
fn api_versions_request() -> BytesMut {
    let mut b = BytesMut::with_capacity(24);
    b.put_i32(0);
    b.put_i16(18);
    b.put_i16(API_VERSIONS_VERSION);
    b.put_i32(CORRELATION - 1);
    b.put_i16(5);
    b.put_slice(b"kgate");
    let n = (b.len() - LEN_PREFIX) as i32;
    b[..LEN_PREFIX].copy_from_slice(&n.to_be_bytes());
    b
}

const API_VERSIONS_VERSION: i16 = 2;

/// Sends one request and reads its response, bounded by `max` bytes.
pub(crate) async fn round_trip_max<S>(
    s: &mut S,
    request: &[u8],
    what: &str,
    max: usize,
) -> Result<Vec<u8>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    s.write_all(request).await.map_err(|e| e.to_string())?;
    s.flush().await.map_err(|e| e.to_string())?;
    let mut len = [0u8; LEN_PREFIX];
    s.read_exact(&mut len).await.map_err(|e| e.to_string())?;
    let total = frame_len(len, 4, max).map_err(|e| format!("probe {what} response: {e}"))?;
    let mut frame = vec![0u8; total];
    frame[..LEN_PREFIX].copy_from_slice(&len);
    s.read_exact(&mut frame[LEN_PREFIX..])
        .await
        .map_err(|e| e.to_string())?;
    Ok(frame)
}

async fn round_trip<S>(s: &mut S, request: &[u8], what: &str) -> Result<Vec<u8>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    round_trip_max(s, request, what, PROBE_MAX_FRAME).await
}

/// Keeps the broker's ApiVersions (after kgate's allow-list and caps), so
/// client authentication can answer ApiVersions before any upstream.
fn keep_versions(shared: &Shared, frame: &[u8]) -> Result<(), String> {
    let out =
        rewrite_api_versions(frame, API_VERSIONS_VERSION).map_err(|e| format!("probe ApiVersions: {e}"))?;
    if out.get(8..10).is_some_and(|e| e == [0, 0]) {
        let list =
            list_api_versions(&out, API_VERSIONS_VERSION).map_err(|e| format!("probe ApiVersions: {e}"))?;
        shared.versions.store(list);
    }
    Ok(())
}

/// Asks the current cluster for its brokers (and, with client
/// authentication, its ApiVersions) through the bootstrap servers and maps them onto the listeners; returns the
/// Metadata response size.
pub async fn once(shared: &Shared) -> Result<usize, String> {
    let mut up = shared
        .connector
        .connect(&Route::Bootstrap)
        .await
        .map_err(|e| e.to_string())?;
    if shared.client_auth.is_some() {
        // Best effort: the Metadata answer is what the probe is for.
        let versions = round_trip(&mut up.stream, &api_versions_request(), "ApiVersions").await?;
        if let Err(e) = keep_versions(shared, &versions) {
            debug!(error = %e, "probe: the broker's ApiVersions answer is not usable");
        }
    }
    let frame = round_trip(&mut up.stream, &metadata_request(), "Metadata").await?;
    let total = frame.len();
    let seen = Listed {
        registry: shared.registry.as_ref(),
        sni: shared.sni.get().map(|s| s.as_ref()),
        ids: Mutex::new(Vec::new()),
    };
    rewrite(RewriteKind::Metadata, &frame, 3, METADATA_VERSION, &seen).map_err(|e| e.to_string())?;
    let ids = seen.ids.into_inner().unwrap_or_else(|p| p.into_inner());
    shared.registry.forget_unlisted(&ids);
    Ok(total)
}

/// Passes the probe's brokers to the registry (creating their listeners
/// before any client asks) and keeps the complete list of node ids.
struct Listed<'a> {
    registry: &'a Registry,
    /// The SNI port's names, re-pointed too (after a cut-over).
    sni: Option<&'a crate::listener::sni::SniRouter>,
    ids: Mutex<Vec<i32>>,
}

impl BrokerMapper for Listed<'_> {
    fn advertise(&self, node_id: i32, host: &str, port: i32) -> Result<Advertised, MapError> {
        let listener = self.registry.advertise(node_id, host, port);
        match self.sni {
            Some(sni) => sni.advertise(node_id, host, port).or(listener),
            None => listener,
        }
    }

    fn listed(&self, node_ids: &[i32]) {
        if let Ok(mut ids) = self.ids.lock() {
            ids.extend_from_slice(node_ids);
        }
    }
}

pub async fn run(shared: Arc<Shared>) {
    // Often enough that readiness follows the cluster within seconds (it
    // also forgets brokers the cluster stopped naming); one small request.
    let every = (shared.config.ready_window / 3).clamp(Duration::from_millis(500), Duration::from_secs(5));
    let mut failing = false;
    loop {
        match tokio::time::timeout(shared.config.connect_timeout * 2, once(&shared)).await {
            Ok(Ok(n)) => {
                shared.health.upstream_ok();
                if failing {
                    warn!("upstream probe succeeds again");
                }
                failing = false;
                debug!(metadata_bytes = n, "upstream probe ok");
            }
            Ok(Err(e)) => {
                if !failing {
                    warn!(error = %e, "upstream probe failed; /readyz will report it");
                }
                failing = true;
            }
            Err(_) => {
                failing = true;
                warn!("upstream probe timed out");
            }
        }
        tokio::time::sleep(every).await;
    }
}
