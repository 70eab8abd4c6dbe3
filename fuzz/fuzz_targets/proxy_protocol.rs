#![no_main]
//! The PROXY protocol v1/v2 header parser: never panics, never claims more
//! bytes than it was given or than the bounds allow, and is a prefix
//! decision (more bytes never turn a verdict into a different one).
use kgate::listener::proxy_protocol::{parse, Parsed, V1_MAX, V2_FIXED, V2_MAX_PAYLOAD};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let r = parse(data);
    if let Ok(Parsed::Done(h)) = &r {
        assert!(h.len <= data.len());
        assert!(h.len <= V1_MAX.max(V2_FIXED + V2_MAX_PAYLOAD));
        // The same header with trailing bytes parses the same.
        let mut more = data[..h.len].to_vec();
        more.extend_from_slice(b"\0\0\0\x10trailing");
        assert_eq!(parse(&more), r);
    }
    if let Ok(Parsed::Absent) = r {
        let mut more = data.to_vec();
        more.push(0);
        assert_eq!(parse(&more), Ok(Parsed::Absent));
    }
});
