//! The overview's snapshots: each query's serialized answer, computed at most once per
//! refresh interval and shared (one `Arc`) by every request that asks for it meanwhile.
//! One computation runs at a time: requests arriving during it wait for it, and use its
//! answer when it is theirs, so ten browsers polling cost what one does, in time and in
//! memory.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// Distinct queries kept at most (the page asks for one per window size it shows).
const KEPT: usize = 8;

/// A query's serialized answer and when it was computed.
type Kept<K> = (K, Instant, Arc<[u8]>);

/// The serialized answers by query, with when each was computed.
pub struct Snapshots<K> {
    refresh: Duration,
    kept: Mutex<Vec<Kept<K>>>,
}

impl<K: PartialEq> Snapshots<K> {
    /// Answers are reused for `refresh` (zero: only by requests that arrived while they
    /// were computed).
    pub fn new(refresh: Duration) -> Self {
        Snapshots {
            refresh,
            kept: Mutex::new(Vec::new()),
        }
    }

    /// The answer to `query`: the kept one if it was computed less than the refresh
    /// interval ago or after this call began, else `compute`'s (kept for the next ones).
    pub async fn get<F, Fut, E>(&self, query: K, compute: F) -> Result<Arc<[u8]>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
    {
        let asked = Instant::now();
        let mut kept = self.kept.lock().await;
        if let Some((_, at, body)) = kept.iter().find(|(q, _, _)| *q == query) {
            if *at >= asked || at.elapsed() < self.refresh {
                return Ok(body.clone());
            }
        }
        let body: Arc<[u8]> = compute().await?.into();
        let at = Instant::now();
        kept.retain(|(q, _, _)| *q != query);
        if kept.len() == KEPT {
            // The oldest goes.
            if let Some(oldest) = (0..kept.len()).min_by_key(|&i| kept[i].1) {
                kept.swap_remove(oldest);
            }
        }
        kept.push((query, at, body.clone()));
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts computations; each takes 50 ms and answers its number.
    async fn counting(computed: &AtomicUsize) -> Result<Vec<u8>, Infallible> {
        let n = computed.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(n.to_string().into_bytes())
    }

    /// On one thread the ten requests are all polled (and wait for the lock) before
    /// the first one's computation can end, so exactly one computes.
    #[tokio::test]
    async fn concurrent_requests_share_one_computation() {
        // Refresh zero, as the demo's in-memory tables had: still one computation for
        // every request that arrived while it ran.
        let snapshots = Arc::new(Snapshots::new(Duration::ZERO));
        let computed = Arc::new(AtomicUsize::new(0));
        let requests: Vec<_> = (0..10)
            .map(|_| {
                let (snapshots, computed) = (snapshots.clone(), computed.clone());
                tokio::spawn(async move { snapshots.get("q", || counting(&computed)).await })
            })
            .collect();
        let mut bodies = Vec::new();
        for r in requests {
            bodies.push(r.await.expect("task").expect("body"));
        }
        assert_eq!(computed.load(Ordering::SeqCst), 1);
        assert!(bodies.iter().all(|b| Arc::ptr_eq(b, &bodies[0])));
        let n = 1;
        // A later request (refresh zero) computes again.
        let later = snapshots.get("q", || counting(&computed)).await;
        assert_eq!(computed.load(Ordering::SeqCst), n + 1);
        assert_eq!(*later.expect("body"), *(n + 1).to_string().as_bytes());
    }

    #[tokio::test]
    async fn an_answer_is_reused_within_the_refresh_per_query() {
        let snapshots = Snapshots::new(Duration::from_secs(3600));
        let computed = AtomicUsize::new(0);
        let a = snapshots.get(1, || counting(&computed)).await.expect("a");
        let again = snapshots.get(1, || counting(&computed)).await.expect("a");
        assert!(Arc::ptr_eq(&a, &again));
        let b = snapshots.get(2, || counting(&computed)).await.expect("b");
        assert_eq!((&*a, &*b), (&b"1"[..], &b"2"[..]));
        // Only KEPT queries are kept: the oldest goes first.
        for q in 3..=(KEPT as i32 + 1) {
            snapshots.get(q, || counting(&computed)).await.expect("q");
        }
        let before = computed.load(Ordering::SeqCst);
        snapshots.get(2, || counting(&computed)).await.expect("b");
        assert_eq!(computed.load(Ordering::SeqCst), before, "2 is kept");
        snapshots.get(1, || counting(&computed)).await.expect("a");
        assert_eq!(computed.load(Ordering::SeqCst), before + 1, "1 went first");
    }

    #[tokio::test]
    async fn a_failed_computation_is_not_kept() {
        let snapshots = Snapshots::new(Duration::from_secs(3600));
        let failed: Result<Arc<[u8]>, &str> = snapshots.get((), || async { Err("down") }).await;
        assert_eq!(failed.err(), Some("down"));
        let computed = AtomicUsize::new(0);
        snapshots.get((), || counting(&computed)).await.expect("ok");
        assert_eq!(computed.load(Ordering::SeqCst), 1);
    }
}
