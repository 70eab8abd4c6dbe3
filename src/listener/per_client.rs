//! Connections per client IP address, for `max_connections_per_client`:
//! one buggy or hostile local process cannot take every slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct PerClient {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// Counts one connection from `ip` until dropped.
pub struct Entered {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: Option<IpAddr>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let Some(ip) = self.ip else { return };
        let mut m = match self.open.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

impl PerClient {
    /// `None` when `ip` already has `limit` connections. Without a limit
    /// nothing is counted.
    pub fn enter(&self, ip: IpAddr, limit: Option<usize>) -> Option<Entered> {
        let Some(limit) = limit else {
            return Some(Entered {
                open: self.open.clone(),
                ip: None,
            });
        };
        let mut m = match self.open.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let n = m.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(Entered {
            open: self.open.clone(),
            ip: Some(ip),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_limit_and_slots_come_back() {
        let p = PerClient::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let one = p.enter(a, Some(2)).unwrap();
        let _two = p.enter(a, Some(2)).unwrap();
        assert!(p.enter(a, Some(2)).is_none());
        assert!(p.enter(b, Some(2)).is_some(), "other clients are not affected");
        drop(one);
        assert!(p.enter(a, Some(2)).is_some());
        assert!(p.enter(a, None).is_some(), "no limit: always in");
    }
}
