//! The outbox: automatic replies are written with the ticket (state
//! `held`), released (`queued`) once the next hop accepted the original,
//! and delivered here to the reply relay with mail-send. State lives in the
//! store, so retries survive a restart.
//!
//! Each attempt is recorded before it is made (record, then send): an
//! attempt that cannot be recorded is not made, so the attempts are
//! bounded whatever the store does, and a crash between the relay's 250
//! and the record of `sent` sends the reply again later, with the same
//! Message-ID (at least once).
//!
//! The outbox also keeps the reply rate limit ([`limit`]) and the sweep
//! ([`sweep`]) that settles, at start and then periodically, what a crash
//! or a missing retry left held.

pub mod compose;
pub mod limit;
pub mod msgid;
pub mod render;
pub mod settle;
mod sweep;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mail_send::SmtpClientBuilder;
use mail_send::smtp::message::Message;
use tokio::sync::Notify;

use crate::config::{OutboxConfig, ReplyRelay};
use crate::forward::maildir;
use crate::metrics::METRICS;
use crate::reason::ReasonCode;
use crate::store::{Backoff, Claim, Finish, ReplyKey, StoreError, TicketStore};
use crate::ticket::{ReplyRecord, ReplyState, Ticket, Timestamp};
use limit::RateLimiter;

/// A reply to deliver: the ticket and the reply's Message-ID.
type Key = ReplyKey;

#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    store: TicketStore,
    relay: Relay,
    config: OutboxConfig,
    /// Queued replies, with when this process first saw each queued.
    pending: Mutex<BTreeMap<Key, Timestamp>>,
    wake: Notify,
    limiter: Arc<RateLimiter>,
    /// What the sweep looks at, and when.
    watched: Mutex<BTreeMap<(String, Watch), Timestamp>>,
    /// Answers of the next hop that could not be recorded when they came.
    unrecorded: Mutex<Vec<sweep::Unrecorded>>,
}

/// The outbox's backlog (`Outbox::backlog`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    pub queued: usize,
    pub oldest_queued: Duration,
    pub held: usize,
    pub oldest_held: Duration,
}

/// What of a ticket the sweep watches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Watch {
    /// The ticket as a whole (`settle::next_check`).
    Ticket,
    /// A message, by its identity, waiting for the next hop's answer.
    Message(String),
}

/// Where replies go.
enum Relay {
    None,
    Smtp {
        addr: SocketAddr,
        /// Built once: mail-send's builder loads the system's CA
        /// certificates for a TLS connector we never use (the relay is
        /// plain SMTP on the same host), which cost half the CPU of every
        /// reply when it was built per reply.
        client: Result<SmtpClientBuilder<String>, String>,
    },
    Maildir(PathBuf),
}

impl Relay {
    fn new(relay: Option<ReplyRelay>, hostname: &str) -> Relay {
        match relay {
            None => Relay::None,
            Some(ReplyRelay::Maildir(dir)) => Relay::Maildir(dir),
            Some(ReplyRelay::Smtp(addr)) => Relay::Smtp {
                addr,
                client: SmtpClientBuilder::new(addr.ip().to_string(), addr.port())
                    .map(|b| {
                        b.implicit_tls(false)
                            .helo_host(hostname.to_string())
                            .timeout(Duration::from_secs(60))
                    })
                    .map_err(|e| e.to_string()),
            },
        }
    }
}

enum Attempt {
    Sent,
    Retry(String),
    Fail(String),
}

/// What recording an attempt before making it allowed.
enum Permit {
    Send(ReplyRecord),
    /// Not to be sent (any more): settled while recording.
    Settled,
    /// The store could not record it: not sent, tried again later.
    Unrecorded,
}

impl Outbox {
    /// Starts the delivery task and the sweep; replies queued before a
    /// restart are picked up from the store, and what a crash left held is
    /// settled by the sweep's first pass.
    pub async fn start(
        store: TicketStore,
        relay: Option<ReplyRelay>,
        hostname: &str,
        config: OutboxConfig,
    ) -> Outbox {
        let outbox = Outbox {
            inner: Arc::new(Inner {
                store,
                relay: Relay::new(relay, hostname),
                limiter: Arc::new(RateLimiter::new(config.rate_limit_per_hour)),
                config,
                pending: Mutex::new(BTreeMap::new()),
                wake: Notify::new(),
                watched: Mutex::new(BTreeMap::new()),
                unrecorded: Mutex::new(Vec::new()),
            }),
        };
        outbox.scan_store().await;
        let worker = outbox.clone();
        tokio::spawn(async move { worker.run().await });
        let sweeper = outbox.clone();
        tokio::spawn(async move { sweeper.run_sweep().await });
        outbox
    }

    /// What waits, for the gauges: queued replies (since this process saw
    /// them queued) and messages whose replies are held for the next hop's
    /// answer.
    pub fn backlog(&self) -> Backlog {
        let now = Timestamp::now();
        let age = |since: Timestamp| Duration::try_from(now.0 - since.0).unwrap_or_default();
        let pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
        let (queued, oldest_queued) = (pending.len(), pending.values().min().copied());
        drop(pending);
        let horizon = self.horizon();
        let watched = self.inner.watched.lock().unwrap_or_else(|p| p.into_inner());
        let held: Vec<Timestamp> = watched
            .iter()
            .filter(|((_, w), _)| matches!(w, Watch::Message(_)))
            .map(|(_, at)| Timestamp(at.0 - horizon))
            .collect();
        Backlog {
            queued,
            oldest_queued: oldest_queued.map(age).unwrap_or_default(),
            held: held.len(),
            oldest_held: held.into_iter().min().map(age).unwrap_or_default(),
        }
    }

    /// The reply budget, taken when a reply is released.
    pub fn limiter(&self) -> Arc<RateLimiter> {
        self.inner.limiter.clone()
    }

    /// Asks the sweep to look at this ticket when something in it may
    /// need settling (`settle::next_check`).
    pub fn watch(&self, ticket: &Ticket) {
        if let Some(at) = settle::next_check(ticket, self.horizon()) {
            self.watch_at((ticket.id.clone(), Watch::Ticket), at);
        }
    }

    /// A message just written to `ticket` waits for the next hop's answer:
    /// the sweep looks at the ticket at the horizon unless
    /// [`Outbox::answered`] says it got one first.
    pub fn watch_message(&self, ticket: &str, identity: &str) {
        let at = Timestamp::now() + self.horizon();
        self.watch_at(
            (ticket.to_string(), Watch::Message(identity.to_string())),
            at,
        );
    }

    /// The next hop's answer to the message is on the ticket. After a 4xx
    /// the sweep still looks at the horizon: no retry may come.
    pub fn answered(&self, ticket: &Ticket, identity: &str, verdict: settle::HopVerdict) {
        self.enqueue_queued(ticket);
        if !matches!(verdict, settle::HopVerdict::Temporary(_)) {
            let key = (ticket.id.clone(), Watch::Message(identity.to_string()));
            let mut watched = self.inner.watched.lock().unwrap_or_else(|p| p.into_inner());
            watched.remove(&key);
        }
    }

    fn watch_at(&self, key: (String, Watch), at: Timestamp) {
        let mut watched = self.inner.watched.lock().unwrap_or_else(|p| p.into_inner());
        let entry = watched.entry(key).or_insert(at);
        *entry = (*entry).min(at);
    }

    fn horizon(&self) -> Duration {
        Duration::from_secs(self.inner.config.settle_horizon_secs)
    }

    /// Every ticket, a page at a time: queued replies to the worker, what
    /// is left to settle to the sweep.
    async fn scan_store(&self) {
        let store = &self.inner.store;
        let index = match store.ticket_index().await {
            Ok(index) => index,
            Err(e) => {
                tracing::error!(error = %e, "outbox: cannot scan the store for pending replies");
                return;
            }
        };
        for page in index.chunks(crate::store::LIST_PAGE) {
            match store.tickets_of(page).await {
                Ok(tickets) => tickets.iter().for_each(|t| {
                    self.enqueue_queued(t);
                    self.watch(t);
                }),
                Err(e) => tracing::error!(error = %e, "outbox: cannot read tickets"),
            }
        }
    }

    /// Registers the ticket's queued replies and wakes the worker.
    pub fn enqueue_queued(&self, ticket: &Ticket) {
        let mut pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
        for r in &ticket.replies {
            if r.state == ReplyState::Queued {
                let key = ReplyKey {
                    ticket: ticket.id.clone(),
                    message_id: r.message_id.clone(),
                };
                pending.entry(key).or_insert_with(Timestamp::now);
            }
        }
        drop(pending);
        self.inner.wake.notify_one();
    }

    async fn run(&self) {
        loop {
            let next_due = self.deliver_due().await;
            let wait = next_due
                .unwrap_or(Duration::from_secs(60))
                .min(Duration::from_secs(60));
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Delivers every reply that is due; returns when the next one is.
    async fn deliver_due(&self) -> Option<Duration> {
        let keys: Vec<Key> = self
            .inner
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        let now = Timestamp::now();
        let mut next: Option<Duration> = None;
        for key in keys {
            let reply = match self.current(&key).await {
                Some(r) if r.state == ReplyState::Queued => r,
                _ => {
                    self.forget(&key);
                    continue;
                }
            };
            if let Some(at) = reply.next_attempt_at
                && at > now
            {
                let d = Duration::try_from(at.0 - now.0).unwrap_or_default();
                next = Some(next.map_or(d, |n| n.min(d)));
                continue;
            }
            let reply = match self.begin_attempt(&key).await {
                Permit::Send(reply) => reply,
                Permit::Settled => {
                    self.forget(&key);
                    continue;
                }
                Permit::Unrecorded => {
                    let d = Duration::from_secs(self.inner.config.retry_initial_secs.max(1));
                    next = Some(next.map_or(d, |n| n.min(d)));
                    continue;
                }
            };
            let attempt = self.send(&reply).await;
            if let Some(d) = self.record(&key, attempt).await {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        }
        next
    }

    /// Records an attempt before it is made (`TicketStore::claim_reply`).
    async fn begin_attempt(&self, key: &Key) -> Permit {
        let claim = Claim {
            max_attempts: self.inner.config.max_attempts,
            backoff: self.backoff(),
        };
        match self.inner.store.claim_reply(key, claim).await {
            Ok(t) => match reply_in(&t, key) {
                Some(r) if r.state == ReplyState::Queued => Permit::Send(r.clone()),
                Some(r) => {
                    log_reply(&t, r, "not sent");
                    Permit::Settled
                }
                None => Permit::Settled,
            },
            Err(StoreError::Rejected(_) | StoreError::NotFound(_)) => Permit::Settled,
            Err(e) => {
                tracing::error!(error = %e, ticket = %key.ticket, "outbox: cannot record an attempt; not sending it");
                Permit::Unrecorded
            }
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            initial_secs: self.inner.config.retry_initial_secs,
            max_secs: self.inner.config.retry_max_secs,
        }
    }

    async fn current(&self, key: &Key) -> Option<ReplyRecord> {
        let t = self.inner.store.get(&key.ticket).await.ok()??;
        t.replies
            .into_iter()
            .find(|r| r.message_id == key.message_id)
    }

    fn forget(&self, key: &Key) {
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    async fn send(&self, reply: &ReplyRecord) -> Attempt {
        match &self.inner.relay {
            Relay::None => Attempt::Retry("no reply relay configured".into()),
            Relay::Smtp { addr, client } => match client {
                Ok(builder) => send_smtp(*addr, builder, reply).await,
                Err(e) => Attempt::Fail(e.clone()),
            },
            Relay::Maildir(dir) => match deliver_to_maildir(dir, reply).await {
                Ok(()) => Attempt::Sent,
                Err(e) => Attempt::Retry(format!("maildir {}: {e}", dir.display())),
            },
        }
    }

    /// Writes the attempt's result; returns the delay to the next attempt.
    async fn record(&self, key: &Key, attempt: Attempt) -> Option<Duration> {
        let (state, reason, note) = attempt.result();
        // The attempt was counted and the next one scheduled before it was
        // made (`begin_attempt`); a retry keeps that schedule.
        let finish = Finish {
            state,
            reason,
            max_attempts: self.inner.config.max_attempts,
        };
        match self.inner.store.finish_reply(key, finish).await {
            Ok(ticket) => {
                let r = reply_in(&ticket, key)?;
                log_reply(&ticket, r, &note);
                if r.state != ReplyState::Queued {
                    self.forget(key);
                    return None;
                }
                Some(self.backoff().after(r.attempts))
            }
            // The reply stays queued with its next attempt scheduled: it
            // goes again then (at least once), and the attempts it may
            // make stay bounded.
            Err(e) => {
                tracing::error!(error = %e, ticket = %key.ticket, "outbox: cannot record a delivery attempt");
                Some(self.backoff().after(1))
            }
        }
    }
}

impl Attempt {
    /// The reply's state, reason and log note after this attempt; a retry
    /// leaves it queued.
    fn result(self) -> (ReplyState, Option<ReasonCode>, String) {
        match self {
            Attempt::Sent => (ReplyState::Sent, None, String::new()),
            Attempt::Fail(e) => (
                ReplyState::Failed,
                Some(ReasonCode::ReplyFailedRelayRefused),
                e,
            ),
            Attempt::Retry(e) => (ReplyState::Queued, None, e),
        }
    }
}

/// One attempt through the SMTP relay.
async fn send_smtp(
    relay: SocketAddr,
    builder: &SmtpClientBuilder<String>,
    reply: &ReplyRecord,
) -> Attempt {
    let mut client = match builder.connect_plain().await {
        Ok(c) => c,
        Err(e) => return Attempt::Retry(format!("relay {relay}: {e}")),
    };
    // mail-send writes the body and the final dot in two writes; with
    // Nagle on, the second waits for a delayed ACK (40 ms a reply).
    let _ = client.stream.set_nodelay(true);
    // RFC 3834 §3.3: an automatic response goes out with a null
    // return path, so it can never cause a bounce loop.
    let message = Message::new("", [reply.to.as_str()], reply.raw.as_bytes());
    let result = client.send(message).await;
    let _ = client.quit().await;
    match result {
        Ok(()) => Attempt::Sent,
        Err(mail_send::Error::UnexpectedReply(r)) if r.code() >= 500 => {
            Attempt::Fail(format!("relay refused: {} {}", r.code(), r.message()))
        }
        Err(e) => Attempt::Retry(format!("relay {relay}: {e}")),
    }
}

/// Writes the reply into a Maildir, as a local delivery agent would: with
/// the null return path it is sent with, and whom it is for.
async fn deliver_to_maildir(dir: &Path, reply: &ReplyRecord) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    maildir::create(dir)?;
    let mut delivery = maildir::Delivery::begin(dir).await?;
    let to = reply.to.replace(['\r', '\n'], "");
    let envelope = format!("Return-Path: <>\r\nDelivered-To: {to}\r\n");
    delivery.file.write_all(envelope.as_bytes()).await?;
    delivery.file.write_all(reply.raw.as_bytes()).await?;
    delivery.commit().await.map(drop)
}

fn reply_in<'t>(ticket: &'t Ticket, key: &Key) -> Option<&'t ReplyRecord> {
    ticket
        .replies
        .iter()
        .find(|r| r.message_id == key.message_id)
}

fn log_reply(ticket: &Ticket, r: &ReplyRecord, note: &str) {
    tracing::info!(
        target: "ticketgate::outbox",
        ticket = %ticket.id, message_id = %r.message_id, to = %r.to,
        state = r.state.as_str(), attempts = r.attempts,
        reason = r.reason.map(|c| c.as_str()).unwrap_or(""), note = %note,
        "reply"
    );
    METRICS.reply(r.state);
}
