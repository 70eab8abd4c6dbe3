//! The upstream side, behind one entry point ([`connect::Connector`]):
//! dial mapping, TCP, TLS, SASL, credentials and per-broker back-off.
//! Nothing here imports the session or the listeners.

pub mod allow;
pub mod cluster;
pub mod connect;
pub mod credentials;
pub mod dial;
pub mod identity;
pub mod sasl;
pub mod storm;
pub mod throttle;
pub mod tls;
