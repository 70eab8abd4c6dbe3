//! The client side: TLS termination, the verified client identity, and
//! SASL toward clients.

pub mod sasl;
pub mod tls;
