//! A small bounded TTL cache for TokenReview and SubjectAccessReview answers: the HPA asks
//! the same question every 15 s per metric, and a round trip to kube-apiserver on each would
//! dominate the adapter's latency budget.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries past `capacity` first evict the expired ones, then everything: a flood of distinct
/// keys (random tokens) costs extra reviews, never unbounded memory.
pub(crate) struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
    capacity: usize,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let mut entries = self.entries.lock().ok()?;
        match entries.get(key) {
            Some((expires, value)) if *expires > Instant::now() => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn insert(&self, key: K, value: V, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let now = Instant::now();
        if entries.len() >= self.capacity {
            entries.retain(|_, (expires, _)| *expires > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (now + ttl, value));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_and_stays_bounded() {
        let cache = TtlCache::new(2);
        cache.insert(1, "a", Duration::from_millis(30));
        cache.insert(2, "b", Duration::from_secs(60));
        assert_eq!(cache.get(&1), Some("a"));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.get(&1), None);
        cache.insert(3, "c", Duration::from_secs(60));
        cache.insert(4, "d", Duration::from_secs(60));
        assert!(cache.len() <= 2);
        assert_eq!(cache.get(&4), Some("d"));
        cache.insert(5, "e", Duration::ZERO);
        assert_eq!(cache.get(&5), None);
    }
}
