//! The policy filter: what each principal may do (see `config::policy`).
//!
//! It asks to see only what the configured rules need: a request's header
//! where an API key is denied to someone and has no per-entry answer; the
//! whole request for keys that carry a restricted resource (topics,
//! groups, transactional ids) or that some rule denies and that have a
//! per-entry answer; and Metadata responses when topics are restricted.
//! With no `[policy]` the filter is not in the chain at all.
//!
//! A denial is an answer: denied entries get Kafka's error (29, 30, 31,
//! 53) in a well-formed response. A request with allowed and denied
//! entries is split: the allowed part goes on, and the denied entries are
//! merged back into the broker's response. See [`keys`] for what each API
//! key gets.

pub mod acls;
pub mod admin;
pub mod bounds;
pub mod describe;
pub mod frame;
pub mod gate;
pub mod groups;
pub mod ids;
pub mod keys;
pub mod list_groups;
pub mod metadata;
pub mod topics;
pub mod txn;

use super::{Conn, Filter, FilterError, Need, RequestVerdict, ResponseNeed};
use crate::config::policy::{PolicyConfig, Rules, ALWAYS_ALLOWED};
use crate::protocol::header::RequestHeader;
use bytes::BytesMut;
use gate::{Gate, Merge, Outcome};
use keys::{Handling, Resource};
use std::sync::Arc;
use tracing::warn;

/// What a connection keeps between a split request and its response.
enum Stashed {
    Merge(Merge),
    Metadata(metadata::Denied),
}

pub struct Policy {
    cfg: Arc<PolicyConfig>,
    ids: Arc<ids::TopicIds>,
    /// Per key (0..128): the request need the configured rules imply.
    needs: Vec<Need>,
    topics_restricted: bool,
    groups_restricted: bool,
}

impl Policy {
    pub fn new(cfg: Arc<PolicyConfig>, ids: Arc<ids::TopicIds>) -> Self {
        let any = |f: &dyn Fn(&Rules) -> bool| cfg.all_rules().any(f);
        let topics = any(&|r| r.topics.is_some());
        let groups = any(&|r| r.groups.is_some());
        let txns = any(&|r| r.transactional_ids.is_some());
        let needs = (0..128i16)
            .map(|k| {
                if ALWAYS_ALLOWED.contains(&k) {
                    return Need::Skip;
                }
                let denied_somewhere = any(&|r| !r.api_allowed(k));
                let res = keys::resources(k);
                let restricted = (res.contains(&Resource::Topic) && topics)
                    || (res.contains(&Resource::Group) && groups)
                    || (res.contains(&Resource::Txn) && txns);
                match keys::handling(k) {
                    Handling::Entries if restricted || denied_somewhere => Need::Whole,
                    _ if restricted || denied_somewhere => Need::Header,
                    _ => Need::Skip,
                }
            })
            .collect();
        Policy {
            cfg,
            ids,
            needs,
            topics_restricted: topics,
            groups_restricted: groups,
        }
    }

    fn decide(
        &self,
        conn: &dyn Conn,
        h: &RequestHeader,
        frame: &[u8],
    ) -> Result<RequestVerdict, FilterError> {
        let principal = conn.principal();
        let rules = self.cfg.rules_for(principal.as_deref());
        let api_ok = rules.api_allowed(h.api_key);
        let mut g = Gate::new(rules, api_ok, &self.ids);
        let restricted = keys::restricted(h.api_key, rules);
        let out = if (!restricted || h.api_key == keys::LIST_GROUPS) && api_ok {
            // ListGroups is filtered on its way back.
            Outcome::Pass
        } else if keys::handling(h.api_key) == Handling::Entries {
            if h.api_key == 3 {
                match metadata::request(&mut g, frame).map_err(|e| malformed(h, e))? {
                    metadata::Request::Pass => Outcome::Pass,
                    metadata::Request::Replace(b, d) => {
                        conn.stash(h.correlation_id, Box::new(Stashed::Metadata(d)));
                        return Ok(RequestVerdict::Replace(b));
                    }
                }
            } else {
                keys::entries(&mut g, h, frame).map_err(|e| malformed(h, e))?
            }
        } else if restricted && api_ok {
            // A key carrying a restricted resource kgate cannot check
            // per entry: denied as a whole.
            g.api_ok = false;
            keys::whole(&mut g, h)
        } else {
            keys::whole(&mut g, h)
        };
        if g.denied > 0 || !g.api_ok {
            log_denial(conn, h, principal.as_deref(), &g);
        }
        match out {
            Outcome::Pass => Ok(RequestVerdict::Pass),
            Outcome::Answer(b) => Ok(RequestVerdict::Answer(b)),
            Outcome::Replace(b, m) => {
                conn.stash(h.correlation_id, Box::new(Stashed::Merge(m)));
                Ok(RequestVerdict::Replace(b))
            }
            Outcome::Close(why) => Err(FilterError::Rejected {
                api_key: h.api_key,
                api_version: h.api_version,
                why,
            }),
        }
    }
}

fn malformed(h: &RequestHeader, cause: String) -> FilterError {
    FilterError::MalformedRequest {
        api_key: h.api_key,
        cause: format!("policy cannot read v{} of it: {cause}", h.api_version),
    }
}

fn log_denial(conn: &dyn Conn, h: &RequestHeader, principal: Option<&str>, g: &Gate) {
    let api = keys::name(h.api_key);
    let (kind, resource) = match &g.first {
        // Topic, group and transactional ids come from the client: cut.
        Some((k, n)) => (*k, crate::logs::clip(n)),
        None => ("api", api.to_string()),
    };
    crate::metrics::get().policy_denials.add((api, kind), 1);
    let who = crate::logs::clip(principal.unwrap_or("(none)"));
    if let Some(suppressed) = crate::logs::allow(&format!("policy:{who}:{api}:{kind}")) {
        warn!(
            listener = conn.listener(),
            client = %conn.client(),
            principal = %who,
            api,
            resource_type = kind,
            %resource,
            denied = g.denied.max(1),
            suppressed,
            "policy denied a request; answered with an authorization error"
        );
    }
}

impl Filter for Policy {
    fn name(&self) -> &'static str {
        "policy"
    }

    fn request_need(&self, api_key: i16, _version: i16) -> Need {
        usize::try_from(api_key)
            .ok()
            .and_then(|k| self.needs.get(k).copied())
            .unwrap_or(Need::Header)
    }

    fn response_need(&self, api_key: i16, _version: i16) -> ResponseNeed {
        match api_key {
            3 if self.topics_restricted => ResponseNeed::Whole,
            keys::LIST_GROUPS if self.groups_restricted => ResponseNeed::Whole,
            _ => ResponseNeed::Skip,
        }
    }

    fn on_request(
        &self,
        conn: &dyn Conn,
        h: &RequestHeader,
        frame: &[u8],
    ) -> Result<RequestVerdict, FilterError> {
        self.decide(conn, h, frame)
    }

    fn on_response(
        &self,
        conn: &dyn Conn,
        h: &RequestHeader,
        frame: &[u8],
    ) -> Result<Option<BytesMut>, FilterError> {
        let bad = |cause: String| FilterError::MalformedResponse {
            api_key: h.api_key,
            api_version: h.api_version,
            cause,
        };
        let stashed = conn
            .unstash(h.correlation_id)
            .and_then(|b| b.downcast::<Stashed>().ok());
        match stashed.map(|b| *b) {
            Some(Stashed::Merge(m)) => m(frame).map(Some).map_err(bad),
            Some(Stashed::Metadata(d)) => self.metadata_response(conn, h, frame, d).map_err(bad),
            None if h.api_key == 3 => self.metadata_response(conn, h, frame, Vec::new()).map_err(bad),
            None if h.api_key == keys::LIST_GROUPS => {
                let principal = conn.principal();
                let rules = self.cfg.rules_for(principal.as_deref());
                list_groups::response(rules, frame, h.api_version).map_err(bad)
            }
            None => Ok(None),
        }
    }
}

impl Policy {
    fn metadata_response(
        &self,
        conn: &dyn Conn,
        h: &RequestHeader,
        frame: &[u8],
        denied: metadata::Denied,
    ) -> Result<Option<BytesMut>, String> {
        let principal = conn.principal();
        let rules = self.cfg.rules_for(principal.as_deref());
        metadata::response(rules, &self.ids, frame, h.api_version, denied)
    }
}

#[cfg(test)]
mod tests;
