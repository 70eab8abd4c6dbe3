//! The policy filter on arbitrary request bodies: every key it decodes, at
//! every version byte, for a principal whose rules restrict topics, groups
//! and transactional ids. Nothing may panic or abort (kafka-protocol only
//! sees bodies the bounds walk accepted); a replacement must be a frame.
//! The same bytes then come back as the broker's response (a merge into a
//! split request's response, or a Metadata response to filter).
#![no_main]
use kgate::config::policy::{op, Pattern, PolicyConfig, PrincipalRules, ResourceRule, Rules};
use kgate::filter::policy::Policy;
use kgate::filter::{Conn, Filter, RequestVerdict};
use kgate::protocol::header::RequestHeader;
use std::sync::{Arc, Mutex, OnceLock};

const KEYS: &[i16] = &[
    0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 19, 20, 21, 22, 23, 24, 25, 26, 28, 30, 31, 32, 33, 34, 37,
    42, 44, 61, 65, 68, 69, 75,
];

struct Fc(Mutex<Vec<(i32, Box<dyn std::any::Any + Send>)>>);

impl Conn for Fc {
    fn listener(&self) -> &str {
        "fuzz"
    }
    fn client(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], 1).into()
    }
    fn identity(&self) -> Option<&str> {
        None
    }
    fn broker(&self) -> Option<kgate::config::HostPort> {
        None
    }
    fn session_lifetime_ms(&self) -> i64 {
        0
    }
    fn set_session_lifetime_ms(&self, _: i64) {}
    fn reauth_due(&self) -> Option<tokio::time::Instant> {
        None
    }
    fn set_reauth_due(&self, _: Option<tokio::time::Instant>) {}
    fn principal(&self) -> Option<Arc<str>> {
        Some("alice".into())
    }
    fn stash(&self, c: i32, v: Box<dyn std::any::Any + Send>) {
        self.0.lock().unwrap().push((c, v));
    }
    fn unstash(&self, c: i32) -> Option<Box<dyn std::any::Any + Send>> {
        let mut s = self.0.lock().unwrap();
        let i = s.iter().position(|(x, _)| *x == c)?;
        Some(s.remove(i).1)
    }
}

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        let rule = |p: &str| {
            Some(vec![ResourceRule {
                pattern: Pattern::Prefix(p.into()),
                ops: op::READ | op::WRITE | op::DESCRIBE,
            }])
        };
        let cfg = PolicyConfig {
            default: Rules::everything(),
            principals: vec![PrincipalRules {
                names: vec![Pattern::Literal("alice".into())],
                rules: Rules {
                    apis: [true; 128],
                    topics: rule("orders."),
                    groups: rule("orders-"),
                    transactional_ids: rule("a-"),
                },
            }],
            unmatched: Rules::nothing(),
        };
        Policy::new(Arc::new(cfg), Default::default())
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let key = KEYS[data[0] as usize % KEYS.len()];
    let version = (data[1] % 20) as i16;
    let h = RequestHeader {
        api_key: key,
        api_version: version,
        correlation_id: 7,
    };
    let flexible = kgate::protocol::header::request_header_is_flexible(key, version);
    let mut frame = vec![0, 0, 0, 0];
    frame.extend_from_slice(&key.to_be_bytes());
    frame.extend_from_slice(&version.to_be_bytes());
    frame.extend_from_slice(&7i32.to_be_bytes());
    frame.extend_from_slice(&[0, 1, b'f']);
    if flexible {
        frame.push(0);
    }
    frame.extend_from_slice(&data[2..]);
    let n = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&n.to_be_bytes());
    let c = Fc(Mutex::new(Vec::new()));
    if let Ok(RequestVerdict::Replace(b) | RequestVerdict::Answer(b)) = policy().on_request(&c, &h, &frame) {
        assert_eq!(i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize, b.len() - 4);
    }
    let mut resp = vec![0, 0, 0, 0];
    resp.extend_from_slice(&7i32.to_be_bytes());
    resp.extend_from_slice(&data[2..]);
    let n = (resp.len() - 4) as i32;
    resp[..4].copy_from_slice(&n.to_be_bytes());
    if let Ok(Some(b)) = policy().on_response(&c, &h, &resp) {
        assert_eq!(i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize, b.len() - 4);
    }
});
