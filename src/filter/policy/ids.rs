//! The cluster-wide topic id → name map, learned from every Metadata
//! response kgate sees (Fetch v13+ and Produce v13 name topics by id).
//! Bounded: when full, an arbitrary entry makes room.

use kafka_protocol::protocol::StrBytes;
use std::collections::HashMap;
use std::sync::RwLock;
use uuid::Uuid;

/// Ids kept at most (a cluster with more topics re-learns evicted ones
/// from the Metadata request its clients send on UNKNOWN_TOPIC_ID).
pub const MAX_IDS: usize = 100_000;

#[derive(Default)]
pub struct TopicIds {
    map: RwLock<HashMap<Uuid, StrBytes>>,
    /// Woken when a client names an id kgate does not know: kgate then
    /// asks the cluster for its topics itself (`admin::topic_ids`).
    wanted: tokio::sync::Notify,
}

impl TopicIds {
    /// Asks for the cluster's topic ids to be fetched (coalesced).
    pub fn want(&self) {
        self.wanted.notify_one();
    }

    /// Resolves when an unknown id was met since the last call.
    pub async fn wanted(&self) {
        self.wanted.notified().await;
    }

    pub fn learn(&self, id: Uuid, name: &StrBytes) {
        if id.is_nil() {
            return;
        }
        if self.name(id).as_ref() == Some(name) {
            return;
        }
        let mut m = match self.map.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if m.len() >= MAX_IDS && !m.contains_key(&id) {
            if let Some(k) = m.keys().next().copied() {
                m.remove(&k);
            }
        }
        m.insert(id, name.clone());
    }

    pub fn name(&self, id: Uuid) -> Option<StrBytes> {
        let m = match self.map.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        m.get(&id).cloned()
    }
}
