//! A byte-bounded, sharded LRU cache.
//!
//! Keys hash to one of N shards, each a mutex-protected LRU list with its own share of the
//! byte budget, so concurrent readers rarely contend on the same lock. Values are cheap to
//! clone (`Arc`s): a hit clones the handle under the lock and copies bytes outside it.

use super::fork::ForkFresh;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;

struct Shard<K, V> {
    map: ::lru::LruCache<K, V>,
    bytes: usize,
}

/// The shards of one process.
type Shards<K, V> = Box<[Mutex<Shard<K, V>>]>;

/// Sharded LRU bounded by the total weight (bytes) of its values.
/// The shards are rebuilt empty in a forked child ([`ForkFresh`]): a parent's thread may have
/// held a shard's lock at the fork.
pub struct ShardedLru<K, V> {
    shards: ForkFresh<Shards<K, V>>,
    n: usize,
    shard_budget: usize,
    weigh: fn(&V) -> usize,
    hasher: foldhash::fast::RandomState,
}

impl<K: Hash + Eq + Clone, V: Clone> ShardedLru<K, V> {
    /// Creates a cache holding at most about `budget_bytes` (as measured by `weigh`) spread over
    /// `shards` shards. A budget of 0 disables caching.
    pub fn new(budget_bytes: usize, shards: usize, weigh: fn(&V) -> usize) -> Self {
        let n = shards.max(1);
        ShardedLru {
            shards: ForkFresh::new(Self::empty_shards(n)),
            n,
            shard_budget: budget_bytes / n,
            weigh,
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn empty_shards(n: usize) -> Shards<K, V> {
        (0..n)
            .map(|_| {
                Mutex::new(Shard {
                    map: ::lru::LruCache::unbounded(),
                    bytes: 0,
                })
            })
            .collect::<Vec<_>>()
            .into_boxed_slice()
    }

    /// This process's shards (fresh ones in a forked child).
    fn shards(&self) -> &Shards<K, V> {
        self.shards.get(|| Self::empty_shards(self.n))
    }

    fn shard(&self, k: &K) -> &Mutex<Shard<K, V>> {
        let h = self.hasher.hash_one(k) as usize;
        &self.shards()[h % self.n]
    }

    /// Looks `k` up and marks it most recently used.
    pub fn get(&self, k: &K) -> Option<V> {
        let mut s = self.shard(k).lock().unwrap_or_else(|p| p.into_inner());
        s.map.get(k).cloned()
    }

    /// Whether `k` is cached (does not change recency).
    pub fn contains(&self, k: &K) -> bool {
        let s = self.shard(k).lock().unwrap_or_else(|p| p.into_inner());
        s.map.contains(k)
    }

    /// Inserts `k`, evicting least recently used entries of its shard beyond the budget.
    /// Values heavier than a whole shard's budget are not cached.
    pub fn insert(&self, k: K, v: V) {
        self.insert_evicting(k, v, drop);
    }

    /// [`insert`](Self::insert), handing every value it displaces (evicted, replaced, or
    /// `v` itself when too heavy to cache) to `evicted`, after the shard's lock is released.
    pub fn insert_evicting(&self, k: K, v: V, mut evicted: impl FnMut(V)) {
        let w = (self.weigh)(&v);
        if w > self.shard_budget {
            evicted(v);
            return;
        }
        let mut out = Vec::new();
        {
            let mut s = self.shard(&k).lock().unwrap_or_else(|p| p.into_inner());
            if let Some(old) = s.map.put(k, v) {
                s.bytes -= (self.weigh)(&old);
                out.push(old);
            }
            s.bytes += w;
            while s.bytes > self.shard_budget {
                match s.map.pop_lru() {
                    Some((_, old)) => {
                        s.bytes -= (self.weigh)(&old);
                        out.push(old);
                    }
                    None => break,
                }
            }
        }
        out.into_iter().for_each(evicted);
    }

    /// Drops `k` if it is cached.
    pub fn remove(&self, k: &K) {
        let mut s = self.shard(k).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = s.map.pop(k) {
            s.bytes -= (self.weigh)(&old);
        }
    }

    /// Total weight currently cached.
    pub fn weight(&self) -> usize {
        self.shards()
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).bytes)
            .sum()
    }

    /// Number of entries currently cached.
    pub fn len(&self) -> usize {
        self.shards()
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).map.len())
            .sum()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn stays_within_budget_and_evicts_lru() {
        let c: ShardedLru<u64, Arc<Vec<u8>>> = ShardedLru::new(1000, 1, |v| v.len());
        for i in 0..10 {
            c.insert(i, Arc::new(vec![0; 100]));
        }
        assert_eq!(c.weight(), 1000);
        c.get(&0); // 0 becomes most recent
        c.insert(10, Arc::new(vec![0; 100]));
        assert!(c.contains(&0));
        assert!(!c.contains(&1), "least recently used entry must go first");
        assert!(c.weight() <= 1000);
        c.remove(&0);
        assert!(!c.contains(&0));
        assert_eq!(c.weight(), 900);
        c.insert(11, Arc::new(vec![0; 5000]));
        assert!(!c.contains(&11), "oversized values are not cached");
    }

    #[test]
    fn insert_evicting_hands_over_what_it_displaces() {
        let c: ShardedLru<u64, Vec<u8>> = ShardedLru::new(300, 1, |v| v.len());
        let mut out = Vec::new();
        for i in 0..3 {
            c.insert_evicting(i, vec![i as u8; 100], |v| out.push(v));
        }
        assert!(out.is_empty());
        c.insert_evicting(3, vec![3; 100], |v| out.push(v));
        assert_eq!(out, vec![vec![0u8; 100]], "the least recently used entry");
        c.insert_evicting(3, vec![9; 100], |v| out.push(v));
        assert_eq!(out[1], vec![3u8; 100], "a replaced value");
        c.insert_evicting(4, vec![4; 1000], |v| out.push(v));
        assert_eq!(out[2], vec![4u8; 1000], "a value too heavy to cache");
        assert_eq!((out.len(), c.weight()), (3, 300));
    }
}
