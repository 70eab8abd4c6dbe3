//! Process-wide counters and histograms, exposed in Prometheus text format
//! by the admin endpoint. Labels stay bounded: listener, broker, api key,
//! direction or cause — never a client address or topic.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Upper bounds in seconds.
const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Default::default(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| s <= *b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Cumulative (upper bound, count) pairs, then +Inf.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let mut acc = 0;
        let mut out = Vec::with_capacity(BUCKETS.len());
        for (i, b) in BUCKETS.iter().enumerate() {
            acc += self.counts[i].load(Relaxed);
            out.push((*b, acc));
        }
        (out, self.count(), self.sum_nanos.load(Relaxed) as f64 / 1e9)
    }
}

/// A family of counters keyed by a small label set.
#[derive(Default)]
pub struct Family<K: Ord + Clone> {
    inner: Mutex<BTreeMap<K, u64>>,
}

impl<K: Ord + Clone> Family<K> {
    pub fn add(&self, k: K, n: u64) {
        let mut m = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *m.entry(k).or_insert(0) += n;
    }

    pub fn snapshot(&self) -> Vec<(K, u64)> {
        let m = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        m.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    pub fn get(&self, k: &K) -> u64 {
        self.snapshot()
            .into_iter()
            .find(|(x, _)| x == k)
            .map(|(_, v)| v)
            .unwrap_or(0)
    }
}

/// API keys are 0..=92 in Kafka 4.1; anything else lands in the last slot.
pub const API_SLOTS: usize = 128;

/// Per-listener connection and byte counters.
#[derive(Default)]
pub struct ListenerStats {
    pub open: AtomicU64,
    pub total: AtomicU64,
    pub refused: AtomicU64,
    pub bytes_client_to_broker: AtomicU64,
    pub bytes_broker_to_client: AtomicU64,
}

pub struct Metrics {
    pub requests: [AtomicU64; API_SLOTS],
    pub responses: [AtomicU64; API_SLOTS],
    pub latency: Vec<Histogram>,
    pub reauth_total: AtomicU64,
    pub reauth_failures_total: AtomicU64,
    pub reauth_pause: Histogram,
    /// (stage, cause): connect, tls or sasl failures toward brokers.
    pub upstream_failures: Family<(&'static str, String)>,
    /// Connections by upstream identity (kind, role ARN or user name from
    /// the config); only counted when `[[upstream_identity]]` is set.
    pub upstream_identity: Family<(&'static str, String)>,
    /// STS AssumeRole calls for per-principal roles, by role ARN.
    pub assume_role: Family<String>,
    /// Frame and protocol errors by kind.
    pub protocol_errors: Family<&'static str>,
    pub listeners: AtomicU64,
    pub dynamic_listeners_created: AtomicU64,
    /// Brokers refused a listener (cap reached, invalid host or port).
    pub dynamic_listeners_refused: AtomicU64,
    /// Brokers whose listener could not be bound right now (gauge).
    pub listeners_failing: AtomicU64,
    /// Responses in which a broker address was replaced, by API.
    pub address_rewrites: Family<&'static str>,
    /// Producer ids kgate mapped after a cut-over: "fetched" (a fresh id
    /// from the new cluster) or "virtual" (a clashing id handed out).
    pub producer_id_remaps_total: Family<&'static str>,
    /// Bytes of the frame-assembly budget in use, and waits for it.
    pub buffer_budget_used: AtomicU64,
    pub buffer_budget_waits: AtomicU64,
    /// Connections closed for sending no complete first request in time.
    pub first_request_timeouts: AtomicU64,
    /// Connections refused by max_connections_per_client.
    pub per_client_refused: AtomicU64,
    /// PROXY protocol headers by result: v1, v2, local, absent, malformed,
    /// missing (required but absent), timeout.
    pub proxy_protocol: Family<&'static str>,
    /// SNI-routed connections by result: bootstrap, broker, refused.
    pub sni_routes: Family<&'static str>,
    /// Requests the policy denied (wholly or in part), by API name and
    /// resource type (topic, topic id, group, transactional id, api).
    pub policy_denials: Family<(&'static str, &'static str)>,
    /// Client SASL by (mechanism, result, kind): result ok or failed, kind
    /// authenticate or reauthenticate. Mechanism `-` when none was chosen.
    pub client_auth: Family<(&'static str, &'static str, &'static str)>,
    /// Connections closed for not authenticating within auth_timeout_ms.
    pub client_auth_timeouts: AtomicU64,
    /// Connections closed because their client session expired (KIP-368).
    pub client_sessions_expired: AtomicU64,
    /// Frames streamed through without being assembled, per direction.
    pub frames_streamed: [AtomicU64; 2],
    /// Streamed frames whose unread part moved by splice(2).
    pub frames_spliced: AtomicU64,
    by_listener: Mutex<BTreeMap<String, std::sync::Arc<ListenerStats>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            responses: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: (0..API_SLOTS).map(|_| Histogram::default()).collect(),
            reauth_total: AtomicU64::new(0),
            reauth_failures_total: AtomicU64::new(0),
            reauth_pause: Histogram::default(),
            upstream_failures: Family::default(),
            upstream_identity: Family::default(),
            assume_role: Family::default(),
            protocol_errors: Family::default(),
            listeners: AtomicU64::new(0),
            dynamic_listeners_created: AtomicU64::new(0),
            dynamic_listeners_refused: AtomicU64::new(0),
            listeners_failing: AtomicU64::new(0),
            address_rewrites: Family::default(),
            producer_id_remaps_total: Family::default(),
            buffer_budget_used: AtomicU64::new(0),
            buffer_budget_waits: AtomicU64::new(0),
            first_request_timeouts: AtomicU64::new(0),
            per_client_refused: AtomicU64::new(0),
            proxy_protocol: Family::default(),
            sni_routes: Family::default(),
            policy_denials: Family::default(),
            client_auth: Family::default(),
            client_auth_timeouts: AtomicU64::new(0),
            client_sessions_expired: AtomicU64::new(0),
            frames_streamed: Default::default(),
            frames_spliced: AtomicU64::new(0),
            by_listener: Mutex::new(BTreeMap::new()),
        }
    }
}

pub fn slot(api_key: i16) -> usize {
    if (0..API_SLOTS as i16 - 1).contains(&api_key) {
        api_key as usize
    } else {
        API_SLOTS - 1
    }
}

impl Metrics {
    /// The counters of one listener (created on first use).
    pub fn listener(&self, label: &str) -> std::sync::Arc<ListenerStats> {
        let mut m = match self.by_listener.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        m.entry(label.to_string()).or_default().clone()
    }

    pub fn listeners_snapshot(&self) -> Vec<(String, std::sync::Arc<ListenerStats>)> {
        let m = match self.by_listener.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::default)
}
