//! Connection pressure, as Postfix's stress mode handles it: above a share
//! of the slots in use, idle clients get a short timeout; at the limit, a
//! new client is served by closing the session that has been idle longest.
//! Without this, a few hundred idle connections keep real mail out until
//! they time out on their own, minutes later.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

/// What the listener knows of its sessions' idleness.
pub struct Pressure {
    slots: Arc<Semaphore>,
    max: usize,
    /// Slots in use above which we are under stress.
    threshold: usize,
    next_key: AtomicU64,
    sessions: Mutex<HashMap<u64, Entry>>,
}

struct Entry {
    /// Waiting for the client since then; `None` while a command runs.
    idle_since: Option<Instant>,
    evict: Arc<Notify>,
}

impl Pressure {
    pub fn new(slots: Arc<Semaphore>, max: usize, threshold_percent: u8) -> Arc<Pressure> {
        let threshold = (max * threshold_percent as usize).div_ceil(100);
        Arc::new(Pressure {
            slots,
            max,
            threshold,
            next_key: AtomicU64::new(0),
            sessions: Mutex::new(HashMap::new()),
        })
    }

    fn in_use(&self) -> usize {
        self.max.saturating_sub(self.slots.available_permits())
    }

    pub fn stressed(&self) -> bool {
        self.in_use() > self.threshold
    }

    /// Registers a session; it leaves the registry when the handle drops.
    pub fn register(self: &Arc<Self>) -> SessionLoad {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let evict = Arc::new(Notify::new());
        self.lock().insert(
            key,
            Entry {
                idle_since: None,
                evict: evict.clone(),
            },
        );
        SessionLoad {
            key,
            pressure: self.clone(),
            evict,
        }
    }

    /// Tells the session idle longest to close; `false` when none is idle.
    pub fn evict_longest_idle(&self) -> bool {
        let sessions = self.lock();
        let oldest = sessions
            .values()
            .filter_map(|e| e.idle_since.map(|since| (since, &e.evict)))
            .min_by_key(|(since, _)| *since);
        match oldest {
            Some((_, evict)) => {
                evict.notify_one();
                true
            }
            None => false,
        }
    }

    fn set_idle(&self, key: u64, idle_since: Option<Instant>) {
        if let Some(e) = self.lock().get_mut(&key) {
            e.idle_since = idle_since;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A session's side of the registry.
pub struct SessionLoad {
    key: u64,
    pressure: Arc<Pressure>,
    evict: Arc<Notify>,
}

impl SessionLoad {
    /// How long to wait for the client's next command.
    pub fn idle_timeout(&self, normal: Duration, stressed: Duration) -> Duration {
        if self.pressure.stressed() {
            normal.min(stressed)
        } else {
            normal
        }
    }

    pub fn idle(&self) {
        self.pressure.set_idle(self.key, Some(Instant::now()));
    }

    pub fn busy(&self) {
        self.pressure.set_idle(self.key, None);
    }

    /// Completes when the listener wants this session's slot.
    pub async fn evicted(&self) {
        self.evict.notified().await
    }
}

impl Drop for SessionLoad {
    fn drop(&mut self) {
        self.pressure.lock().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_longest_idle_session_is_asked_to_leave() {
        let slots = Arc::new(Semaphore::new(10));
        let p = Pressure::new(slots.clone(), 10, 70);
        let a = p.register();
        let b = p.register();
        let busy = p.register();
        assert!(!p.evict_longest_idle(), "nobody idle yet");
        a.idle();
        tokio::time::sleep(Duration::from_millis(5)).await;
        b.idle();
        assert!(p.evict_longest_idle());
        tokio::time::timeout(Duration::from_secs(1), a.evicted())
            .await
            .expect("the older idle session is told");
        let early = tokio::time::timeout(Duration::from_millis(20), b.evicted()).await;
        assert!(early.is_err(), "the younger one is left alone");
        drop(busy);
    }

    #[test]
    fn stress_starts_above_the_threshold() {
        let slots = Arc::new(Semaphore::new(10));
        let p = Pressure::new(slots.clone(), 10, 70);
        let load = p.register();
        let normal = Duration::from_secs(300);
        let short = Duration::from_secs(10);
        let _held = slots.clone().try_acquire_many_owned(7).unwrap();
        assert_eq!(load.idle_timeout(normal, short), normal);
        let _one_more = slots.clone().try_acquire_owned().unwrap();
        assert_eq!(load.idle_timeout(normal, short), short);
    }
}
