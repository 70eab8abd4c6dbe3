#![no_main]
//! The OAUTHBEARER GS2/key-value parser: never panics; an accepted token
//! is bounded, non-empty and part of the input.
use kgate::downstream::sasl::oauthbearer::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = parse(data) {
        assert!(!t.is_empty() && t.len() <= 16 * 1024);
        let s = std::str::from_utf8(data).unwrap();
        assert!(s.contains(t));
        assert!(s.starts_with("n,") && s.ends_with("\x01\x01"));
    }
});
