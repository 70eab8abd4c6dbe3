//! The upstream side: dialling brokers (with dial-address mapping) and,
//! later, TLS and SASL toward them.

pub mod credentials;
pub mod dial;
pub mod probe;
pub mod sasl;
pub mod tls;
