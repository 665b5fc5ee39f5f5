//! Throttling of sign-in, code entry and invitation sending: a sliding window of failures per
//! key (an account or a client address). It slows guessing down without ever locking anyone
//! out for good: old failures simply age out of the window.
//!
//! Kept in memory per instance; behind a load balancer each instance counts on its own, which
//! multiplies the allowance by the number of instances but never blocks a legitimate person.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys longer than this are kept as their SHA-256, so that no input's size is held in memory.
const MAX_KEY_BYTES: usize = 128;

/// The key as kept: itself when short, else its SHA-256 (hex).
fn bounded(key: &str) -> std::borrow::Cow<'_, str> {
    use sha2::Digest;
    if key.len() <= MAX_KEY_BYTES {
        return std::borrow::Cow::Borrowed(key);
    }
    let digest = sha2::Sha256::digest(key.as_bytes());
    std::borrow::Cow::Owned(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// A limit: at most `max` events per `window` for one key.
#[derive(Debug)]
pub struct Throttle {
    max: usize,
    window: Duration,
    events: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Throttle {
    /// A throttle allowing `max` events per `window`.
    pub fn new(max: usize, window: Duration) -> Self {
        Throttle { max, window, events: Mutex::new(HashMap::new()) }
    }

    /// `Some(seconds to wait)` when `key` is over its limit, else `None`.
    pub fn check(&self, key: &str) -> Option<u64> {
        let key = bounded(key);
        let key = key.as_ref();
        let now = Instant::now();
        let mut map = self.events.lock().ok()?;
        let q = map.get_mut(key)?;
        while q.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            q.pop_front();
        }
        if q.len() >= self.max {
            let oldest = *q.front()?;
            let wait = self.window.saturating_sub(now.duration_since(oldest));
            Some(wait.as_secs().max(1))
        } else {
            None
        }
    }

    /// Checks and counts one event for `key` under one lock: `Some(seconds to wait)` when
    /// `key` is over its limit (nothing is counted), else `None` with the event counted. Unlike
    /// [`check`](Self::check) then [`record`](Self::record), concurrent callers cannot all pass.
    pub fn take(&self, key: &str) -> Option<u64> {
        let key = bounded(key);
        let now = Instant::now();
        let mut map = self.events.lock().ok()?;
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let q = map.entry(key.into_owned()).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            q.pop_front();
        }
        if q.len() >= self.max {
            let oldest = *q.front()?;
            return Some(self.window.saturating_sub(now.duration_since(oldest)).as_secs().max(1));
        }
        q.push_back(now);
        None
    }

    /// Takes back the latest event of `key` (an attempt counted by [`take`](Self::take) that
    /// turned out not to be a failure).
    pub fn give_back(&self, key: &str) {
        if let Ok(mut map) = self.events.lock()
            && let Some(q) = map.get_mut(bounded(key).as_ref())
        {
            q.pop_back();
        }
    }

    /// Records one event (a failure, or a send) for `key`.
    pub fn record(&self, key: &str) {
        let key = bounded(key);
        let now = Instant::now();
        if let Ok(mut map) = self.events.lock() {
            if map.len() > 100_000 {
                let window = self.window;
                map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
            }
            let q = map.entry(key.into_owned()).or_default();
            q.push_back(now);
            while q.len() > self.max * 2 {
                q.pop_front();
            }
        }
    }

    /// Forgets `key` (after a successful sign-in).
    pub fn clear(&self, key: &str) {
        if let Ok(mut map) = self.events.lock() {
            map.remove(bounded(key).as_ref());
        }
    }
}

/// The throttles of one running server.
#[derive(Debug)]
pub struct Throttles {
    /// Failed sign-ins per account: 5 per 15 minutes.
    pub signin_account: Throttle,
    /// Failed sign-ins per client address: 30 per 15 minutes.
    pub signin_address: Throttle,
    /// One-time codes emailed per invitation: 5 per hour.
    pub code_sends: Throttle,
}

impl Default for Throttles {
    fn default() -> Self {
        Throttles {
            signin_account: Throttle::new(5, Duration::from_secs(15 * 60)),
            signin_address: Throttle::new(30, Duration::from_secs(15 * 60)),
            code_sends: Throttle::new(5, Duration::from_secs(3600)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_the_limit_until_the_window_passes() {
        let t = Throttle::new(2, Duration::from_millis(50));
        t.record("a");
        assert_eq!(t.check("a"), None);
        t.record("a");
        assert!(t.check("a").is_some());
        assert_eq!(t.check("b"), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(t.check("a"), None);
    }

    #[test]
    fn long_keys_are_kept_as_their_hash() {
        let t = Throttle::new(1, Duration::from_secs(60));
        let long = "x".repeat(250_000);
        assert_eq!(t.take(&long), None);
        assert!(t.take(&long).is_some());
        let map = t.events.lock().unwrap();
        assert!(map.keys().all(|k| k.len() <= MAX_KEY_BYTES));
    }

    #[test]
    fn take_counts_and_refuses_at_once_even_from_many_threads() {
        let t = std::sync::Arc::new(Throttle::new(5, Duration::from_secs(60)));
        let passed: usize = (0..40)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || t.take("k").is_none())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| usize::from(h.join().unwrap()))
            .sum();
        assert_eq!(passed, 5);
        t.give_back("k");
        assert_eq!(t.take("k"), None);
        assert!(t.take("k").is_some());
    }
}
