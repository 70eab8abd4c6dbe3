//! kgate: a Kafka proxy that gives every upstream broker its own local
//! listener and rewrites every broker address handed back to a client.
//!
//! The data path, in module order:
//! [`listener`] → [`session`] → [`protocol`] → [`rewrite`] → [`upstream`].

pub mod protocol;
pub mod rewrite;
