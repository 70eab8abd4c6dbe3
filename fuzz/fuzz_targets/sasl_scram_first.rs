#![no_main]
//! The SCRAM server's client-first parser: never panics; what it accepts
//! is a GS2 header without channel binding, a bounded user and a
//! printable nonce, all taken from the input.
use kgate::downstream::sasl::scram::parse_client_first;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cf) = parse_client_first(data) {
        let s = std::str::from_utf8(data).unwrap();
        assert!(s.starts_with(cf.gs2_header));
        assert!(s.ends_with(cf.bare));
        assert!(!cf.user.is_empty() && cf.user.len() <= 255);
        assert!(!cf.nonce.is_empty() && !cf.nonce.contains(','));
        assert!(cf.gs2_header.starts_with("n,") || cf.gs2_header.starts_with("y,"));
    }
});
