//! Topic ids for the policy. Fetch v13+ names topics by id; the policy
//! learns id → name from every Metadata response that passes through
//! kgate, and never lets an id it does not know through. When a client
//! names one anyway (kgate restarted, or the client learned the id on
//! another connection), the policy answers UNKNOWN_TOPIC_ID and wakes this
//! task, which asks the cluster for all its topics itself, as kgate, so the
//! client's retry finds the name. At most one fetch a second; the answer is
//! bounded by `max_frame_bytes` and walked with bounds before it is decoded.

use crate::filter::policy::ids::TopicIds;
use crate::filter::policy::metadata;
use crate::upstream::dial::Route;
use crate::Shared;
use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, MetadataRequest};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, warn};

const VERSION: i16 = 12;
const CORRELATION: i32 = 0x6b67_6964;
const EVERY: Duration = Duration::from_secs(1);

fn request() -> Result<BytesMut, String> {
    let body = MetadataRequest::default()
        .with_topics(None)
        .with_allow_auto_topic_creation(false);
    super::own_request::frame(ApiKey::Metadata, VERSION, CORRELATION, &body)
}

/// Asks the current cluster for every topic and learns their ids.
pub async fn fetch(shared: &Shared, ids: &TopicIds) -> Result<usize, String> {
    let mut up = shared
        .connector
        .connect(&Route::Bootstrap)
        .await
        .map_err(|e| e.to_string())?;
    let max = shared.config.max_frame_bytes;
    let frame =
        super::probe::round_trip_max(&mut up.stream, &request()?, "Metadata (topic ids)", max).await?;
    metadata::learn(ids, &frame, VERSION)
}

pub async fn run(shared: Arc<Shared>, ids: Arc<TopicIds>) {
    loop {
        ids.wanted().await;
        match fetch(&shared, &ids).await {
            Ok(n) => debug!(topics = n, "topic ids learned from the cluster"),
            Err(e) => {
                if let Some(suppressed) = crate::logs::allow("topic_ids") {
                    warn!(error = %e, suppressed, "cannot learn topic ids from the cluster; clients naming unknown ids get UNKNOWN_TOPIC_ID until a Metadata response teaches kgate");
                }
            }
        }
        tokio::time::sleep(EVERY).await;
    }
}
