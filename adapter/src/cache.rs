//! Result cache with request coalescing: identical queries in flight at the same time share
//! one Prometheus round trip, and an answer is reused for a short TTL. Many HPAs polling the
//! same signal every 15 s then cost Prometheus one query, not one each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use crate::prometheus::{Client, Error, QueryResult};

type Pending = Shared<BoxFuture<'static, Result<Arc<QueryResult>, Error>>>;

enum Slot {
    Ready {
        at: Instant,
        value: Arc<QueryResult>,
    },
    InFlight(Pending),
}

/// Where an answer came from, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    Coalesced,
    Prometheus,
}

/// Coalescing TTL cache in front of a Prometheus client.
pub struct QueryCache {
    client: Arc<Client>,
    ttl: Duration,
    slots: Mutex<HashMap<String, Slot>>,
}

const PRUNE_ABOVE: usize = 4096;

impl QueryCache {
    pub fn new(client: Arc<Client>, ttl: Duration) -> Self {
        Self {
            client,
            ttl,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        match self.slots.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The answer to `query`, from the cache, a query already in flight, or Prometheus.
    /// Errors are never cached: the next request asks again.
    pub async fn query(&self, query: &str) -> (Result<Arc<QueryResult>, Error>, Source) {
        let (pending, source) = {
            let mut slots = self.lock();
            match slots.get(query) {
                Some(Slot::Ready { at, value }) if at.elapsed() < self.ttl => {
                    return (Ok(value.clone()), Source::Cache);
                }
                Some(Slot::InFlight(p)) => (p.clone(), Source::Coalesced),
                _ => {
                    if slots.len() > PRUNE_ABOVE {
                        let ttl = self.ttl;
                        slots.retain(|_, s| match s {
                            Slot::Ready { at, .. } => at.elapsed() < ttl,
                            Slot::InFlight(_) => true,
                        });
                    }
                    let client = self.client.clone();
                    let q = query.to_string();
                    let fut: Pending = async move { client.query(&q).await.map(Arc::new) }
                        .boxed()
                        .shared();
                    slots.insert(query.to_string(), Slot::InFlight(fut.clone()));
                    (fut, Source::Prometheus)
                }
            }
        };
        let result = pending.clone().await;
        let mut slots = self.lock();
        // Only the first finisher of this flight updates the slot.
        if let Some(Slot::InFlight(p)) = slots.get(query) {
            if p.ptr_eq(&pending) {
                match &result {
                    Ok(value) if !self.ttl.is_zero() => {
                        slots.insert(
                            query.to_string(),
                            Slot::Ready {
                                at: Instant::now(),
                                value: value.clone(),
                            },
                        );
                    }
                    _ => {
                        slots.remove(query);
                    }
                }
            }
        }
        (result, source)
    }

    /// Entries held (ready or in flight).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
