//! The chain with scripted filters: how declarations fold into the plan,
//! and how verdicts, replacements and responses combine.

use super::*;
use crate::filter::tests::TestConn;
use bytes::BytesMut;
use std::sync::Mutex;

type Verdict = fn(&[u8]) -> RequestVerdict;

/// Declares `req`/`resp` for `key` (every version), answers requests with
/// `verdict`, and records every frame it is shown.
struct Probe {
    name: &'static str,
    key: i16,
    req: Need,
    resp: ResponseNeed,
    verdict: Verdict,
    /// Appended to a whole response; a tail gets `tail_extra` more bytes.
    mark: &'static [u8],
    tail_extra: usize,
    seen: Mutex<Vec<Vec<u8>>>,
}

fn probe(name: &'static str, key: i16, req: Need, resp: ResponseNeed) -> Probe {
    Probe {
        name,
        key,
        req,
        resp,
        verdict: |_| RequestVerdict::Pass,
        mark: b"",
        tail_extra: 0,
        seen: Mutex::new(Vec::new()),
    }
}

impl Filter for Probe {
    fn name(&self) -> &'static str {
        self.name
    }
    fn request_need(&self, api_key: i16, _: i16) -> Need {
        if api_key == self.key {
            self.req
        } else {
            Need::Skip
        }
    }
    fn response_need(&self, api_key: i16, _: i16) -> ResponseNeed {
        if api_key == self.key {
            self.resp
        } else {
            ResponseNeed::Skip
        }
    }
    fn on_request(
        &self,
        _: &dyn Conn,
        _: &RequestHeader,
        frame: &[u8],
    ) -> Result<RequestVerdict, FilterError> {
        self.seen.lock().unwrap().push(frame.to_vec());
        Ok((self.verdict)(frame))
    }
    fn on_response(
        &self,
        _: &dyn Conn,
        _: &RequestHeader,
        frame: &[u8],
    ) -> Result<Option<BytesMut>, FilterError> {
        self.seen.lock().unwrap().push(frame.to_vec());
        if self.mark.is_empty() {
            return Ok(None);
        }
        let mut out = BytesMut::from(frame);
        out.extend_from_slice(self.mark);
        Ok(Some(out))
    }
    fn on_response_tail(
        &self,
        _: &dyn Conn,
        _: &RequestHeader,
        tail: &[u8],
    ) -> Result<Option<BytesMut>, FilterError> {
        self.seen.lock().unwrap().push(tail.to_vec());
        let mut out = BytesMut::from(tail);
        out.iter_mut().for_each(|b| *b = b.wrapping_add(1));
        out.extend_from_slice(&vec![0; self.tail_extra]);
        Ok(Some(out))
    }
}

fn chain(filters: Vec<Probe>) -> (Chain, Vec<Arc<Probe>>) {
    let probes: Vec<Arc<Probe>> = filters.into_iter().map(Arc::new).collect();
    let c = Chain::new(probes.iter().map(|p| p.clone() as Arc<dyn Filter>).collect());
    (c, probes)
}

fn header(api_key: i16) -> RequestHeader {
    RequestHeader {
        api_key,
        api_version: 3,
        correlation_id: 7,
    }
}

fn seen(p: &Probe) -> Vec<Vec<u8>> {
    p.seen.lock().unwrap().clone()
}

#[test]
fn the_plan_takes_the_most_any_filter_needs_and_names_who_needs_it() {
    let (c, _) = chain(vec![
        probe("a", 3, Need::Header, ResponseNeed::Skip),
        probe("b", 3, Need::Whole, ResponseNeed::FetchTail),
        probe("c", 3, Need::Skip, ResponseNeed::Whole),
        probe("d", 1, Need::Head, ResponseNeed::FetchTail),
    ]);
    assert_eq!(c.names(), ["a", "b", "c", "d"]);
    let p = c.plan(3, 12);
    assert_eq!((p.request, p.request_filters), (Need::Whole, 0b0011));
    assert_eq!((p.response, p.response_filters), (ResponseNeed::Whole, 0b0110));
    let p = c.plan(1, 16);
    assert_eq!((p.request, p.request_filters), (Need::Head, 0b1000));
    assert_eq!(
        (p.response, p.response_filters),
        (ResponseNeed::FetchTail, 0b1000)
    );
    assert_eq!(c.plan(50, 0), Plan::PASS, "nobody asked: streamed as is");
    // Outside the precomputed table the plan is folded on the fly, the same.
    assert_eq!(c.plan(3, 40), c.plan(3, 12));
    assert_eq!(c.plan(-1, 0), Plan::PASS);
    assert_eq!(c.plan(1000, 0), Plan::PASS);
}

#[test]
fn the_first_answer_wins_and_later_filters_do_not_run() {
    let mut a = probe("a", 3, Need::Header, ResponseNeed::Skip);
    a.verdict = |_| RequestVerdict::Answer(Bytes::from_static(b"from a"));
    let mut b = probe("b", 3, Need::Header, ResponseNeed::Skip);
    b.verdict = |_| RequestVerdict::Answer(Bytes::from_static(b"from b"));
    let (c, p) = chain(vec![probe("pass", 3, Need::Header, ResponseNeed::Skip), a, b]);
    let mut plan = c.plan(3, 3);
    match c.on_request(&TestConn::default(), &header(3), b"req", &mut plan) {
        Ok(RequestVerdict::Answer(b)) => assert_eq!(&b[..], b"from a"),
        other => panic!("{other:?}"),
    }
    assert_eq!(seen(&p[0]).len(), 1, "the filter before ran");
    assert!(seen(&p[2]).is_empty(), "the filter after the answer did not run");
}

#[test]
fn no_response_is_kept_across_filters_and_unlisted_filters_never_run() {
    let mut a = probe("a", 3, Need::Header, ResponseNeed::Skip);
    a.verdict = |_| RequestVerdict::NoResponse;
    let other_key = probe("other", 0, Need::Whole, ResponseNeed::Whole);
    let (c, p) = chain(vec![
        a,
        other_key,
        probe("b", 3, Need::Header, ResponseNeed::Skip),
    ]);
    let mut plan = c.plan(3, 3);
    let v = c.on_request(&TestConn::default(), &header(3), b"req", &mut plan);
    assert!(matches!(v, Ok(RequestVerdict::NoResponse)), "{v:?}");
    assert_eq!(seen(&p[2]), [b"req".to_vec()], "later filters still see it");
    assert!(seen(&p[1]).is_empty(), "a filter that did not ask is skipped");
}

#[test]
fn a_replacement_feeds_later_filters_and_forces_a_whole_response() {
    let mut a = probe("a", 3, Need::Whole, ResponseNeed::Skip);
    a.verdict = |_| RequestVerdict::Replace(Bytes::from_static(b"replaced"));
    let (c, p) = chain(vec![
        probe("before", 3, Need::Header, ResponseNeed::FetchTail),
        a,
        probe("after", 3, Need::Whole, ResponseNeed::Skip),
    ]);
    let mut plan = c.plan(3, 3);
    assert_eq!(plan.response, ResponseNeed::FetchTail);
    let v = c.on_request(&TestConn::default(), &header(3), b"original", &mut plan);
    match v {
        Ok(RequestVerdict::Replace(b)) => assert_eq!(&b[..], b"replaced"),
        other => panic!("{other:?}"),
    }
    assert_eq!(seen(&p[0]), [b"original".to_vec()]);
    assert_eq!(
        seen(&p[2]),
        [b"replaced".to_vec()],
        "the next filter sees the replacement"
    );
    assert_eq!(
        plan.response,
        ResponseNeed::Whole,
        "the replacer sees the response whole"
    );
    assert_eq!(
        plan.response_filters, 0b011,
        "and is added to the response filters"
    );
}

#[test]
fn replacing_a_request_that_expects_no_response_is_refused() {
    let mut a = probe("a", 0, Need::Whole, ResponseNeed::Skip);
    a.verdict = |_| RequestVerdict::NoResponse;
    let mut b = probe("b", 0, Need::Whole, ResponseNeed::Skip);
    b.verdict = |_| RequestVerdict::Replace(Bytes::from_static(b"x"));
    let (c, _) = chain(vec![a, b]);
    let mut plan = c.plan(0, 3);
    let v = c.on_request(&TestConn::default(), &header(0), b"produce", &mut plan);
    assert!(
        matches!(v, Err(FilterError::Rejected { api_key: 0, .. })),
        "{v:?}"
    );
}

#[test]
fn responses_go_through_the_plan_s_filters_in_order() {
    let mut a = probe("a", 3, Need::Skip, ResponseNeed::Whole);
    a.mark = b"+a";
    let mut b = probe("b", 3, Need::Skip, ResponseNeed::Whole);
    b.mark = b"+b";
    let (c, p) = chain(vec![a, probe("req-only", 3, Need::Header, ResponseNeed::Skip), b]);
    let plan = c.plan(3, 3);
    let out = c
        .on_response(
            &TestConn::default(),
            &header(3),
            Bytes::from_static(b"resp"),
            &plan,
        )
        .unwrap();
    assert_eq!(&out[..], b"resp+a+b");
    assert_eq!(seen(&p[2]), [b"resp+a".to_vec()], "each sees the previous output");
    assert!(seen(&p[1]).is_empty());
}

#[test]
fn a_tail_keeps_its_length_or_the_response_fails() {
    let (c, _) = chain(vec![probe("a", 1, Need::Skip, ResponseNeed::FetchTail)]);
    let plan = c.plan(1, 16);
    let out = c
        .on_response_tail(
            &TestConn::default(),
            &header(1),
            Bytes::from_static(&[1, 2, 3]),
            &plan,
        )
        .unwrap();
    assert_eq!(&out[..], [2, 3, 4], "a same-length replacement goes out");
    let mut grow = probe("grow", 1, Need::Skip, ResponseNeed::FetchTail);
    grow.tail_extra = 2;
    let (c, _) = chain(vec![grow]);
    let e = c
        .on_response_tail(
            &TestConn::default(),
            &header(1),
            Bytes::from_static(&[1, 2, 3]),
            &plan,
        )
        .unwrap_err();
    match e {
        FilterError::MalformedResponse {
            api_key: 1, cause, ..
        } => {
            assert!(cause.contains("grow") && cause.contains("length"), "{cause}")
        }
        e => panic!("{e:?}"),
    }
}
