//! The FetchEndpoints rewriter on arbitrary broker bytes.
#![no_main]
mod rewrite_common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rewrite_common::check(kgate::protocol::decision::RewriteKind::FetchEndpoints, 1, 16, 18, data);
});
