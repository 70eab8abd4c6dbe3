//! The chain: filters in order, and the decode-or-pass table folded from
//! their declarations once at start-up.

use super::{Conn, Filter, FilterError, Inject, Need, RequestVerdict, ResponseNeed};
use crate::protocol::header::RequestHeader;
use bytes::Bytes;
use std::sync::Arc;
use tokio::time::Instant;

/// Keys and versions covered by the precomputed table; anything outside is
/// folded on the fly (and refused by the allow-list anyway).
const KEYS: usize = 128;
const VERSIONS: usize = 32;
/// A chain holds at most this many filters (one bit each in a mask).
pub const MAX_FILTERS: usize = 32;

/// What the chain must do with one (api_key, version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The most any filter needs of the request.
    pub request: Need,
    pub request_filters: u32,
    /// The most any filter needs of the response.
    pub response: ResponseNeed,
    pub response_filters: u32,
}

impl Plan {
    const PASS: Plan = Plan {
        request: Need::Skip,
        request_filters: 0,
        response: ResponseNeed::Skip,
        response_filters: 0,
    };
}

pub struct Chain {
    filters: Vec<Arc<dyn Filter>>,
    table: Vec<Plan>,
}

impl Chain {
    pub fn new(filters: Vec<Arc<dyn Filter>>) -> Self {
        assert!(filters.len() <= MAX_FILTERS, "too many filters in one chain");
        let mut c = Chain {
            filters,
            table: Vec::new(),
        };
        c.table = (0..KEYS * VERSIONS)
            .map(|i| c.fold((i / VERSIONS) as i16, (i % VERSIONS) as i16))
            .collect();
        c
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.filters.iter().map(|f| f.name()).collect()
    }

    fn fold(&self, api_key: i16, version: i16) -> Plan {
        let mut p = Plan::PASS;
        for (i, f) in self.filters.iter().enumerate() {
            let rq = f.request_need(api_key, version);
            if rq != Need::Skip {
                p.request = p.request.max(rq);
                p.request_filters |= 1 << i;
            }
            let rs = f.response_need(api_key, version);
            if rs != ResponseNeed::Skip {
                p.response = p.response.max(rs);
                p.response_filters |= 1 << i;
            }
        }
        p
    }

    /// The decode-or-pass decision for one request.
    pub fn plan(&self, api_key: i16, version: i16) -> Plan {
        match (usize::try_from(api_key), usize::try_from(version)) {
            (Ok(k), Ok(v)) if k < KEYS && v < VERSIONS => self.table[k * VERSIONS + v],
            _ => self.fold(api_key, version),
        }
    }

    fn each(&self, mask: u32) -> impl Iterator<Item = &Arc<dyn Filter>> {
        self.filters
            .iter()
            .enumerate()
            .filter(move |(i, _)| mask & (1 << i) != 0)
            .map(|(_, f)| f)
    }

    /// Runs the request filters of `plan`. The first `Answer` wins; a
    /// `NoResponse` from any filter is kept. A filter that replaces the
    /// request hands the replacement to the filters after it and is
    /// added to `plan`'s response filters, with the response seen whole,
    /// so it can put back what it took out.
    pub fn on_request(
        &self,
        conn: &dyn Conn,
        h: &RequestHeader,
        frame: &[u8],
        plan: &mut Plan,
    ) -> Result<RequestVerdict, FilterError> {
        let mut no_response = false;
        let mut replaced: Option<Bytes> = None;
        for (i, f) in self.filters.iter().enumerate() {
            if plan.request_filters & (1 << i) == 0 {
                continue;
            }
            let seen = replaced.as_deref().unwrap_or(frame);
            match f.on_request(conn, h, seen)? {
                RequestVerdict::Pass => {}
                RequestVerdict::NoResponse => no_response = true,
                RequestVerdict::Replace(b) => {
                    plan.response = ResponseNeed::Whole;
                    plan.response_filters |= 1 << i;
                    replaced = Some(b);
                }
                answer @ (RequestVerdict::Answer(_) | RequestVerdict::AnswerAndClose(..)) => {
                    return Ok(answer)
                }
            }
        }
        match (replaced, no_response) {
            (Some(_), true) => Err(FilterError::Rejected {
                api_key: h.api_key,
                api_version: h.api_version,
                why: "a filter replaced a request that expects no response",
            }),
            (Some(b), false) => Ok(RequestVerdict::Replace(b)),
            (None, true) => Ok(RequestVerdict::NoResponse),
            (None, false) => Ok(RequestVerdict::Pass),
        }
    }

    /// Runs the response filters of `plan` over a whole response.
    pub fn on_response(
        &self,
        conn: &dyn Conn,
        h: &RequestHeader,
        frame: Bytes,
        plan: &Plan,
    ) -> Result<Bytes, FilterError> {
        let mut out = frame;
        for f in self.each(plan.response_filters) {
            if let Some(new) = f.on_response(conn, h, &out)? {
                out = new.freeze();
            }
        }
        Ok(out)
    }

    /// Runs the tail filters over a streamed response's tagged-field tail.
    pub fn on_response_tail(
        &self,
        conn: &dyn Conn,
        h: &RequestHeader,
        tail: Bytes,
        plan: &Plan,
    ) -> Result<Bytes, FilterError> {
        let mut out = tail;
        for f in self.each(plan.response_filters) {
            if let Some(new) = f.on_response_tail(conn, h, &out)? {
                if new.len() != out.len() {
                    return Err(FilterError::MalformedResponse {
                        api_key: h.api_key,
                        api_version: h.api_version,
                        cause: format!("filter {} changed a streamed tail's length", f.name()),
                    });
                }
                out = new.freeze();
            }
        }
        Ok(out)
    }

    /// The earliest timer any filter asked for.
    pub fn next_timer(&self, conn: &dyn Conn) -> Option<Instant> {
        self.filters.iter().filter_map(|f| f.timer(conn)).min()
    }

    /// Runs every filter whose timer is due.
    pub async fn run_timers(&self, conn: &dyn Conn, io: &mut dyn Inject) -> Result<(), FilterError> {
        let now = Instant::now();
        for f in &self.filters {
            if f.timer(conn).is_some_and(|t| t <= now) {
                f.on_timer(conn, io).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
