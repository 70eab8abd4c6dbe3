//! The ApiVersions allow-list filter on arbitrary broker bytes.
#![no_main]
use kgate::protocol::api_versions::{list_api_versions, rewrite_api_versions};
use kgate::protocol::decision::allowed_versions;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&v, rest)) = data.split_first() else { return };
    let version = (v % 5) as i16;
    let mut frame = ((rest.len() + 4) as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&[0, 0, 0, 1]);
    frame.extend_from_slice(rest);
    if let Ok(out) = rewrite_api_versions(&frame, version) {
        for (k, lo, hi) in list_api_versions(&out, version).expect("filtered list parses") {
            let (alo, ahi) = allowed_versions(k).expect("only allowed keys survive");
            assert!(lo >= alo && hi <= ahi && lo <= hi);
        }
    }
});
