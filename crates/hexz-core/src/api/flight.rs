//! Single-flight: concurrent requests for the same block or index page share one fetch.
//!
//! The first reader to ask for a key *leads*: it fetches and decodes the value and then
//! [`Lead::finish`]es, handing it to everyone who asked in the meantime. Later readers
//! *wait* on the leader's slot. A leader that fails (or panics) finishes with nothing, and its
//! waiters fall back to fetching the value themselves, so an error never hangs a reader.
//!
//! To stay deadlock-free a reader finishes everything it leads before it waits for anything:
//! a leader never waits while holding a flight open.

use crate::cache::fork::ForkFresh;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// The rendezvous of one in-flight key.
pub(super) struct Slot<V> {
    value: Mutex<Option<Option<V>>>,
    done: Condvar,
    waiters: AtomicUsize,
}

impl<V: Clone> Slot<V> {
    /// Blocks until the leader finishes; `None` when it failed (fetch it yourself then).
    pub(super) fn wait(&self) -> Option<V> {
        let mut g = self.value.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(v) = &*g {
                return v.clone();
            }
            g = self.done.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// In-flight keys and their slots.
type SlotMap<K, V> = HashMap<K, Arc<Slot<V>>>;

/// The in-flight keys of one kind (blocks, or index pages).
///
/// The map is rebuilt empty in a forked child ([`ForkFresh`]): the parent's leaders do not
/// exist there, and one of its threads may have held the map's lock at the fork.
pub(super) struct Flights<K, V> {
    map: ForkFresh<Mutex<SlotMap<K, V>>>,
}

/// What a reader got when it asked for a key.
pub(super) enum Claim<'a, K: Hash + Eq + Clone, V: Clone> {
    /// Nobody was fetching it: fetch it and [`Lead::finish`].
    Lead(Lead<'a, K, V>),
    /// Someone is fetching it: [`Slot::wait`] after finishing your own leads.
    Wait(Arc<Slot<V>>),
}

impl<K: Hash + Eq + Clone, V: Clone> Flights<K, V> {
    pub(super) fn new() -> Self {
        Flights {
            map: ForkFresh::new(Mutex::new(HashMap::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotMap<K, V>> {
        self.map
            .get(|| Mutex::new(HashMap::new()))
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Leads `key` if nobody is fetching it, else joins the flight as a waiter.
    pub(super) fn claim(&self, key: K) -> Claim<'_, K, V> {
        let mut m = self.lock();
        if let Some(s) = m.get(&key) {
            s.waiters.fetch_add(1, Ordering::Relaxed);
            return Claim::Wait(s.clone());
        }
        let slot = Arc::new(Slot {
            value: Mutex::new(None),
            done: Condvar::new(),
            waiters: AtomicUsize::new(0),
        });
        m.insert(key.clone(), slot.clone());
        Claim::Lead(Lead {
            flights: self,
            key,
            slot,
            finished: false,
        })
    }

    /// Leads `key` if nobody is fetching it; `None` (without waiting) when someone is.
    /// For read-ahead, which has no use for a value someone else is already fetching.
    pub(super) fn try_lead(&self, key: K) -> Option<Lead<'_, K, V>> {
        let mut m = self.lock();
        if m.contains_key(&key) {
            return None;
        }
        let slot = Arc::new(Slot {
            value: Mutex::new(None),
            done: Condvar::new(),
            waiters: AtomicUsize::new(0),
        });
        m.insert(key.clone(), slot.clone());
        Some(Lead {
            flights: self,
            key,
            slot,
            finished: false,
        })
    }

    fn complete(&self, key: &K, slot: &Slot<V>, make: impl FnOnce() -> Option<V>) {
        // Remove the key first: from then on nobody can join, so the waiter count is final
        // and the value is built only if someone waits for it.
        self.lock().remove(key);
        if slot.waiters.load(Ordering::Relaxed) == 0 {
            // Nobody joined, and nobody can now: skip the notification, a system call
            // (futex wake) per block even with no one to wake.
            return;
        }
        *slot.value.lock().unwrap_or_else(|p| p.into_inner()) = Some(make());
        slot.done.notify_all();
    }
}

/// The duty to fetch one key; finishing (or dropping) it releases the waiters.
pub(super) struct Lead<'a, K: Hash + Eq + Clone, V: Clone> {
    flights: &'a Flights<K, V>,
    key: K,
    slot: Arc<Slot<V>>,
    finished: bool,
}

impl<K: Hash + Eq + Clone, V: Clone> Lead<'_, K, V> {
    /// Hands the value to the waiters. `make` runs only when someone waits (so a leader that
    /// decoded straight into its caller's buffer copies it out only when needed).
    pub(super) fn finish(mut self, make: impl FnOnce() -> V) {
        self.finished = true;
        self.flights
            .complete(&self.key, &self.slot, || Some(make()));
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Drop for Lead<'_, K, V> {
    fn drop(&mut self) {
        if !self.finished {
            // Failed or panicked: release the waiters empty-handed; they fetch themselves.
            self.flights.complete(&self.key, &self.slot, || None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_get_the_leaders_value_and_failures_release_them() {
        let f: Flights<u32, Arc<u32>> = Flights::new();
        let Claim::Lead(lead) = f.claim(1) else {
            panic!("first claim leads")
        };
        let Claim::Wait(slot) = f.claim(1) else {
            panic!("second claim waits")
        };
        assert!(f.try_lead(1).is_none());
        let t = std::thread::spawn(move || slot.wait());
        lead.finish(|| Arc::new(7));
        assert_eq!(t.join().unwrap().as_deref(), Some(&7));
        // Finished: the key can be led again; a dropped lead releases its waiters empty.
        let Claim::Lead(lead) = f.claim(1) else {
            panic!("key is free again")
        };
        let Claim::Wait(slot) = f.claim(1) else {
            panic!("waits")
        };
        drop(lead);
        assert_eq!(slot.wait(), None);
    }
}
