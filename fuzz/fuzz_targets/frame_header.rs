//! The frame reader and header peek on arbitrary client bytes: never a
//! panic, never an allocation beyond the configured frame limit.
#![no_main]
use kgate::protocol::frame::FrameReader;
use kgate::protocol::header::{peek_request_header, request_body_offset};
use libfuzzer_sys::fuzz_target;

static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let rt = RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().unwrap());
    rt.block_on(async {
        let mut r = FrameReader::new(data, 64 * 1024, 8, true);
        while let Ok(Some(frame)) = r.next_frame().await {
            assert!(frame.len() <= 64 * 1024 + 4);
            if let Ok(h) = peek_request_header(&frame) {
                let _ = request_body_offset(&frame, &h);
                let _ = kgate::protocol::decision::decide(h.api_key, h.api_version);
            }
        }
    });
});
