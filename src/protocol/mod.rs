//! The Kafka codec: framing, header peeks, the decode-or-pass decision and
//! the ApiVersions allow-list. Requests are never decoded beyond these.

pub mod api_versions;
pub mod catalog;
pub mod decision;
pub mod fetch_scan;
pub mod frame;
pub mod header;
pub mod sasl_server;
pub mod wire;
