//! The sweep: settles the tickets that something may be left held in (a
//! crash between the next hop's answer and its record, a 4xx and no retry),
//! once at start and then every `sweep_interval_secs`, each when its
//! horizon comes (`settle::next_check`).

use std::time::{Duration, Instant};

use super::Outbox;
use super::limit::RateLimiter;
use super::settle::{self, HopVerdict};
use crate::ticket::{Ticket, Timestamp};

/// Most answers kept for a later record; past it the sweep's horizon
/// settles the ticket (as after a crash).
const MAX_UNRECORDED: usize = 10_000;

/// The next hop's answer to a message, not yet on the ticket.
pub(super) struct Unrecorded {
    ticket: String,
    identity: String,
    verdict: HopVerdict,
}

impl Outbox {
    /// Keeps an answer of the next hop that the store could not record
    /// when it came; the sweep records it on its next passes.
    pub fn record_later(&self, ticket: &str, identity: &str, verdict: HopVerdict) {
        let mut later = self
            .inner
            .unrecorded
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if later.len() < MAX_UNRECORDED {
            later.push(Unrecorded {
                ticket: ticket.to_string(),
                identity: identity.to_string(),
                verdict,
            });
        }
    }

    async fn record_unrecorded(&self) {
        let later = std::mem::take(
            &mut *self
                .inner
                .unrecorded
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for u in later {
            let store = &self.inner.store;
            let limiter = &self.inner.limiter;
            match settle::record_answer(store, limiter, &u.ticket, &u.identity, u.verdict).await {
                Ok(outcome) => self.answered(outcome.ticket(), &u.identity, u.verdict),
                Err(e) => {
                    tracing::error!(ticket = %u.ticket, error = %e, "sweep: still cannot record the next hop's answer");
                    self.record_later(&u.ticket, &u.identity, u.verdict);
                }
            }
        }
    }

    pub(super) async fn run_sweep(&self) {
        let period = Duration::from_secs(self.inner.config.sweep_interval_secs.max(1));
        loop {
            self.record_unrecorded().await;
            self.sweep_due(Timestamp::now()).await;
            self.inner.limiter.expire(Instant::now());
            tokio::time::sleep(period).await;
        }
    }

    /// Settles every watched ticket whose time has come.
    async fn sweep_due(&self, now: Timestamp) {
        let due: Vec<String> = {
            let mut watched = self.inner.watched.lock().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<(String, super::Watch)> = watched
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(key, _)| key.clone())
                .collect();
            for key in &keys {
                watched.remove(key);
            }
            let ids: std::collections::BTreeSet<String> =
                keys.into_iter().map(|(id, _)| id).collect();
            ids.into_iter().collect()
        };
        for id in due {
            if let Some(t) = self.settle_ticket(&id, now).await {
                self.enqueue_queued(&t);
                self.watch(&t);
            }
        }
    }

    /// The ticket after settling its leftovers; written only if that
    /// changes something. `None` when it cannot be read (looked at again
    /// on the next start) or is gone.
    async fn settle_ticket(&self, id: &str, now: Timestamp) -> Option<Ticket> {
        let store = &self.inner.store;
        let horizon = self.horizon();
        let current = match store.get(id).await {
            Ok(t) => t?,
            Err(e) => {
                tracing::error!(ticket = %id, error = %e, "sweep: cannot read a ticket");
                return None;
            }
        };
        let mut probe = current.clone();
        let unlimited = RateLimiter::new(u32::MAX);
        if !settle::settle_leftovers(&mut probe, &unlimited.slots(), now, horizon) {
            return Some(current);
        }
        let slots = self.inner.limiter.slots();
        let settled = store
            .modify(id, None, |t| {
                slots.give_back();
                settle::settle_leftovers(t, &slots, now, horizon);
                Ok(())
            })
            .await;
        match settled {
            Ok(outcome) => {
                slots.keep();
                let t = outcome.into_ticket();
                tracing::info!(ticket = %t.id, status = t.status.as_str(), "sweep: settled what was left");
                Some(t)
            }
            Err(e) => {
                tracing::error!(ticket = %id, error = %e, "sweep: cannot settle a ticket");
                // Tried again on the next pass.
                self.watch_at(
                    (id.to_string(), super::Watch::Ticket),
                    now + Duration::from_secs(60),
                );
                None
            }
        }
    }
}
