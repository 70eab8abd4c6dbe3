//! TLS shared by both sides: loading certificates and keys (PKCS#8,
//! PKCS#1, SEC1 and encrypted PKCS#8), reading identities, reloading files
//! when they change, describing failures, and the plain-or-TLS stream.

pub mod describe;
pub mod identity;
pub mod material;
pub mod names;
pub mod reload;
pub mod stream;

/// Installs ring as the process-wide rustls crypto provider (idempotent).
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
