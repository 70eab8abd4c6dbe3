//! The FindCoordinator rewriter on arbitrary broker bytes.
#![no_main]
mod rewrite_common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rewrite_common::check(kgate::protocol::decision::RewriteKind::FindCoordinator, 10, 0, 6, data);
});
