//! The ApiVersions allow-list filter on arbitrary broker bytes: an error,
//! an unchanged error response (non-zero error code), or a list that parses
//! and offers only allowed keys and versions — never a panic.
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
    let Ok(out) = rewrite_api_versions(&frame, version) else { return };
    match list_api_versions(&out, version) {
        Ok(list) => {
            for (k, lo, hi) in list {
                if out[..] == frame[..] && out[8..10] != [0, 0] {
                    continue; // an error body passed on as it came
                }
                let (alo, ahi) = allowed_versions(k).expect("only allowed keys survive");
                assert!(lo >= alo && hi <= ahi && lo <= hi);
            }
        }
        Err(_) => {
            assert_eq!(out[..], frame[..], "a rewritten list must parse");
            assert_ne!(out[8..10], [0, 0], "only error responses pass unparsed");
        }
    }
});
