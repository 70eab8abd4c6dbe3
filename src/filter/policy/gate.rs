//! One request's decision: the connection's rules, whether its API key is
//! allowed at all, and a note of what was denied (for the log line).

use super::frame::{self, Head};
use super::ids::TopicIds;
use crate::config::policy::{grants, Rules};
use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::Encodable;
use uuid::Uuid;

pub const TOPIC_DENIED: i16 = 29;
pub const GROUP_DENIED: i16 = 30;
pub const CLUSTER_DENIED: i16 = 31;
pub const TXN_DENIED: i16 = 53;
pub const UNKNOWN_TOPIC_ID: i16 = 100;

/// Rebuilds the broker's response with the denied entries put back.
pub type Merge = Box<dyn FnOnce(&[u8]) -> Result<BytesMut, String> + Send>;

pub enum Outcome {
    Pass,
    /// Answered by kgate: every entry was denied.
    Answer(Bytes),
    /// Forward this request instead; merge the denied entries back into
    /// its response.
    Replace(Bytes, Merge),
    /// No well-formed answer exists (acks=0 Produce, a key without an
    /// error field): the connection is closed, as Kafka does for acks=0.
    Close(&'static str),
}

pub struct Gate<'a> {
    pub rules: &'a Rules,
    /// The API key itself is allowed.
    pub api_ok: bool,
    pub ids: &'a TopicIds,
    /// The first denied resource (kind, name) and how many were denied.
    pub first: Option<(&'static str, String)>,
    pub denied: usize,
}

impl<'a> Gate<'a> {
    pub fn new(rules: &'a Rules, api_ok: bool, ids: &'a TopicIds) -> Self {
        Gate {
            rules,
            api_ok,
            ids,
            first: None,
            denied: 0,
        }
    }

    fn note(&mut self, ok: bool, kind: &'static str, name: &str) -> bool {
        if !ok {
            self.denied += 1;
            if self.first.is_none() {
                self.first = Some((kind, name.to_string()));
            }
        }
        ok
    }

    pub fn topic(&mut self, name: &str, op: u8) -> bool {
        let ok = self.api_ok && grants(&self.rules.topics, name, op);
        self.note(ok, "topic", name)
    }

    /// A topic named by id: `Err(code)` when denied — 29, or 100 when the
    /// id is not known yet: kgate then fetches the cluster's Metadata
    /// itself (and the client's own Metadata refresh teaches it too), and
    /// the client's retry finds the name.
    pub fn topic_id(&mut self, id: Uuid, op: u8) -> Result<(), i16> {
        if self.api_ok && self.rules.topics.is_none() {
            return Ok(());
        }
        match self.ids.name(id) {
            Some(n) if self.topic(&n, op) => Ok(()),
            Some(_) => Err(TOPIC_DENIED),
            None => {
                self.ids.want();
                self.note(false, "topic id", &id.to_string());
                Err(if self.api_ok {
                    UNKNOWN_TOPIC_ID
                } else {
                    TOPIC_DENIED
                })
            }
        }
    }

    pub fn group(&mut self, name: &str, op: u8) -> bool {
        let ok = self.api_ok && grants(&self.rules.groups, name, op);
        self.note(ok, "group", name)
    }

    pub fn txn(&mut self, name: &str, op: u8) -> bool {
        let ok = self.api_ok && grants(&self.rules.transactional_ids, name, op);
        self.note(ok, "transactional id", name)
    }

    /// Notes an API denied as a whole.
    pub fn api(&mut self) -> bool {
        let name = "api";
        self.note(self.api_ok, "api", name)
    }
}

/// Pass when nothing was denied; the answer when everything was; else the
/// reduced request, and a merge that puts `take(denied)` in front of the
/// broker's own entries (see [`frame::prepend`]): the broker's bytes are
/// never decoded.
pub fn finish<Q, R, E>(
    h: &Head,
    any_denied: bool,
    all_denied: bool,
    req: &Q,
    denied: R,
    take: fn(R) -> Vec<E>,
) -> Result<Outcome, String>
where
    Q: Encodable,
    R: Encodable,
    E: Encodable + Send + 'static,
{
    if !any_denied {
        return Ok(Outcome::Pass);
    }
    if all_denied {
        return Ok(Outcome::Answer(frame::response(h, &denied)?));
    }
    let (key, version) = (h.key, h.version);
    let items = take(denied);
    let m: Merge = Box::new(move |resp: &[u8]| frame::prepend(resp, key, version, &items));
    Ok(Outcome::Replace(frame::request(h, req)?, m))
}
