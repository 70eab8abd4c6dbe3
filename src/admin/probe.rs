//! The upstream probe: regularly connects (with TLS and SASL) through the
//! bootstrap servers and asks for Metadata. Success keeps /readyz green,
//! and the brokers it learns get their listeners before any client asks.

use crate::listener::registry::Registry;
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

/// Asks the current cluster for its brokers (through the bootstrap
/// servers) and maps them onto the listeners; returns the response size.
pub async fn once(shared: &Shared) -> Result<usize, String> {
    let mut up = shared
        .connector
        .connect(&Route::Bootstrap)
        .await
        .map_err(|e| e.to_string())?;
    up.stream
        .write_all(&metadata_request())
        .await
        .map_err(|e| e.to_string())?;
    up.stream.flush().await.map_err(|e| e.to_string())?;
    let mut len = [0u8; LEN_PREFIX];
    up.stream.read_exact(&mut len).await.map_err(|e| e.to_string())?;
    let total = frame_len(len, 4, PROBE_MAX_FRAME).map_err(|e| format!("probe Metadata response: {e}"))?;
    let mut frame = vec![0u8; total];
    frame[..LEN_PREFIX].copy_from_slice(&len);
    up.stream
        .read_exact(&mut frame[LEN_PREFIX..])
        .await
        .map_err(|e| e.to_string())?;
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
