//! The DescribeCluster rewriter on arbitrary broker bytes.
#![no_main]
mod rewrite_common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rewrite_common::check(kgate::protocol::decision::RewriteKind::DescribeCluster, 60, 0, 2, data);
});
