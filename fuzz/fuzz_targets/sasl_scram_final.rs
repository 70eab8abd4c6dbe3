#![no_main]
//! The SCRAM server's client-final parser: never panics, bounds what it
//! decodes, and the part before the proof is a prefix of the input.
use kgate::downstream::sasl::scram::parse_client_final;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = parse_client_final(data) {
        let s = std::str::from_utf8(data).unwrap();
        assert!(s.starts_with(f.without_proof));
        assert!(f.proof.len() <= 512 && f.channel_binding.len() <= 512);
        assert!(!f.nonce.contains(','));
    }
});
