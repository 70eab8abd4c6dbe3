//! The Metadata rewriter on arbitrary broker bytes.
#![no_main]
mod rewrite_common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rewrite_common::check(kgate::protocol::decision::RewriteKind::Metadata, 3, 0, 13, data);
});
