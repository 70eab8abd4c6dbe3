#![no_main]
//! The PLAIN parser: never panics; an accepted message names a bounded
//! user and password that occur in the input.
use kgate::downstream::sasl::plain::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = parse(data) {
        assert!(!p.user.is_empty() && p.user.len() <= 255);
        assert!(!p.password.is_empty() && p.password.len() <= 255);
        assert!(!p.password.contains(&0));
        assert!(data.ends_with(p.password));
    }
});
