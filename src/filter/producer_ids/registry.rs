//! Which cluster generation issued each producer id kgate handed a client,
//! and the ids kgate maps them to on a later generation.
//!
//! A producer keeps its id across a cut-over. On a cluster that did not
//! issue it, that id is either unknown (fine today) or, after a rollback,
//! still holds the old sequence there (OUT_OF_ORDER_SEQUENCE_NUMBER, fatal
//! for librdkafka), or belongs to another producer the new cluster issued
//! the same number to. So on a later generation kgate gives the client's
//! id a fresh one from the current cluster (fetched once, shared by every
//! connection of that producer) and counts its sequences from 0 per
//! partition. An id the current cluster issues that clashes with one still
//! held from an earlier generation is handed to the client as a virtual
//! id from a range clusters never reach, and mapped back.
//!
//! Everything is bounded: [`MAX_ENTRIES`] ids and mappings (the oldest go
//! first), [`MAX_PENDING`] ids waiting for a fetch.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Mutex;

pub const MAX_ENTRIES: usize = 100_000;
pub const MAX_PENDING: usize = 10_000;
/// Partitions whose first sequence is kept per waiting producer.
pub const MAX_PARTITIONS: usize = 100_000;
/// Virtual ids start here ("kg" in the top bytes); Kafka allocates ids in
/// blocks from 0 and never comes near.
pub const VIRTUAL_BASE: i64 = 0x6b67 << 48;

/// A client's producer (id, epoch) on one cluster generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub pid: i64,
    pub epoch: i16,
    pub generation: u64,
}

/// What the cluster knows the producer as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapped {
    pub pid: i64,
    pub epoch: i16,
    /// Sequences count from 0 per partition (a fresh id); false for a
    /// virtual id, whose sequences are the cluster's own.
    pub rebase: bool,
}

/// What to do with one record batch's producer id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Forward as it is.
    Pass,
    /// Rewrite to this.
    Map(Mapped),
    /// A fresh id is being fetched: answer a retriable error.
    Wait,
}

struct Slot {
    to: Mapped,
    /// First sequence forwarded per (topic, partition).
    bases: HashMap<(String, i32), i32>,
}

#[derive(Default)]
struct Inner {
    issued: HashMap<i64, u64>,
    issued_order: VecDeque<i64>,
    mapped: HashMap<Key, Slot>,
    mapped_order: VecDeque<Key>,
    pending: HashSet<Key>,
    fetching: HashSet<Key>,
    /// The lowest sequence seen per partition while a key waits: the
    /// client's oldest unacknowledged batch, where counting from 0 starts
    /// (a newer batch can arrive first, before the older ones' retries).
    waiting: HashMap<Key, HashMap<(String, i32), i32>>,
    next_virtual: i64,
}

#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
    /// Set once anything was issued or mapped: until then Produce is not
    /// decoded at all (read without the lock).
    used: AtomicBool,
    wanted: tokio::sync::Notify,
}

fn bounded_insert<K: std::hash::Hash + Eq + Copy, V>(
    map: &mut HashMap<K, V>,
    order: &mut VecDeque<K>,
    k: K,
    v: V,
) {
    if map.insert(k, v).is_none() {
        order.push_back(k);
    }
    while map.len() > MAX_ENTRIES {
        match order.pop_front() {
            Some(old) => {
                map.remove(&old);
            }
            None => break,
        }
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The cluster of `generation` issued (pid, epoch) to an idempotent
    /// producer. Returns the virtual id to hand the client instead when
    /// `pid` is still held from an earlier generation.
    pub fn issued(&self, pid: i64, epoch: i16, generation: u64) -> Option<i64> {
        if pid < 0 {
            return None;
        }
        self.used.store(true, Relaxed);
        let mut g = self.lock();
        let g = &mut *g;
        match g.issued.get(&pid) {
            Some(&was) if was != generation => {
                let v = VIRTUAL_BASE + g.next_virtual;
                g.next_virtual = (g.next_virtual + 1) % (1 << 47);
                bounded_insert(&mut g.issued, &mut g.issued_order, v, generation);
                let key = Key {
                    pid: v,
                    epoch,
                    generation,
                };
                let slot = Slot {
                    to: Mapped {
                        pid,
                        epoch,
                        rebase: false,
                    },
                    bases: HashMap::new(),
                };
                bounded_insert(&mut g.mapped, &mut g.mapped_order, key, slot);
                Some(v)
            }
            _ => {
                bounded_insert(&mut g.issued, &mut g.issued_order, pid, generation);
                None
            }
        }
    }

    /// What a batch of (pid, epoch) becomes on `generation`.
    pub fn lookup(&self, pid: i64, epoch: i16, generation: u64) -> Lookup {
        if pid < 0 {
            return Lookup::Pass;
        }
        let key = Key {
            pid,
            epoch,
            generation,
        };
        let mut g = self.lock();
        if let Some(s) = g.mapped.get(&key) {
            return Lookup::Map(s.to);
        }
        match g.issued.get(&pid) {
            Some(&was) if was != generation => {
                if !g.fetching.contains(&key) && g.pending.len() < MAX_PENDING && g.pending.insert(key) {
                    drop(g);
                    self.wanted.notify_one();
                }
                Lookup::Wait
            }
            _ => Lookup::Pass,
        }
    }

    /// A batch of `key` on (topic, partition) was answered "retry" while
    /// its id is fetched.
    pub fn waited(&self, key: Key, topic: &str, partition: i32, seq: i32) {
        let mut g = self.lock();
        if seq < 0 || (!g.waiting.contains_key(&key) && g.waiting.len() >= MAX_PENDING) {
            return;
        }
        let bases = g.waiting.entry(key).or_default();
        if bases.len() < MAX_PARTITIONS {
            let b = bases.entry((topic.to_string(), partition)).or_insert(seq);
            *b = (*b).min(seq);
        }
    }

    /// The sequence to send for `seq` of a rebased mapping on one partition.
    pub fn sequence(&self, key: Key, topic: &str, partition: i32, seq: i32) -> i32 {
        let mut g = self.lock();
        let Some(s) = g.mapped.get_mut(&key) else {
            return seq;
        };
        if !s.to.rebase || seq < 0 {
            return seq;
        }
        let base = *s.bases.entry((topic.to_string(), partition)).or_insert(seq);
        (i64::from(seq) - i64::from(base)).rem_euclid(1 << 31) as i32
    }

    /// Resolves when a producer id waits for a fetch.
    pub async fn wanted(&self) {
        self.wanted.notified().await;
    }

    /// Takes the ids waiting on `generation` (the rest are dropped: their
    /// producers ask again on the current generation).
    pub fn take_pending(&self, generation: u64) -> Vec<Key> {
        let mut g = self.lock();
        let keys: Vec<Key> = g.pending.drain().filter(|k| k.generation == generation).collect();
        g.fetching.extend(keys.iter().copied());
        keys
    }

    /// A fresh id fetched for `key`.
    pub fn fill(&self, key: Key, pid: i64, epoch: i16) {
        let mut g = self.lock();
        let g = &mut *g;
        g.fetching.remove(&key);
        let slot = Slot {
            to: Mapped {
                pid,
                epoch,
                rebase: true,
            },
            bases: g.waiting.remove(&key).unwrap_or_default(),
        };
        bounded_insert(&mut g.mapped, &mut g.mapped_order, key, slot);
    }

    /// A fetch failed: the producers' next batch asks again.
    pub fn unfetch(&self, keys: &[Key]) {
        let mut g = self.lock();
        for k in keys {
            g.fetching.remove(k);
        }
    }

    /// Nothing can need a rewrite: no id was ever issued or mapped.
    pub fn is_quiet(&self) -> bool {
        !self.used.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_from_an_earlier_generation_waits_for_a_fresh_one_then_maps() {
        let r = Registry::default();
        assert!(r.is_quiet());
        assert_eq!(r.issued(7, 0, 1), None);
        assert!(!r.is_quiet());
        assert_eq!(r.lookup(7, 0, 1), Lookup::Pass, "the issuing generation");
        assert_eq!(r.lookup(99, 0, 2), Lookup::Pass, "never seen: left alone");
        assert_eq!(r.lookup(7, 0, 2), Lookup::Wait);
        assert_eq!(r.lookup(7, 0, 2), Lookup::Wait, "asked once");
        let keys = r.take_pending(2);
        assert_eq!(keys.len(), 1);
        assert!(r.take_pending(2).is_empty());
        assert_eq!(r.lookup(7, 0, 2), Lookup::Wait, "still fetching");
        assert!(r.take_pending(2).is_empty(), "not asked twice while fetching");
        r.fill(keys[0], 40, 0);
        let m = Mapped {
            pid: 40,
            epoch: 0,
            rebase: true,
        };
        assert_eq!(r.lookup(7, 0, 2), Lookup::Map(m));
        assert_eq!(r.sequence(keys[0], "t", 0, 1500), 0);
        assert_eq!(r.sequence(keys[0], "t", 0, 1505), 5);
        assert_eq!(r.sequence(keys[0], "t", 1, 20), 0, "per partition");
        assert_eq!(
            r.sequence(keys[0], "t", 0, 2),
            i32::MAX - 1497,
            "wraps, never negative"
        );
        // A rollback to generation 3 asks again.
        assert_eq!(r.lookup(7, 0, 3), Lookup::Wait);
    }

    #[test]
    fn counting_starts_at_the_oldest_batch_seen_while_waiting() {
        let r = Registry::default();
        r.issued(1, 0, 1);
        assert_eq!(r.lookup(1, 0, 2), Lookup::Wait);
        let key = Key {
            pid: 1,
            epoch: 0,
            generation: 2,
        };
        // A newer batch answered first, then the older one.
        r.waited(key, "t", 0, 1334);
        r.waited(key, "t", 0, 794);
        r.waited(key, "t", 1, 793);
        let k = r.take_pending(2);
        r.fill(k[0], 2, 0);
        // The newer batch may be forwarded first: it is not the base.
        assert_eq!(r.sequence(key, "t", 0, 1334), 540);
        assert_eq!(r.sequence(key, "t", 0, 794), 0);
        assert_eq!(r.sequence(key, "t", 1, 793), 0);
        assert_eq!(
            r.sequence(key, "t", 2, 10),
            0,
            "a partition not seen while waiting"
        );
    }

    #[test]
    fn a_clashing_id_is_handed_out_virtual_and_mapped_back() {
        let r = Registry::default();
        r.issued(5, 0, 1);
        let v = r.issued(5, 0, 2).expect("5 is still held from generation 1");
        assert!(v >= VIRTUAL_BASE);
        let back = Mapped {
            pid: 5,
            epoch: 0,
            rebase: false,
        };
        assert_eq!(r.lookup(v, 0, 2), Lookup::Map(back));
        let key = Key {
            pid: v,
            epoch: 0,
            generation: 2,
        };
        assert_eq!(r.sequence(key, "t", 0, 9), 9, "the cluster's own sequences");
        // The producer from generation 1 still holding 5 is remapped.
        assert_eq!(r.lookup(5, 0, 2), Lookup::Wait);
    }

    #[test]
    fn pending_of_another_generation_is_dropped_and_a_failed_fetch_asks_again() {
        let r = Registry::default();
        r.issued(1, 0, 1);
        assert_eq!(r.lookup(1, 0, 2), Lookup::Wait);
        assert!(r.take_pending(3).is_empty());
        assert_eq!(r.lookup(1, 0, 3), Lookup::Wait);
        let k = r.take_pending(3);
        r.unfetch(&k);
        assert_eq!(r.lookup(1, 0, 3), Lookup::Wait);
        assert_eq!(r.take_pending(3), k);
    }

    #[test]
    fn bounded() {
        let r = Registry::default();
        for pid in 0..(MAX_ENTRIES as i64 + 10) {
            r.issued(pid, 0, 1);
        }
        let g = r.lock();
        assert_eq!(g.issued.len(), MAX_ENTRIES);
        assert!(!g.issued.contains_key(&0), "the oldest went first");
    }
}
