//! The per-recipient reply budget: how many automatic replies one address
//! may be sent in an hour. A slot is taken when a reply is released, not
//! when it is drafted, so mail the next hop refused costs nobody anything;
//! and it is the reply's recipient that pays, so mail that names someone
//! else in From cannot spend that person's budget.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(3600);
/// Distinct recipients remembered at once. Past it, after expiring what is
/// older than the window, releases are refused: the safe side of a flood.
pub const MAX_RECIPIENTS: usize = 100_000;

pub struct RateLimiter {
    per_hour: usize,
    sent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
    pub fn new(per_hour: u32) -> RateLimiter {
        RateLimiter {
            per_hour: per_hour as usize,
            sent: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a slot of `to`'s hourly budget, if one is free.
    pub fn allow(&self, to: &str) -> bool {
        self.allow_at(to, Instant::now())
    }

    pub fn allow_at(&self, to: &str, now: Instant) -> bool {
        let key = budget_key(to);
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        if !sent.contains_key(&key) && sent.len() >= MAX_RECIPIENTS {
            expire(&mut sent, now);
            if sent.len() >= MAX_RECIPIENTS {
                return false;
            }
        }
        let times = sent.entry(key).or_default();
        drop_old(times, now);
        if times.len() >= self.per_hour {
            return false;
        }
        times.push_back(now);
        true
    }

    /// Forgets every recipient whose last reply is older than the window.
    pub fn expire(&self, now: Instant) {
        expire(
            &mut self.sent.lock().unwrap_or_else(|p| p.into_inner()),
            now,
        );
    }

    /// Recipients remembered now.
    pub fn len(&self) -> usize {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl RateLimiter {
    /// Slots for one attempt at a change: taken as the change needs them,
    /// given back unless [`Slots::keep`] says the change was written, so a
    /// change that is retried or fails spends nobody's budget.
    pub fn slots(&self) -> Slots<'_> {
        Slots {
            limiter: self,
            taken: Mutex::new(Vec::new()),
        }
    }

    /// Gives back a slot taken at `at`.
    fn refund(&self, key: &str, at: Instant) {
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(times) = sent.get_mut(key)
            && let Some(i) = times.iter().rposition(|t| *t == at)
        {
            times.remove(i);
        }
    }
}

/// Slots taken for one change; see [`RateLimiter::slots`].
pub struct Slots<'a> {
    limiter: &'a RateLimiter,
    taken: Mutex<Vec<(String, Instant)>>,
}

impl Slots<'_> {
    /// Takes a slot of `to`'s hourly budget, if one is free.
    pub fn allow(&self, to: &str) -> bool {
        let now = Instant::now();
        if !self.limiter.allow_at(to, now) {
            return false;
        }
        self.lock().push((budget_key(to), now));
        true
    }

    /// Gives back what was taken so far (before a retry of the change).
    pub fn give_back(&self) {
        for (key, at) in std::mem::take(&mut *self.lock()) {
            self.limiter.refund(&key, at);
        }
    }

    /// The change was written: what it took stays taken.
    pub fn keep(self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, Instant)>> {
        self.taken.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Slots<'_> {
    fn drop(&mut self) {
        self.give_back();
    }
}

/// Whose budget a reply to `to` spends: the address without case.
fn budget_key(to: &str) -> String {
    to.trim().to_ascii_lowercase()
}

fn drop_old(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
    {
        times.pop_front();
    }
}

fn expire(sent: &mut HashMap<String, VecDeque<Instant>>, now: Instant) {
    sent.retain(|_, times| {
        drop_old(times, now);
        !times.is_empty()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_per_recipient_and_refills_after_an_hour() {
        let limiter = RateLimiter::new(2);
        let t0 = Instant::now();
        assert!(limiter.allow_at("a@example.org", t0));
        assert!(limiter.allow_at("A@Example.org", t0));
        assert!(!limiter.allow_at("a@example.org", t0));
        assert!(limiter.allow_at("b@example.org", t0));
        assert!(limiter.allow_at("a@example.org", t0 + WINDOW));
    }

    #[test]
    fn slots_of_a_change_that_was_not_written_are_given_back() {
        let limiter = RateLimiter::new(1);
        let slots = limiter.slots();
        assert!(slots.allow("a@example.org"));
        assert!(!slots.allow("a@example.org"), "one an hour");
        slots.give_back();
        assert!(slots.allow("a@example.org"), "a retry finds it free again");
        drop(slots);
        let kept = limiter.slots();
        assert!(kept.allow("a@example.org"), "a failed change spent nothing");
        kept.keep();
        assert!(!limiter.slots().allow("a@example.org"), "a written one did");
    }

    #[test]
    fn entries_expire() {
        let limiter = RateLimiter::new(5);
        let t0 = Instant::now();
        for i in 0..100 {
            limiter.allow_at(&format!("r{i}@example.org"), t0);
        }
        assert_eq!(limiter.len(), 100);
        limiter.expire(t0 + WINDOW / 2);
        assert_eq!(limiter.len(), 100);
        limiter.expire(t0 + WINDOW);
        assert!(limiter.is_empty());
    }
}
