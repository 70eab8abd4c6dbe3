//! The client side: TLS termination and the verified client identity.

pub mod tls;
