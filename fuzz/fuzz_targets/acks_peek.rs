#![no_main]
use kgate::protocol::header::{peek_produce_acks, peek_request_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut frame = vec![0u8; 4];
    frame.extend_from_slice(data);
    if let Ok(h) = peek_request_header(&frame) {
        let _ = peek_produce_acks(&frame, &h);
    }
});
